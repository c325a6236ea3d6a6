"""Streams over a real socket: filters, order, permissions, limits, recovery, slow consumers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.helpers import (
    TIMEOUT,
    Running,
    drain_until_pong,
    open_client,
    open_stalling_client,
    publish,
    recv_json,
    request,
    run_server,
    wait_closed,
)
from tradewire import Level
from tradewire.streams.broker_memory import MemoryBroker


async def _authed(running: Running, level: Level = Level.TRADER, stalling: bool = False) -> ClientConnection:
    ws, _ = await (open_stalling_client(running) if stalling else open_client(running))
    assert (await request(ws, {"type": "auth", "token": running.token(level=level)}))[
        "status"
    ] == "authenticated"
    return ws


async def test_filters_deliver_exactly_the_matching_messages_in_offset_order(running: Running) -> None:
    btc = await _authed(running)
    not_eth = await _authed(running)
    strong = await _authed(running)
    async with btc, not_eth, strong:
        sub = await request(
            btc, {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["BTC"]}, "id": 1}
        )
        assert (sub["status"], sub["stream"], sub["id"], sub["offset"]) == ("subscribed", "market_data", 1, 0)
        assert sub["epoch"]
        await request(
            not_eth, {"type": "subscribe", "stream": "market_data", "params": {"exclude_symbols": ["ETH"]}}
        )
        await request(
            strong,
            {
                "type": "subscribe",
                "stream": "signals",
                "params": {"strategy_name": "pump", "signal_types": ["S1"]},
            },
        )
        symbols = ["BTC", "ETH", "SOL"]
        prices = [{"symbol": symbols[i % 3], "price": 100 + i} for i in range(90)]
        signals = [
            {"symbol": "BTC", "signal_type": ("S1", "Z1")[i % 2], "strategy_name": ("pump", "rsi")[i // 20]}
            for i in range(40)
        ]
        await publish(running, "market_data", prices)
        await publish(running, "signals", signals)
        got_btc = await drain_until_pong(btc)
        got_not_eth = await drain_until_pong(not_eth)
        got_strong = await drain_until_pong(strong)
    assert [f["data"]["price"] for f in got_btc] == [p["price"] for p in prices if p["symbol"] == "BTC"]
    assert [f["data"]["price"] for f in got_not_eth] == [p["price"] for p in prices if p["symbol"] != "ETH"]
    expected_signals = [s for s in signals if s["signal_type"] == "S1" and s["strategy_name"] == "pump"]
    assert [f["data"] for f in got_strong] == expected_signals
    for frames in (got_btc, got_not_eth, got_strong):
        offsets = [f["offset"] for f in frames]
        assert offsets == sorted(set(offsets))
        assert all(f["type"] == "data" and "id" not in f for f in frames)
    assert got_btc[0]["offset"] == 1
    assert got_btc[-1]["offset"] == 88


async def test_unsubscribe_stops_and_disconnect_removes_subscriptions(running: Running) -> None:
    ws = await _authed(running)
    other = await _authed(running)
    async with other:
        for client in (ws, other):
            await request(client, {"type": "subscribe", "stream": "market_data"})
        await publish(running, "market_data", [{"symbol": "BTC", "price": 1}])
        assert len(await drain_until_pong(ws)) == 1
        reply = await request(ws, {"type": "unsubscribe", "stream": "market_data", "id": 2})
        assert (reply["status"], reply["was_subscribed"], reply["id"]) == ("unsubscribed", True, 2)
        await publish(running, "market_data", [{"symbol": "BTC", "price": 2}])
        assert await drain_until_pong(ws) == []
        assert len(await drain_until_pong(other)) == 2
        await ws.close()
        await request(other, {"type": "heartbeat"})
        manager = running.server.subscription_manager
        assert manager.count() == 1
        await other.close()
        for _ in range(100):
            if manager.count() == 0:
                break
            await asyncio.sleep(0.01)
        assert manager.count() == 0


async def test_stream_permissions(running: Running) -> None:
    """basic may read market data but not signals; unauthenticated may read nothing."""
    ws = await _authed(running, Level.BASIC)
    anonymous, _ = await open_client(running)
    async with ws, anonymous:
        denied = await request(ws, {"type": "subscribe", "stream": "signals", "id": 1})
        assert (denied["error_code"], denied["details"]["required"]) == (
            "insufficient_permissions",
            "read_signals",
        )
        assert (await request(ws, {"type": "subscribe", "stream": "market_data"}))["status"] == "subscribed"
        refused = await request(anonymous, {"type": "subscribe", "stream": "market_data"})
        assert refused["error_code"] == "authentication_required"


async def test_filter_validation(running: Running) -> None:
    ws = await _authed(running)
    async with ws:
        err = await request(
            ws, {"type": "subscribe", "stream": "market_data", "params": {"symbol": "BTC"}, "id": 1}
        )
        assert err["error_code"] == "validation_error"
        assert err["details"]["path"] == "$.params"
        err = await request(ws, {"type": "subscribe", "stream": "signals", "params": {"signal_types": "S1"}})
        assert err["details"]["path"] == "$.params.signal_types"
        dropped = await request(
            ws, {"type": "subscribe", "stream": "signals", "params": {"min_confidence": 0.5}}
        )
        assert dropped["error_code"] == "validation_error"  # signals carry no confidence: no such filter


async def test_subscription_limits(transport: str, settings_factory: Callable[..., Any]) -> None:
    settings = settings_factory(max_subscriptions_per_client=10, subscribe_operations_per_hour=4)
    async with run_server(transport, settings) as r:
        ws = await _authed(r)
        async with ws:
            many = [f"S{i}" for i in range(11)]
            err = await request(
                ws, {"type": "subscribe", "stream": "market_data", "params": {"symbols": many}}
            )
            assert err["error_code"] == "subscription_limit_exceeded"
            for stream in ("market_data", "indicators", "signals"):
                assert (await request(ws, {"type": "subscribe", "stream": stream}))["status"] == "subscribed"
            err = await request(ws, {"type": "subscribe", "stream": "orders"})
            assert err["error_code"] == "subscription_limit_exceeded"
            assert err["details"]["retry_after"] > 0


async def test_latest_value_on_subscribe(running: Running) -> None:
    await publish(
        running,
        "market_data",
        [{"symbol": "BTC", "price": 1}, {"symbol": "ETH", "price": 2}, {"symbol": "BTC", "price": 3}],
    )
    ws = await _authed(running)
    async with ws:
        reply = await request(
            ws, {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["BTC"], "latest": True}}
        )
        assert (reply["status"], reply["latest_sent"], reply["offset"]) == ("subscribed", 1, 3)
        frames = await drain_until_pong(ws)
        assert [(f["offset"], f["data"]["price"]) for f in frames] == [(3, 3)]


async def test_explicit_recovery_replays_missed_messages_without_gap_or_duplicate(running: Running) -> None:
    ws = await _authed(running)
    async with ws:
        first = await request(
            ws, {"type": "subscribe", "stream": "signals", "params": {"signal_types": ["S1"]}}
        )
        await publish(running, "signals", [{"signal_type": "S1", "n": 1}])
        seen = await drain_until_pong(ws)
        await request(ws, {"type": "unsubscribe", "stream": "signals"})
        await publish(
            running, "signals", [{"signal_type": t, "n": n} for n, t in enumerate(["S1", "Z1", "S1"], 2)]
        )
        recover = {"offset": seen[-1]["offset"], "epoch": first["epoch"]}
        reply = await request(
            ws,
            {
                "type": "subscribe",
                "stream": "signals",
                "params": {"signal_types": ["S1"]},
                "recover": recover,
            },
        )
        assert reply["recovered"] is True
        await publish(running, "signals", [{"signal_type": "S1", "n": 5}])
        frames = await drain_until_pong(ws)
        assert [f["data"]["n"] for f in frames] == [2, 4, 5]
        wrong = await request(
            ws, {"type": "subscribe", "stream": "signals", "recover": {"offset": 1, "epoch": "other-epoch"}}
        )
        assert wrong["recovered"] is False


async def test_recovery_after_history_eviction_is_reported(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    async with run_server(transport, settings_factory()) as r:
        assert isinstance(r.server.broker, MemoryBroker)
        r.server.broker.histories[_stream("indicators")].max_size = 5
        history = r.server.broker.histories[_stream("indicators")]
        history._entries = type(history._entries)(maxlen=5)
        ws = await _authed(r)
        async with ws:
            await publish(r, "indicators", [{"symbol": "BTC", "v": i} for i in range(20)])
            reply = await request(
                ws,
                {
                    "type": "subscribe",
                    "stream": "indicators",
                    "recover": {"offset": 2, "epoch": history.epoch},
                },
            )
            assert reply["recovered"] is False
            assert len(history) == 5


async def test_event_bus_topics_reach_their_streams(running: Running) -> None:
    ws = await _authed(running)
    async with ws:
        await request(ws, {"type": "subscribe", "stream": "market_data"})
        await request(ws, {"type": "subscribe", "stream": "execution_status"})
        bus = running.server.event_bus
        bus.publish("market.price_update", {"symbol": "BTC", "price": 10.5})
        bus.publish("execution.progress", {"session_id": "s1", "progress": 0.5})
        bus.publish("no.such.topic", {"x": 1})
        first = await recv_json(ws)
        second = await recv_json(ws)
    assert (first["stream"], first["data"]["event"], first["data"]["price"]) == (
        "market_data",
        "market.price_update",
        10.5,
    )
    assert (second["stream"], second["data"]["event"]) == ("execution_status", "execution.progress")
    assert running.server.metrics.unknown_topics["no.such.topic"] == 1


async def test_bursts_are_coalesced_into_one_write(running: Running) -> None:
    """10 messages in one loop iteration: the first is written at once, the other 9 in one write."""
    ws = await _authed(running)
    async with ws:
        await request(ws, {"type": "subscribe", "stream": "market_data"})
        metrics = running.server.metrics
        flushes, coalesced = metrics.flushes, metrics.coalesced
        await publish(running, "market_data", [{"symbol": "BTC", "price": i} for i in range(10)])
        frames = await drain_until_pong(ws)
        assert [f["data"]["price"] for f in frames] == list(range(10))
        assert metrics.flushes - flushes == 1
        assert metrics.coalesced - coalesced == 8


async def test_stalled_subscriber_gets_4008_while_others_receive_everything(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A subscriber that stops reading is closed 4008; the others get every frame in order."""
    async with run_server(transport, settings_factory(outbound_queue_bytes=256 * 1024)) as r:
        stalled = await _authed(r, stalling=True)
        healthy = await _authed(r)
        async with stalled, healthy:
            for ws in (stalled, healthy):
                await request(ws, {"type": "subscribe", "stream": "signals"})
            received: list[int] = []

            async def read_healthy() -> None:
                while len(received) < 400:
                    received.append(json.loads(await healthy.recv())["data"]["n"])

            reader = asyncio.create_task(read_healthy())
            for n in range(400):  # 400 × 20 KB: far more than socket buffers and the bound
                await r.server.broadcast_to_subscribers("signals", {"n": n, "pad": "x" * 20_000})
                await asyncio.sleep(0.001)
            await asyncio.wait_for(reader, TIMEOUT * 2)
            assert received == list(range(400))
            assert await wait_closed(stalled, timeout=TIMEOUT * 2) == 4008


def _stream(name: str) -> Any:
    from tradewire import Stream

    return Stream(name)
