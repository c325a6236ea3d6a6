"""tradewire.client against a real server over real sockets: reconnect and recovery, slow
consumers, token refresh, timeouts, errors and the blocking wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tests.helpers import TIMEOUT, Running, run_picows
from tradewire import CloseCode, Level
from tradewire.client import (
    Backoff,
    Client,
    ClientClosed,
    RequestTimeout,
    ServerError,
    State,
    StreamMessage,
    Subscription,
    SyncClient,
)

Factory = Callable[..., Any]
FIXED = Backoff(base=0.05, cap=0.2, uniform=lambda low, high: high)  # deterministic for tests


def _signal(n: int, size: int = 0) -> dict[str, Any]:
    return {"signal_type": "S1", "strategy_name": "t", "symbol": "BTC-USD", "n": n, "pad": "x" * size}


async def _publish(r: Running, first: int, last: int, size: int = 0) -> None:
    for n in range(first, last + 1):
        await r.server.broadcast_to_subscribers("signals", _signal(n, size))
        if n % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0)


async def _take(sub: Subscription, count: int) -> list[StreamMessage]:
    return [await sub.get(TIMEOUT) for _ in range(count)]


def _kick(r: Running, code: CloseCode = CloseCode.IDLE_TIMEOUT) -> int:
    """Close every connection from the server side; how many there were."""
    connections = list(r.server.connection_manager)
    for conn in connections:
        conn.close(code, "closed by the test")
    return len(connections)


def _contiguous(messages: list[StreamMessage], first: int, last: int) -> None:
    offsets = [m.offset for m in messages]
    assert offsets == list(range(first, last + 1)), offsets
    assert [m.data["n"] for m in messages] == offsets  # payloads in publish order


async def test_reconnect_recovers_across_a_server_side_close(running: Running) -> None:
    """Closed by the server, the client reconnects with its token and the stream continues with
    every offset once and in order (on both endpoints)."""
    events: list[str] = []
    async with Client(
        running.url, running.token(), backoff=FIXED, on_event=lambda e, _: events.append(e)
    ) as client:
        first_id = client.client_id
        sub = await client.subscribe("signals")
        await _publish(running, 1, 20)
        got = await _take(sub, 10)
        assert _kick(running) == 1
        await _publish(running, 21, 40)  # while the client is away
        got += await _take(sub, 30)
        assert client.reconnects == 1 and client.client_id == first_id
        assert client.welcome["reconnected"] is True and client.state is State.OPEN
        await _publish(running, 41, 45)
        got += await _take(sub, 5)
    _contiguous(got, 1, 45)
    assert sub.gaps == 0
    assert events[:3] == ["connected", "disconnected", "reconnected"]


async def test_rejected_token_resubscribes_from_its_own_offset(settings_factory: Factory) -> None:
    """When the saved session is gone (here: expired), the client authenticates again and
    resubscribes with recover:{offset, epoch} from its own last offset: still no gap."""
    async with (
        run_picows(settings_factory(session_ttl=0.01)) as r,
        Client(r.url, r.token(), backoff=FIXED) as client,
    ):
        sub = await client.subscribe("signals")
        await _publish(r, 1, 10)
        got = await _take(sub, 10)
        old_id = client.client_id
        _kick(r)
        await _publish(r, 11, 25)
        got += await _take(sub, 15)
        assert client.welcome["reconnect_rejected"]["reason"] == "invalid_or_expired"
        assert client.client_id != old_id and client.user is not None
    _contiguous(got, 1, 25)
    assert sub.gaps == 0


async def test_slow_consumer_closed_with_4008_recovers_without_a_gap(settings_factory: Factory) -> None:
    """A consumer that stops reading fills its bounded queue, the client stops reading the socket,
    the server closes with 4008; once the consumer reads again it gets every offset exactly once."""
    settings = settings_factory(outbound_queue_bytes=65536)
    async with run_picows(settings) as r:
        client = Client(r.url, r.token(), backoff=FIXED, max_queue=8)
        async with client:
            sub = await client.subscribe("signals")
            published = 0
            async with asyncio.timeout(TIMEOUT * 4):
                while r.server.metrics.closes[CloseCode.SLOW_CONSUMER] == 0:
                    await _publish(r, published + 1, published + 100, size=4000)
                    published += 100
                    await asyncio.sleep(0.001)
            await _publish(r, published + 1, published + 50)  # after the close: replayed on resume
            published += 50
            got = await _take(sub, published)
            assert client.reconnects >= 1
    _contiguous(got, 1, published)
    assert sub.gaps == 0 and published > 100


async def test_token_source_refreshes_before_expiry(settings_factory: Factory) -> None:
    """A callable token source is asked again before the token expires; the connection keeps its
    subscriptions and never gets token_expired."""
    async with run_picows(settings_factory()) as r:
        calls: list[int] = []

        def token() -> str:
            calls.append(1)
            return r.token(ttl=2 if len(calls) == 1 else 3600)

        events: list[str] = []
        async with Client(r.url, token, refresh_before=60, on_event=lambda e, _: events.append(e)) as client:
            sub = await client.subscribe("signals")
            first_expiry = client.user and client.user["expires_at"]
            await asyncio.sleep(2.5)  # past the first token's expiry
            await _publish(r, 1, 3)
            got = await _take(sub, 3)
            assert client.user is not None and client.user["expires_at"] > str(first_expiry)
    assert len(calls) == 2 and "token_refreshed" in events
    assert r.server.metrics.errors["token_expired"] == 0
    _contiguous(got, 1, 3)


async def test_token_expired_notice_triggers_a_refresh(settings_factory: Factory) -> None:
    """Without proactive refresh, the server's token_expired notice makes the client re-auth
    within the grace period; paused subscriptions come back with recovery."""
    async with run_picows(settings_factory(token_expiry_grace=5)) as r:
        tokens = iter([r.token(ttl=1), r.token(ttl=3600)])
        refreshed = asyncio.Event()

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "token_refreshed":
                refreshed.set()

        async with Client(r.url, lambda: next(tokens), refresh_before=None, on_event=on_event) as client:
            sub = await client.subscribe("signals")
            await asyncio.wait_for(refreshed.wait(), TIMEOUT)
            assert r.server.metrics.errors["token_expired"] == 1
            assert client.user is not None and client.user["restored_subscriptions"][0]["stream"] == "signals"
            await _publish(r, 1, 2)
            got = await _take(sub, 2)
    assert r.server.metrics.closes[CloseCode.TOKEN_EXPIRED] == 0
    _contiguous(got, 1, 2)


async def test_request_timeout_leaves_the_connection_usable(running: Running) -> None:
    async def slow(conn: Any, params: dict[str, Any]) -> str:
        await asyncio.sleep(1.0)
        return "late"

    running.server.protocol_handler.register_query("slow", slow)
    async with Client(running.url, running.token()) as client:
        with pytest.raises(RequestTimeout):
            await client.request({"type": "query", "query_type": "slow"}, timeout=0.2)
        assert (await client.heartbeat())["status"] == "pong"
        assert await client.query("slow") == "late"


async def test_errors_are_typed(running: Running) -> None:
    """An error reply raises ServerError with its code; a message the schema refuses never
    leaves the client."""
    async with Client(running.url, running.token(level=Level.BASIC)) as client:
        with pytest.raises(ServerError) as refused:
            await client.subscribe("signals")  # basic users may not read signals
        assert refused.value.code == "insufficient_permissions"
        assert refused.value.details["required"] == "read_signals"
        with pytest.raises(ValueError):
            await client.subscribe("no_such_stream")
        with pytest.raises(msgspec.ValidationError):
            await client.session_start("backtest", {"s": ["X"]}, client_key="k" * 65)
        assert client.subscriptions == {}


async def test_a_final_close_ends_iterators_and_requests(running: Running) -> None:
    async with Client(running.url, running.token(), backoff=FIXED) as client:
        sub = await client.subscribe("signals")
        _kick(running, CloseCode.NORMAL)
        messages = [message async for message in sub]
        assert messages == [] and client.state is State.CLOSED
        with pytest.raises(ClientClosed):
            await client.heartbeat()


async def test_sync_client_in_a_thread(running: Running) -> None:
    """The blocking wrapper runs its own loop, so it works beside a running one (notebooks)."""

    def scenario() -> tuple[str, list[int], Any]:
        with SyncClient(running.url, running.token()) as client:
            pong = client.heartbeat()["status"]
            sub = client.subscribe("signals")
            asyncio.run_coroutine_threadsafe(_publish(running, 1, 3), loop).result(TIMEOUT)
            offsets = [sub.get(TIMEOUT).offset for _ in range(3)]
            info = client.query("server_info")
        return pong, offsets, info

    loop = asyncio.get_running_loop()
    pong, offsets, info = await asyncio.to_thread(scenario)
    assert (pong, offsets) == ("pong", [1, 2, 3])
    assert info["protocol_version"] == "1.0"


def test_backoff_is_exponential_with_full_jitter() -> None:
    highest = Backoff(base=0.5, cap=30, uniform=lambda low, high: high)
    assert [highest.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    lowest = Backoff(uniform=lambda low, high: low)
    assert lowest.delay(3) == 0 and lowest.delay(0, close_code=4029) == 60
