"""Data collection over a real socket and a real SQLite file: record the live feed, backtest the
recording, lose nothing on stop or shutdown, stay bounded while the database stalls, and keep
collections private to their owners."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from tests.helpers import TIMEOUT, Running, authed_client, call, engine_server, until
from tradewire import Level
from tradewire.bus import topics
from tradewire.engine.controller import EmbeddedEngine

Factory = Callable[..., Any]
FAST: dict[str, Any] = {
    "strategy_name": "fast_cross",
    "direction": "LONG",
    "s1_signal": {
        "conditions": [
            {
                "id": "up",
                "indicatorId": "sma",
                "params": {"period": 2},
                "operator": "crosses_above",
                "value": {"indicatorId": "sma", "params": {"period": 5}},
            }
        ]
    },
    "z1_entry": {
        "conditions": [
            {"id": "any", "indicatorId": "sma", "params": {"period": 2}, "operator": ">", "value": 0}
        ],
        "positionSize": {"type": "fixed", "value": 1000},
    },
    "ze1_close": {
        "conditions": [
            {
                "id": "down",
                "indicatorId": "sma",
                "params": {"period": 2},
                "operator": "crosses_below",
                "value": {"indicatorId": "sma", "params": {"period": 5}},
            }
        ]
    },
    "o1_cancel": {"conditions": [], "timeoutSeconds": 3600},
    "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
}


def _engine(r: Running) -> EmbeddedEngine:
    engine = r.server.controller
    assert isinstance(engine, EmbeddedEngine)
    return engine


async def _status(ws: ClientConnection, collection_id: str) -> dict[str, Any]:
    reply = await call(ws, {"type": "collection_status", "collection_id": collection_id})
    return dict(reply["collection"])


async def _ended(ws: ClientConnection, collection_id: str) -> dict[str, Any]:
    for _ in range(int(TIMEOUT * 2 / 0.05)):
        record = await _status(ws, collection_id)
        if record["status"] not in ("running", "stopping"):
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"collection {collection_id} did not end in time")


def _publish(r: Running, symbol: str, n: int, start: float, price: float = 100.0) -> None:
    bus = r.server.event_bus
    for i in range(n):
        bus.publish(
            topics.MARKET_PRICE_UPDATE,
            {"symbol": symbol, "price": price + (i % 50), "volume": 1.0, "timestamp": start + i * 0.001},
        )


async def _publish_drained(r: Running, symbol: str, n: int, start: float, chunk: int = 2_000) -> None:
    """Publish ``n`` updates in chunks, each delivered to the engine before the next (the bus
    queue per subscriber is bounded: this test must not lose updates before the collector)."""
    bus = r.server.event_bus
    for offset in range(0, n, chunk):
        _publish(r, symbol, min(chunk, n - offset), start + offset * 0.001)
        for _ in range(int(TIMEOUT / 0.001)):
            if not bus.pending("engine"):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.001)


def _rows(db_file: Any, dataset_id: int) -> int:
    db = sqlite3.connect(db_file)
    try:
        return int(
            db.execute("SELECT COUNT(*) FROM trades WHERE dataset_id = ?", (dataset_id,)).fetchone()[0]
        )
    finally:
        db.close()


async def test_collect_two_seconds_of_the_feed_then_backtest_it(settings_factory: Factory) -> None:
    """2 s of the synthetic feed become a trade-tick dataset that REST lists and a backtest replays."""
    settings = settings_factory(
        synthetic_symbols=["BTC-USD"], synthetic_interval=0.01, collection_flush_interval=0.2
    )
    async with engine_server(settings, http=True) as r:
        ws = await authed_client(r)
        async with ws:
            started = await call(ws, {"type": "collection_start", "symbols": ["BTC-USD"], "duration": "2s"})
            assert started["status"] == "collection_started", started
            cid = started["collection_id"]
            assert started["collection"]["ends_at"] is not None and started["collection"]["owner"] == "alice"
            record = await _ended(ws, cid)
            assert record["status"] == "completed" and record["dropped"] == 0
            dataset_id = record["datasets"]["BTC-USD"]
            assert (
                record["count"] == record["written"] == _rows(settings.data_dir / "tradewire.db", dataset_id)
            )
            assert record["count"] > 50 and 1.9 <= record["count"] / record["rate"] <= 5  # ~2 s of data
            listed = await call(ws, {"type": "results_request", "request_type": "collection_list"})
            assert [c["collection_id"] for c in listed["data"]] == [cid]
            assert (await call(ws, {"type": "upsert_strategy", "strategy_config": FAST}))["version"] == 1
            await call(ws, {"type": "subscribe", "stream": "execution_result"})
            session = await call(
                ws,
                {
                    "type": "session_start",
                    "session_type": "backtest",
                    "strategy_config": {"fast_cross": ["BTC-USD"]},
                    "config": {"dataset_id": dataset_id},
                },
            )
            result = await until(ws, lambda f: f.get("stream") == "execution_result", TIMEOUT * 2)
        async with httpx.AsyncClient(
            base_url=r.http_url, headers={"authorization": f"Bearer {r.token()}"}
        ) as http:
            datasets = (await http.get("/api/v1/datasets", params={"symbol": "BTC-USD"})).json()
    assert result["data"]["session_id"] == session["session_id"]
    assert result["data"]["status"] == "completed" and result["data"]["processed"] == record["count"]
    collected = next(d for d in datasets if d["id"] == dataset_id)
    assert (collected["kind"], collected["owner"], collected["rows"]) == ("trades", "alice", record["count"])
    assert collected["source"] == f"collection:{cid}" and len(collected["sha256"]) == 64
    assert collected["start_time"] < collected["end_time"]


async def test_stop_during_heavy_writes_loses_nothing(settings_factory: Factory) -> None:
    """32,500 updates published as fast as the engine takes them (the writer commits full batches
    meanwhile, the last partial one waits for the 10 s interval); the stop right after the last
    one commits every one of them: the dataset holds exactly what was published."""
    settings = settings_factory(
        synthetic_symbols=["ETH-USD"], synthetic_interval=3600, collection_flush_interval=10
    )
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            cid = (await call(ws, {"type": "collection_start", "symbols": ["ETH-USD"]}))["collection_id"]
            collector = _engine(r).collections._active[cid]
            started = time.perf_counter()
            await _publish_drained(r, "ETH-USD", 32_500, 2e9)
            published_in = time.perf_counter() - started
            assert collector.pending >= 2_500  # the stop has work to do
            stopped = await call(ws, {"type": "collection_stop", "collection_id": cid})
            record = stopped["collection"]
    dataset_id = record["datasets"]["ETH-USD"]
    assert record["status"] == "stopped" and record["dropped"] == 0 and record["pending"] == 0
    assert record["written"] == 32_500 == _rows(settings.data_dir / "tradewire.db", dataset_id)
    assert published_in < TIMEOUT * 4


async def test_shutdown_commits_what_was_buffered(settings_factory: Factory) -> None:
    """A server shutdown ends a running collection as interrupted with every update committed."""
    settings = settings_factory(synthetic_symbols=["ETH-USD"], synthetic_interval=3600)
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            started = await call(ws, {"type": "collection_start", "symbols": ["ETH-USD"], "duration": "1h"})
            cid = started["collection_id"]
            dataset_id = started["collection"]["datasets"]["ETH-USD"]
            await _publish_drained(r, "ETH-USD", 12_000, 2e9)
    assert _rows(settings.data_dir / "tradewire.db", dataset_id) == 12_000
    async with engine_server(settings) as again:
        ws = await authed_client(again)
        async with ws:
            record = await _status(ws, cid)
            datasets = await call(
                ws, {"type": "query", "query_type": "datasets", "params": {"symbol": "ETH-USD"}}
            )
    assert (record["status"], record["written"]) == ("interrupted", 12_000)
    assert [d["rows"] for d in datasets["data"] if d["id"] == dataset_id] == [12_000]


async def test_a_stalled_database_does_not_grow_memory_without_bound(settings_factory: Factory) -> None:
    """While another connection holds SQLite's write lock, the buffer stops at its bound and further
    updates are dropped and counted; after the stall everything accepted is committed."""
    settings = settings_factory(
        synthetic_symbols=["ETH-USD"], synthetic_interval=3600, collection_buffer_rows=5_000
    )
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            cid = (await call(ws, {"type": "collection_start", "symbols": ["ETH-USD"]}))["collection_id"]
            collector = _engine(r).collections._active[cid]
            locked, release = threading.Event(), threading.Event()

            def hold_lock() -> None:
                db = sqlite3.connect(settings.data_dir / "tradewire.db", timeout=TIMEOUT)
                db.execute("BEGIN IMMEDIATE")
                locked.set()
                release.wait(TIMEOUT * 2)
                db.rollback()
                db.close()

            holder = threading.Thread(target=hold_lock)
            holder.start()
            assert await asyncio.to_thread(locked.wait, TIMEOUT)
            peak = 0
            for block in range(25):  # 50,000 updates while nothing can be written
                await _publish_drained(r, "ETH-USD", 2_000, 2e9 + block * 2)
                peak = max(peak, collector.pending)
            health = r.server.controller.health()  # type: ignore[union-attr]
            release.set()
            await asyncio.to_thread(holder.join, TIMEOUT)
            record = (await call(ws, {"type": "collection_stop", "collection_id": cid}))["collection"]
    assert peak == 5_000  # the bound, reached and never passed
    assert health["collection_buffered_rows"] == 5_000 and health["collection_dropped_rows"] == 45_000
    assert (record["written"], record["dropped"]) == (5_000, 45_000)
    assert _rows(settings.data_dir / "tradewire.db", record["datasets"]["ETH-USD"]) == 5_000


async def test_collections_belong_to_their_owner(settings_factory: Factory) -> None:
    """Only the owner or an admin sees and stops a collection; basic users cannot start one;
    unknown symbols are refused with close matches."""
    settings = settings_factory(synthetic_symbols=["BTC-USD"], synthetic_interval=0.05)
    async with engine_server(settings) as r:
        alice = await authed_client(r, user="alice")
        bob = await authed_client(r, user="bob")
        admin = await authed_client(r, Level.ADMIN, user="root")
        basic = await authed_client(r, Level.BASIC, user="bea")
        async with alice, bob, admin, basic:
            cid = (await call(alice, {"type": "collection_start", "symbols": ["BTC-USD"]}))["collection_id"]
            for message in (
                {"type": "collection_stop", "collection_id": cid},
                {"type": "collection_status", "collection_id": cid},
            ):
                assert (await call(bob, message))["error_code"] == "collection_not_found"
            assert (await call(bob, {"type": "collection_status"}))["collections"] == []
            mine = await call(bob, {"type": "results_request", "request_type": "collection_list"})
            assert mine["data"] == []
            denied = await call(basic, {"type": "collection_start", "symbols": ["BTC-USD"]})
            assert (denied["error_code"], denied["details"]["required"]) == (
                "insufficient_permissions",
                "manage_collection",
            )
            typo = await call(bob, {"type": "collection_start", "symbols": ["btc-usd"], "duration": "5m"})
            assert typo["error_code"] == "unknown_symbol" and typo["details"]["matches"] == ["BTC-USD"]
            zero = await call(bob, {"type": "collection_start", "symbols": ["BTC-USD"], "duration": "0s"})
            assert (zero["error_code"], zero["details"]["path"]) == ("validation_error", "duration")
            seen = await call(admin, {"type": "collection_status"})
            assert [c["collection_id"] for c in seen["collections"]] == [cid]
            stopped = await call(admin, {"type": "collection_stop", "collection_id": cid})
            assert stopped["collection"]["status"] == "stopped"
            again = await call(alice, {"type": "collection_stop", "collection_id": cid})  # idempotent
            assert again["collection"]["status"] == "stopped"


async def test_collection_limit_per_user(settings_factory: Factory) -> None:
    settings = settings_factory(synthetic_symbols=["BTC-USD"], max_collections_per_user=1)
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            first = await call(ws, {"type": "collection_start", "symbols": ["BTC-USD"]})
            over = await call(ws, {"type": "collection_start", "symbols": ["BTC-USD"]})
            assert (over["error_code"], over["details"]) == ("collection_limit_exceeded", {"limit": 1})
            await call(ws, {"type": "collection_stop", "collection_id": first["collection_id"]})
            assert (await call(ws, {"type": "collection_start", "symbols": ["BTC-USD"]}))["status"] == (
                "collection_started"
            )
