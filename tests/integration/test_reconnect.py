"""Reconnect over real sockets: session restore, missed messages, token security, Redis store."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import (
    Running,
    drain_until_pong,
    open_client,
    publish,
    recv_json,
    request,
    run_server,
    wait_closed,
)
from tradewire import CloseCode, Level


async def _session(
    r: Running, level: Level = Level.TRADER, ttl: int = 3600
) -> tuple[ClientConnection, dict[str, Any]]:
    """A client that authenticated and subscribed to BTC market data and to signals."""
    ws, welcome = await open_client(r)
    await request(ws, {"type": "auth", "token": r.token(level=level, ttl=ttl)})
    await request(ws, {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["BTC"]}})
    if level is not Level.BASIC:
        await request(ws, {"type": "subscribe", "stream": "signals"})
    return ws, welcome


async def _saved(r: Running, count: int = 1) -> None:
    """Wait until the server has saved ``count`` sessions (saving runs after the disconnect)."""
    for _ in range(200):
        if await r.server.session_store.count() >= count and not r.server.reconnect._saving:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("session was not saved")


async def _reconnect(
    r: Running, token: str, *, query: bool = False
) -> tuple[ClientConnection, dict[str, Any]]:
    if query:
        return await _open_query(r, token)
    return await open_client(r, additional_headers={"X-Reconnect-Token": token})


async def _open_query(r: Running, token: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(f"{r.url}?reconnect_token={token}", open_timeout=5)
    return ws, await recv_json(ws)


async def test_reconnect_restores_id_auth_subscriptions_and_missed_messages(running: Running) -> None:
    ws, welcome = await _session(running)
    await publish(running, "market_data", [{"symbol": "BTC", "n": 1}])
    seen = await drain_until_pong(ws)
    await ws.close()
    await _saved(running)
    await publish(
        running, "market_data", [{"symbol": s, "n": n} for n, s in enumerate(["BTC", "ETH", "BTC", "BTC"], 2)]
    )
    await publish(running, "signals", [{"signal_type": "S1", "n": 9}])
    ws2, again = await _reconnect(running, welcome["reconnect_token"])
    async with ws2:
        assert again["reconnected"] is True
        assert again["client_id"] == welcome["client_id"]
        assert again["authenticated"] is True and again["user_id"] == "alice"
        assert again["reconnect_token"] != welcome["reconnect_token"]
        statuses = {s["stream"]: s for s in again["subscriptions"]}
        assert statuses["market_data"]["recovered"] is True
        assert statuses["signals"]["recovered"] is True
        missed = await drain_until_pong(ws2)
        await publish(running, "market_data", [{"symbol": "BTC", "n": 6}])
        live = await drain_until_pong(ws2)
        status = await request(ws2, {"type": "command", "action": "get_status"})
    market = [f for f in missed + live if f["stream"] == "market_data"]
    assert [f["data"]["n"] for f in market] == [2, 4, 5, 6]
    offsets = [seen[-1]["offset"]] + [f["offset"] for f in market]
    assert offsets == sorted(set(offsets))
    assert [f["data"]["n"] for f in missed if f["stream"] == "signals"] == [9]
    assert status["data"]["authenticated"] is True
    assert sorted(status["data"]["subscriptions"]) == ["market_data", "signals"]


async def test_token_in_query_parameter(running: Running) -> None:
    ws, welcome = await _session(running)
    await ws.close()
    await _saved(running)
    ws2, again = await _reconnect(running, welcome["reconnect_token"], query=True)
    async with ws2:
        assert again["reconnected"] is True
        assert again["client_id"] == welcome["client_id"]


async def test_forged_reused_and_mixed_tokens_are_rejected(running: Running) -> None:
    ws_a, welcome_a = await _session(running)
    ws_b, welcome_b = await _session(running)
    await ws_a.close()
    await ws_b.close()
    await _saved(running, 2)
    secret_a = welcome_a["reconnect_token"].rpartition(".")[2]
    forged = [
        welcome_b["client_id"] + ".forged-secret-forged-secret-forged",  # right id, wrong secret
        welcome_b["client_id"] + "." + secret_a,  # another client's secret
        "garbage",
    ]
    for token in forged:
        ws, welcome = await _reconnect(running, token)
        async with ws:
            assert welcome["reconnected"] is False
            assert welcome["client_id"] not in (welcome_a["client_id"], welcome_b["client_id"])
            assert "reason" in welcome["reconnect_rejected"]
            status = await request(ws, {"type": "command", "action": "get_status", "id": 1})
            assert status["error_code"] == "authentication_required"
    ws, again_b = await _reconnect(running, welcome_b["reconnect_token"])  # guessing destroyed nothing
    async with ws:
        assert again_b["reconnected"] is True
    ws, reused = await _reconnect(running, welcome_b["reconnect_token"])  # single use
    async with ws:
        assert reused["reconnected"] is False


async def test_expired_session_is_rejected(transport: str, settings_factory: Callable[..., Any]) -> None:
    async with run_server(transport, settings_factory(session_ttl=0.3)) as r:
        ws, welcome = await _session(r)
        await ws.close()
        await _saved(r)
        await asyncio.sleep(0.5)
        ws2, again = await _reconnect(r, welcome["reconnect_token"])
        async with ws2:
            assert again["reconnected"] is False
            assert again["reconnect_rejected"]["reason"] == "invalid_or_expired"


async def test_history_eviction_reports_recovered_false(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    async with run_server(transport, settings_factory(stream_history_size=5)) as r:
        ws, welcome = await _session(r)
        await ws.close()
        await _saved(r)
        await publish(r, "market_data", [{"symbol": "BTC", "n": n} for n in range(20)])
        ws2, again = await _reconnect(r, welcome["reconnect_token"])
        async with ws2:
            statuses = {s["stream"]: s for s in again["subscriptions"]}
            assert statuses["market_data"]["recovered"] is False
            assert statuses["signals"]["recovered"] is True  # nothing was missed there
            assert [f for f in await drain_until_pong(ws2) if f["stream"] == "market_data"] == []


async def test_reconnect_takes_over_a_connection_still_open(running: Running) -> None:
    """A half-open old connection: the token moves its live state and the old one is closed."""
    old, welcome = await _session(running)
    new, again = await _reconnect(running, welcome["reconnect_token"])
    async with new:
        assert again["reconnected"] is True
        assert again["client_id"] == welcome["client_id"]
        assert await wait_closed(old) == 1000
        await publish(running, "market_data", [{"symbol": "BTC", "n": 1}])
        assert [f["data"]["n"] for f in await drain_until_pong(new)] == [1]
    await _saved(running)


async def test_expired_jwt_restores_subscriptions_only_after_auth(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    async with run_server(transport, settings_factory(token_expiry_grace=30)) as r:
        ws, welcome = await _session(r, ttl=1)
        await ws.close()
        await _saved(r)
        await asyncio.sleep(1.2)
        await publish(r, "signals", [{"signal_type": "S1", "n": 1}])
        ws2, again = await _reconnect(r, welcome["reconnect_token"])
        async with ws2:
            assert again["reconnected"] is True
            assert again["authenticated"] is False
            statuses = {s["stream"]: s["status"] for s in again["subscriptions"]}
            assert statuses == {"market_data": "awaiting_auth", "signals": "awaiting_auth"}
            denied = await request(ws2, {"type": "command", "action": "get_status", "id": 1})
            assert denied["error_code"] == "authentication_required"
            reply = await request(ws2, {"type": "auth", "token": r.token()})
            restored = {s["stream"]: s for s in reply["restored_subscriptions"]}
            assert restored["signals"]["recovered"] is True
            assert restored["market_data"]["status"] == "subscribed"
            frames = await drain_until_pong(ws2)
            assert [f["data"]["n"] for f in frames if f["stream"] == "signals"] == [1]


async def test_reconnect_attempts_are_rate_limited_per_address(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    async with run_server(transport, settings_factory(reconnect_burst=2)) as r:
        reasons = []
        for _ in range(3):
            ws, welcome = await _reconnect(r, "c_nobody.not-a-valid-secret-not-a-valid")
            reasons.append(welcome["reconnect_rejected"]["reason"])
            await ws.close()
        assert reasons == ["invalid_or_expired", "invalid_or_expired", "rate_limited"]
        assert r.server.metrics.reconnects["rejected_rate_limited"] == 1


@pytest.mark.redis
async def test_session_survives_a_server_restart_with_redis(
    settings_factory: Callable[..., Any], redis_url: str, redis_prefix: str
) -> None:
    settings = settings_factory(redis_url=redis_url, redis_prefix=redis_prefix)
    async with run_server("picows", settings) as first:
        ws, welcome = await _session(first)
    assert await wait_closed(ws) == 1001  # stop() closed it as "going away" and saved the session
    async with run_server("picows", settings) as second:
        ws2, again = await _reconnect(second, welcome["reconnect_token"])
        async with ws2:
            assert again["reconnected"] is True
            assert again["client_id"] == welcome["client_id"]
            assert again["authenticated"] is True
            statuses = {s["stream"]: s for s in again["subscriptions"]}
            assert statuses["market_data"]["recovered"] is True  # history and epoch live in Redis
            await publish(second, "market_data", [{"symbol": "BTC", "n": 1}])
            assert [f["data"]["n"] for f in await drain_until_pong(ws2)] == [1]
        ws3, reused = await _reconnect(second, welcome["reconnect_token"])
        async with ws3:
            assert reused["reconnected"] is False


@pytest.mark.redis
async def test_redis_store_rejects_forged_and_expired(
    settings_factory: Callable[..., Any], redis_url: str, redis_prefix: str
) -> None:
    settings = settings_factory(redis_url=redis_url, redis_prefix=redis_prefix, session_ttl=0.5)
    async with run_server("asgi", settings) as r:
        ws, welcome = await _session(r)
        await ws.close()
        await _saved(r)
        forged = welcome["client_id"] + ".forged-secret-forged-secret-forged"
        ws2, rejected = await _reconnect(r, forged)
        async with ws2:
            assert rejected["reconnected"] is False
        await asyncio.sleep(0.7)
        ws3, expired = await _reconnect(r, welcome["reconnect_token"])
        async with ws3:
            assert expired["reconnected"] is False


async def test_frames_queued_when_the_server_closes_are_replayed(running: Running) -> None:
    """Messages published in the same instant as a server-side close reach the client on reconnect."""
    ws, welcome = await _session(running)
    conn = running.server.connection_manager.get(welcome["client_id"])
    assert conn is not None
    for n in range(3):
        await running.server.broadcast_to_subscribers("market_data", {"symbol": "BTC", "n": n})
    conn.close(CloseCode.IDLE_TIMEOUT, "idle timeout")  # before the flusher ran
    before: list[int] = []
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            before.append(json.loads(raw)["data"]["n"])
    assert ws.close_code == 4000
    await _saved(running)
    ws2, again = await _reconnect(running, welcome["reconnect_token"])
    async with ws2:
        assert again["reconnected"] is True
        frames = await drain_until_pong(ws2)
    after = [f["data"]["n"] for f in frames if f["stream"] == "market_data"]
    assert before + after == [0, 1, 2]  # each exactly once, in order, across the two connections


@pytest.mark.parametrize("transport_name", ["picows", "asgi"])
def test_no_replay_of_what_was_delivered_under_uvloop(
    transport_name: str, settings_factory: Callable[..., Any]
) -> None:
    """Under uvloop (what ``tradewire serve`` runs) a write reaches the socket only at the end of
    the loop iteration, so the ASGI route's buffer is never seen empty right after a write: the
    connection must still not count long-delivered frames as unsent. Found by the soak: every
    reconnect on the ASGI route replayed everything since the subscription."""
    import uvloop

    async def scenario() -> tuple[list[int], list[int], dict[str, Any]]:
        async with run_server(transport_name, settings_factory()) as r:
            ws, welcome = await _session(r)
            for n in range(30):  # each in its own loop iteration, read as it comes
                await publish(r, "market_data", [{"symbol": "BTC", "n": n}])
                await asyncio.sleep(0.002)
            seen = [f["offset"] for f in await drain_until_pong(ws) if f.get("stream") == "market_data"]
            await ws.close()
            await _saved(r)
            await publish(r, "market_data", [{"symbol": "BTC", "n": 30}])
            ws2, again = await _reconnect(r, welcome["reconnect_token"])
            async with ws2:
                frames = await drain_until_pong(ws2)
            return seen, [f["offset"] for f in frames if f.get("stream") == "market_data"], again

    seen, replayed, again = uvloop.run(scenario())
    assert len(seen) == 30
    assert again["reconnected"] is True and again["subscriptions"][0]["recovered"] is True
    assert replayed == [seen[-1] + 1]  # only the message published while away


async def test_quiet_filtered_subscription_still_recovers(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A filter that matched nothing while history rolled over is not a lost recovery."""
    async with run_server(transport, settings_factory(stream_history_size=5)) as r:
        ws, welcome = await _session(r)
        await publish(r, "market_data", [{"symbol": "ETH", "n": n} for n in range(20)])  # BTC only wanted
        await drain_until_pong(ws)
        await ws.close()
        await _saved(r)
        ws2, again = await _reconnect(r, welcome["reconnect_token"])
        async with ws2:
            statuses = {s["stream"]: s for s in again["subscriptions"]}
            assert statuses["market_data"]["recovered"] is True


async def test_anonymous_connections_leave_no_session(running: Running) -> None:
    for _ in range(3):
        ws, _ = await open_client(running)
        await ws.close()
    await asyncio.sleep(0.1)
    assert await running.server.session_store.count() == 0


async def test_expiry_pauses_stream_delivery_until_auth(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """An expired token stops its subscriptions at once; a fresh auth restores them."""
    async with run_server(transport, settings_factory(token_expiry_grace=30)) as r:
        ws, _ = await _session(r, ttl=1)
        async with ws:
            notice = await recv_json(ws, timeout=3)
            assert notice["error_code"] == "token_expired"
            assert sorted(notice["details"]["paused_subscriptions"]) == ["market_data", "signals"]
            await publish(r, "signals", [{"signal_type": "S1", "n": 1}])
            assert await drain_until_pong(ws) == []
            reply = await request(ws, {"type": "auth", "token": r.token()})
            assert {s["stream"] for s in reply["restored_subscriptions"]} == {"market_data", "signals"}
            frames = await drain_until_pong(ws)
            assert [f["data"]["n"] for f in frames if f["stream"] == "signals"] == [1]


async def test_reauth_at_a_lower_level_drops_streams_it_may_not_read(running: Running) -> None:
    ws, _ = await _session(running)
    async with ws:
        reply = await request(ws, {"type": "auth", "token": running.token("bob", Level.BASIC)})
        assert reply["revoked_subscriptions"] == ["signals"]
        await publish(running, "signals", [{"signal_type": "S1", "n": 1}])
        await publish(running, "market_data", [{"symbol": "BTC", "n": 2}])
        assert [f["stream"] for f in await drain_until_pong(ws)] == ["market_data"]


async def test_unreachable_redis_degrades_to_fresh_sessions(settings_factory: Callable[..., Any]) -> None:
    """Redis down: the server still serves; reconnect says unavailable; health says not ready."""
    settings = settings_factory(redis_url="redis://127.0.0.1:9/0")
    async with run_server("picows", settings) as r:
        ws, welcome = await _session(r)
        await ws.close()
        for _ in range(100):
            if r.server.metrics.reconnects["save_failed"]:
                break
            await asyncio.sleep(0.02)
        assert r.server.metrics.reconnects["save_failed"] == 1
        ws2, again = await _reconnect(r, welcome["reconnect_token"])
        async with ws2:
            assert again["reconnect_rejected"]["reason"] == "unavailable"
            assert (await request(ws2, {"type": "heartbeat", "id": 1}))["id"] == 1
        health = await r.server.health_check()
        assert health["components"]["session_store"]["ready"] is False
        assert health["status"] == "unhealthy"
