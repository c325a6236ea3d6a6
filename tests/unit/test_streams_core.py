"""Streams without sockets: history bounds, event bus contract, conflation, index and filters."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import pytest

from tests.unit.test_core import MemoryOutbound, make_conn
from tradewire import ManualClock, RequestError, Stream
from tradewire.bus.event_bus_memory import InMemoryEventBus
from tradewire.core.frames import Frame, text_frame
from tradewire.metrics import ServerMetrics
from tradewire.streams.broadcast import BroadcastProvider
from tradewire.streams.broker_memory import MemoryBroker
from tradewire.streams.filters import parse_filter
from tradewire.streams.history import StreamHistory
from tradewire.streams.subscriptions import SubscriptionManager


def test_history_is_bounded_by_count_and_age() -> None:
    history = StreamHistory(max_size=100, max_age=10.0)
    for i in range(1, 1001):
        history.append(history.next_offset(), Frame(b"{}", i), i * 0.001, {})
    assert len(history) == 100
    assert history.offset == 1000
    recent = history.since(950, now=1.0)
    assert recent is not None and [e.offset for e in recent] == list(range(951, 1001))
    oldest = history.since(900, now=1.0)
    assert oldest is not None and len(oldest) == 100
    assert history.since(899, now=1.0) is None  # offset 900 was evicted by count
    assert history.since(1000, now=1.0) == []
    assert history.since(990, now=20.0) is None  # everything expired by age
    assert len(history) == 0


def test_history_memory_does_not_grow_with_messages_published() -> None:
    clock, metrics = ManualClock(), ServerMetrics()
    broker = MemoryBroker(clock, {Stream.MARKET_DATA: (1000, 3600.0)})
    provider = BroadcastProvider(SubscriptionManager(), metrics, clock, broker)
    payload = {"symbol": "BTC", "price": 1.0, "pad": "x" * 100}

    def publish(n: int) -> None:
        for _ in range(n):
            provider.publish(Stream.MARKET_DATA, payload)

    publish(2000)
    tracemalloc.start()
    publish(5000)
    after_5k = tracemalloc.get_traced_memory()[0]
    publish(20000)
    after_25k = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(broker.histories[Stream.MARKET_DATA]) == 1000
    assert after_25k - after_5k < 100_000  # flat: bounded history, nothing else retained


async def test_bus_publish_never_blocks_and_failures_are_isolated() -> None:
    metrics = ServerMetrics()
    bus = InMemoryEventBus(metrics)
    good: list[int] = []
    slow_started = asyncio.Event()

    def failing(topic: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    async def slow(topic: str, payload: dict[str, Any]) -> None:
        slow_started.set()
        await asyncio.sleep(3600)

    bus.subscribe("market.*", lambda topic, payload: good.append(payload["n"]), name="good")
    bus.subscribe("*", failing, name="failing")
    bus.subscribe("market.price_update", slow, name="slow", queue_size=10)
    await bus.start()
    for n in range(100):
        bus.publish("market.price_update", {"n": n})  # synchronous: returns without awaiting anyone
    for _ in range(10):
        await asyncio.sleep(0)
    await asyncio.wait_for(slow_started.wait(), 1)
    assert good == list(range(100))  # in order, none lost, despite the failing and slow ones
    assert metrics.bus_failures["failing"] == 100
    assert metrics.bus_dropped["slow"] == 90  # all 100 arrived before it ran: 10 queued, 90 dropped
    bus.publish("other.topic", {"n": 1})
    await asyncio.sleep(0)
    assert metrics.bus_failures["failing"] == 101
    await bus.stop()


async def test_paused_connection_conflates_market_data_but_not_signals() -> None:
    clock, metrics = ManualClock(), ServerMetrics()
    conn, out = make_conn(clock, metrics, queue_limit=10**9)
    conn.pause()
    conn.queue_frame(Frame(b'{"s":"BTC","p":1}', 1, key="BTC"))
    conn.queue_frame(Frame(b'{"s":"ETH","p":2}', 2, key="ETH"))
    conn.queue_frame(Frame(b'{"s":"BTC","p":3}', 3, key="BTC"))
    conn.queue_frame(Frame(b'{"signal":4}', 4))
    assert conn.conflated == 1
    assert [f.get("signal") for f in out.frames] == [4]  # signals are never held back
    conn.resume()
    conn.flush()
    assert [f.get("p", f.get("signal")) for f in out.frames] == [4, 2, 3]
    assert metrics.conflated == 1


def test_index_visits_only_matching_symbols() -> None:
    clock, metrics = ManualClock(), ServerMetrics()
    manager = SubscriptionManager()
    conns = []
    for i in range(3):
        conn, _ = make_conn(clock, metrics)
        conn.client_id = f"c{i}"
        conns.append(conn)
    manager.subscribe(conns[0], Stream.MARKET_DATA, parse_filter({"symbols": ["BTC"]}), 0)
    manager.subscribe(conns[1], Stream.MARKET_DATA, parse_filter({"symbols": ["ETH"]}), 0)
    manager.subscribe(conns[2], Stream.MARKET_DATA, parse_filter({}), 0)
    assert {s.client_id for s in manager.recipients(Stream.MARKET_DATA, "BTC")} == {"c0", "c2"}
    assert {s.client_id for s in manager.recipients(Stream.MARKET_DATA, None)} == {"c2"}
    manager.subscribe(conns[0], Stream.MARKET_DATA, parse_filter({"symbols": ["SOL"]}), 0)  # replaces
    assert {s.client_id for s in manager.recipients(Stream.MARKET_DATA, "BTC")} == {"c2"}
    assert len(manager.remove_client("c0")) == 1
    assert {s.client_id for s in manager.recipients(Stream.MARKET_DATA, "SOL")} == {"c2"}


def test_filter_checks() -> None:
    flt = parse_filter({"exclude_symbols": ["ETH"], "signal_types": ["S1"], "strategy_name": "pump"})
    assert flt.matches({"symbol": "BTC", "signal_type": "S1", "strategy_name": "pump"})
    assert not flt.matches({"symbol": "ETH", "signal_type": "S1", "strategy_name": "pump"})
    assert not flt.matches({"symbol": "BTC", "signal_type": "Z1", "strategy_name": "pump"})
    assert not flt.matches({"symbol": "BTC", "signal_type": "S1", "strategy_name": "rsi"})
    assert not flt.matches({"symbol": "BTC", "signal_type": "S1"})
    with pytest.raises(RequestError):
        parse_filter({"min_confidence": 0.5})  # dropped: signals carry no confidence
    with pytest.raises(RequestError) as exc:
        parse_filter({"symbols": "BTC"})
    assert exc.value.details is not None
    assert exc.value.details["path"] == "$.params.symbols"


def test_text_frame_lengths() -> None:
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 70000)[:2] == b"\x81\x7f"
    assert len(text_frame(b"x" * 70000)) == 70010


def test_memory_outbound_counts_writes() -> None:
    clock, metrics = ManualClock(), ServerMetrics()
    conn, out = make_conn(clock, metrics)
    assert isinstance(out, MemoryOutbound)
    conn.batch.extend([Frame(b'{"a":1}', 1), Frame(b'{"a":2}', 2)])
    conn.flush()
    assert out.writes == 1
    assert metrics.coalesced == 1


def test_owner_scoped_filter_passes_only_the_owner_and_ownerless_messages() -> None:
    """A non-admin's filter on a session stream lets through its own and owner-less messages."""
    flt = parse_filter({}, owner="alice")
    assert flt.checks
    assert flt.matches({"session_id": "s_1", "owner": "alice"})
    assert flt.matches({"signal_type": "S1"})  # a live signal has no owner
    assert not flt.matches({"session_id": "s_2", "owner": "bob"})
    assert parse_filter({}).matches({"owner": "bob"})  # admins (no owner) see everything


async def test_replay_after_conflated_frames_keeps_offset_order() -> None:
    """A paused connection holds market data for conflation; recovery queued now must not pass
    those older held frames (they are moved into the batch first)."""
    clock, metrics = ManualClock(), ServerMetrics()
    manager = SubscriptionManager()
    provider = BroadcastProvider(manager, metrics, clock, MemoryBroker(clock))
    conn, out = make_conn(clock, metrics, queue_limit=1 << 20)
    sub = manager.subscribe(conn, Stream.MARKET_DATA, parse_filter({}), 0)
    conn.pause()
    for price in (1, 2, 3):
        provider.publish(Stream.MARKET_DATA, {"symbol": "BTC", "p": price})  # held: only 3 kept
    manager.unsubscribe(conn.client_id, Stream.MARKET_DATA, 3)
    provider.publish(Stream.MARKET_DATA, {"symbol": "ETH", "p": 4})  # missed while unsubscribed
    epoch = provider.position(Stream.MARKET_DATA)[1]
    prior = manager.coverage(conn.client_id, Stream.MARKET_DATA, 4)
    sub = manager.subscribe(conn, Stream.MARKET_DATA, parse_filter({}), 0)
    assert provider.recover(sub, 2, epoch, prior) is True
    conn.flush()
    assert [f["offset"] for f in out.frames] == [3, 4]


async def test_coverage_tells_what_a_connection_may_already_hold() -> None:
    clock, metrics = ManualClock(), ServerMetrics()
    manager = SubscriptionManager()
    provider = BroadcastProvider(manager, metrics, clock, MemoryBroker(clock))
    conn, _ = make_conn(clock, metrics)

    def publish(count: int) -> int:
        for n in range(count):
            provider.publish(Stream.SIGNALS, {"n": n})
        return provider.position(Stream.SIGNALS)[0]

    assert manager.coverage(conn.client_id, Stream.SIGNALS, 0) is None
    sub = manager.subscribe(conn, Stream.SIGNALS, parse_filter({}), 0)
    sub.start = publish(5)
    live = manager.coverage(conn.client_id, Stream.SIGNALS, publish(2))
    assert live is not None and (live.start, live.floor) == (5, 7)
    manager.unsubscribe(conn.client_id, Stream.SIGNALS, publish(1))
    ended = manager.coverage(conn.client_id, Stream.SIGNALS, publish(1))
    assert ended is not None and (ended.start, ended.floor) == (5, 8)
    epoch = provider.position(Stream.SIGNALS)[1]
    again = manager.subscribe(conn, Stream.SIGNALS, parse_filter({}), 0)
    assert provider.recover(again, 4, epoch, ended) is False  # 5 was never queued to it
    conn.batch.clear()  # what the live subscription queued (flushed in a real loop)
    assert provider.recover(again, 6, epoch, ended) is True  # 7..8 queued before, 9 replayed
    assert [f.offset for f in conn.batch] == [9]
    assert provider.recover(again, 6, "other", ended) is False
    assert provider.recover(again, 9 + 1000, epoch, None) is False  # beyond the stream's position
