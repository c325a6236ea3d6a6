"""The reference engine behind the gateway, over a real socket: strategies end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import (
    authed_client,
    call,
    engine_server,
    request,
    until,
)
from tradewire import Level
from tradewire.controller import Caller
from tradewire.engine.controller import EmbeddedEngine
from tradewire.engine.indicators import IndicatorBank
from tradewire.engine.market_data import read_ohlcv_csv
from tradewire.engine.storage.database import Database
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.symbols import SymbolSource
from tradewire.engine.ticks import Tick

SAMPLE = Path(__file__).resolve().parents[2] / "src/tradewire/engine/sample_data/GOOG.csv"
FAST_RSI: dict[str, Any] = {
    "strategy_name": "fast_rsi",
    "direction": "LONG",
    "s1_signal": {
        "conditions": [
            {"id": "low", "indicatorId": "rsi", "operator": "<", "value": 48, "params": {"period": 5}}
        ]
    },
    "z1_entry": {
        "conditions": [
            {"id": "up", "indicatorId": "rsi", "operator": ">", "value": 50, "params": {"period": 5}}
        ],
        "positionSize": {"type": "percentage", "value": 10},
        "stopLoss": {"offsetPercent": 5},
        "takeProfit": {"offsetPercent": 10},
    },
    "ze1_close": {
        "conditions": [
            {"id": "hi", "indicatorId": "rsi", "operator": ">", "value": 60, "params": {"period": 5}}
        ]
    },
    "o1_cancel": {"conditions": [], "timeoutSeconds": 30},
    "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": ["notify"]},
}


_client = authed_client
_call = call


_until = until


async def test_strategy_lifecycle_end_to_end(settings_factory: Callable[..., Any]) -> None:
    """Examples installed; validate, upsert (versioned), activate, signals streamed, persisted."""
    settings = settings_factory(synthetic_interval=0.01, synthetic_symbols="BTC-USD,ETH-USD")
    async with engine_server(settings) as r:
        ws = await _client(r)
        async with ws:
            listed = await request(ws, {"type": "get_strategies", "id": 1})
            assert listed["status"] == "strategies_list"
            assert {s["strategy_name"] for s in listed["strategies"]} == {
                "pump_detector",
                "rsi_mean_reversion",
            }
            bad = await request(
                ws, {"type": "validate_strategy_config", "strategy_config": {**FAST_RSI, "direction": "UP"}}
            )
            assert bad["status"] == "strategy_validation" and bad["valid"] is False
            assert bad["errors"][0]["path"] == "direction"
            first = await request(ws, {"type": "upsert_strategy", "strategy_config": FAST_RSI, "id": 2})
            second = await request(ws, {"type": "upsert_strategy", "strategy_config": FAST_RSI, "id": 3})
            assert (first["status"], first["version"], second["version"]) == ("strategy_upserted", 1, 2)
            invalid = await request(
                ws, {"type": "upsert_strategy", "strategy_config": {"strategy_name": "x"}}
            )
            assert invalid["error_code"] == "validation_error"
            assert any(e["path"] == "direction" for e in invalid["details"]["errors"])
            await request(
                ws, {"type": "subscribe", "stream": "signals", "params": {"strategy_name": "fast_rsi"}}
            )
            await request(
                ws, {"type": "subscribe", "stream": "state_machines", "params": {"strategy_name": "fast_rsi"}}
            )
            activated = await _call(
                ws, {"type": "activate_strategy", "strategy_name": "fast_rsi", "symbol": "BTC-USD"}
            )
            assert (activated["status"], activated["state"]) == ("strategy_activated", "monitoring")
            signal = await _until(ws, lambda f: f.get("stream") == "signals")
            assert signal["data"]["signal_type"] == "S1"
            assert signal["data"]["symbol"] == "BTC-USD"
            assert signal["data"]["indicators"]["rsi"] < 48
            status = await _call(
                ws, {"type": "get_strategy_status", "strategy_name": "fast_rsi", "symbol": "BTC-USD"}
            )
            assert status["status"] == "strategy_status"
            assert status["signals"] >= 1
            missing = await request(
                ws, {"type": "activate_strategy", "strategy_name": "nope", "symbol": "BTC-USD"}
            )
            assert missing["error_code"] == "strategy_not_found"
    async with engine_server(settings) as again:  # same database: versions and activations survive
        ws = await _client(again)
        async with ws:
            listed = await request(ws, {"type": "get_strategies"})
            fast = next(s for s in listed["strategies"] if s["strategy_name"] == "fast_rsi")
            assert (fast["version"], fast["active_symbols"]) == (2, ["BTC-USD"])
            done = await request(
                ws, {"type": "deactivate_strategy", "strategy_name": "fast_rsi", "symbol": "BTC-USD"}
            )
            assert done["status"] == "strategy_deactivated"
            everything = await request(ws, {"type": "get_strategy_status"})
            assert everything["status"] == "all_strategies_status"
            assert all(p["strategy_name"] != "fast_rsi" for p in everything["strategies"])


async def test_each_symbol_has_its_own_state(settings_factory: Callable[..., Any]) -> None:
    """One strategy on two symbols: a falling BTC signals on BTC only (the original shared state)."""
    async with engine_server(settings_factory(synthetic_symbols="")) as r:
        engine = r.server.controller
        assert isinstance(engine, EmbeddedEngine)
        engine.symbols.add(SymbolSource.SYNTHETIC, ["BTC-USD", "ETH-USD"])  # fed by this test
        manager = engine.strategies
        await manager.upsert(Caller("tests"), FAST_RSI)
        await manager.activate(Caller("tests"), "fast_rsi", "BTC-USD")
        await manager.activate(Caller("tests"), "fast_rsi", "ETH-USD")
        for n in range(10):
            manager.on_tick(Tick("BTC-USD", 100.0 - n, 1.0, 1_000.0 + n))
            manager.on_tick(Tick("ETH-USD", 100.0 + n, 1.0, 1_000.0 + n))
        pairs = {p["symbol"]: p for p in manager.status("fast_rsi")}
        assert (pairs["BTC-USD"]["state"], pairs["BTC-USD"]["signals"]) == ("signal_detected", 1)
        assert (pairs["ETH-USD"]["state"], pairs["ETH-USD"]["signals"]) == ("monitoring", 0)


async def test_strategy_writes_need_trader(settings_factory: Callable[..., Any]) -> None:
    async with engine_server(settings_factory(synthetic_symbols="")) as r:
        ws = await _client(r, Level.BASIC)
        async with ws:
            denied = await request(ws, {"type": "upsert_strategy", "strategy_config": FAST_RSI})
            assert (denied["error_code"], denied["details"]["required"]) == (
                "insufficient_permissions",
                "manage_strategies",
            )
            assert (await request(ws, {"type": "get_strategies"}))["status"] == "strategies_list"
            indicators = await request(ws, {"type": "query", "query_type": "indicators"})
            assert "rsi" in {i["name"] for i in indicators["data"]}
            health = await r.server.health_check()
            assert health["components"]["engine"]["ready"] is True


async def test_market_data_and_indicators_stream_from_the_synthetic_feed(
    settings_factory: Callable[..., Any],
) -> None:
    settings = settings_factory(synthetic_interval=0.01, synthetic_symbols="SOL-USD")
    async with engine_server(settings) as r:
        ws = await _client(r)
        async with ws:
            await request(
                ws, {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["SOL-USD"]}}
            )
            await request(
                ws, {"type": "subscribe", "stream": "indicators", "params": {"indicator_types": ["rsi"]}}
            )
            price = await _until(ws, lambda f: f.get("stream") == "market_data")
            assert price["data"]["source"] == "synthetic" and price["data"]["price"] > 0
            indicator = await _until(ws, lambda f: f.get("stream") == "indicators")
            assert indicator["data"]["indicator_type"] == "rsi"
            assert 0 <= indicator["data"]["value"] <= 100
            json.dumps(indicator)


async def test_engine_replays_a_stored_dataset_and_ignores_malformed_prices(
    settings_factory: Callable[..., Any], tmp_path: Any
) -> None:
    """`replay_dataset` feeds a stored dataset through the engine; NaN/negative prices are dropped."""
    settings = settings_factory(synthetic_symbols="", replay_dataset=1, replay_speed=0)
    db = Database(settings.database)
    await db.start()
    await db.import_bars("GOOG", str(SAMPLE), read_ohlcv_csv(SAMPLE))
    manager = StrategyManager(db, IndicatorBank(), lambda topic, payload: None)
    await manager.upsert(Caller("tests"), FAST_RSI)  # stored and active before the engine starts replaying
    await manager.activate(Caller("tests"), "fast_rsi", "replay:GOOG")  # replays have their own symbols
    await db.stop()
    async with engine_server(settings) as r:
        engine = r.server.controller
        assert isinstance(engine, EmbeddedEngine)
        for _ in range(200):
            if engine.strategies.ticks >= 2148:
                break
            await asyncio.sleep(0.01)
        assert engine.strategies.ticks == 2148  # every bar of the dataset, as fast as possible
        before = engine.strategies.ticks
        for bad in (float("nan"), -1.0, float("inf"), True):
            r.server.event_bus.publish(
                "market.price_update", {"symbol": "GOOG", "price": bad, "timestamp": 1.0}
            )
        await asyncio.sleep(0.05)
        assert engine.rejected_ticks == 4
        assert engine.strategies.ticks >= before
