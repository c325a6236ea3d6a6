"""The strategy manager on a real SQLite database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tradewire.controller import Caller
from tradewire.engine.examples import RSI_MEAN_REVERSION
from tradewire.engine.indicators import IndicatorBank, indicator_key
from tradewire.engine.storage.database import Database, sqlite_url
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.ticks import Tick
from tradewire.errors import StrategyInvalid, StrategyNotFound


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(sqlite_url(tmp_path))
    await database.start()
    yield database
    await database.stop()


def _manager(db: Database, bank: IndicatorBank | None = None) -> StrategyManager:
    return StrategyManager(db, bank or IndicatorBank(), lambda topic, payload: None)


async def test_upsert_versions_and_rejects_invalid_documents(db: Database) -> None:
    manager = _manager(db)
    assert await manager.upsert(Caller("alice"), RSI_MEAN_REVERSION) == ("rsi_mean_reversion", 1)
    assert await manager.upsert(Caller("alice"), RSI_MEAN_REVERSION) == ("rsi_mean_reversion", 2)
    with pytest.raises(StrategyInvalid) as exc:
        await manager.upsert(Caller("alice"), {**RSI_MEAN_REVERSION, "direction": "SIDEWAYS"})
    assert [e["path"] for e in exc.value.details["errors"]] == ["direction"]
    assert [s.version for s in await db.strategy_history("rsi_mean_reversion")] == [1, 2]


async def test_unloadable_stored_strategy_is_skipped_not_fatal(db: Database) -> None:
    """A stored document that no longer validates is logged and skipped at start-up."""
    await db.save_strategy("good", {**RSI_MEAN_REVERSION, "strategy_name": "good"}, None)
    broken: dict[str, Any] = {**RSI_MEAN_REVERSION, "strategy_name": "broken"}
    broken["s1_signal"] = {
        "conditions": [{"id": "x", "indicatorId": "removed_indicator", "operator": ">", "value": 1}]
    }
    await db.save_strategy("broken", broken, None)
    await db.set_active("broken", "BTC-USD", True)
    await db.set_active("good", "BTC-USD", True)
    manager = _manager(db)
    await manager.load()
    assert [s["strategy_name"] for s in manager.strategies(Caller("tests"))] == ["good"]
    assert [p["strategy_name"] for p in manager.status()] == ["good"]


async def test_deactivate_releases_shared_indicators(db: Database) -> None:
    bank = IndicatorBank()
    manager = _manager(db, bank)
    await manager.upsert(Caller("tests"), RSI_MEAN_REVERSION)
    await manager.activate(Caller("tests"), "rsi_mean_reversion", "BTC-USD")
    rsi = indicator_key("rsi", {"period": 14})
    assert bank.refcount("BTC-USD", rsi) == 3  # s1, z1 and ze1 share one instance
    await manager.activate(Caller("tests"), "rsi_mean_reversion", "BTC-USD")  # idempotent
    assert bank.refcount("BTC-USD", rsi) == 3
    await manager.deactivate(Caller("tests"), "rsi_mean_reversion", "BTC-USD")
    assert bank.values("BTC-USD") == {}
    again = await manager.deactivate(Caller("tests"), "rsi_mean_reversion", "BTC-USD")  # idempotent
    assert again["state"] == "inactive"
    with pytest.raises(StrategyNotFound) as missing:
        await manager.activate(Caller("tests"), "nope", "BTC-USD")
    assert missing.value.details == {"strategy_name": "nope"}


async def test_indicator_params_are_validated_with_paths(db: Database) -> None:
    """A typo in an indicator's params is an error at its path, never a broken running pair."""
    manager = _manager(db)
    bad: dict[str, Any] = {**RSI_MEAN_REVERSION}
    bad["s1_signal"] = {
        "conditions": [
            {"id": "x", "indicatorId": "rsi", "operator": "<", "value": 30, "params": {"perod": 14}}
        ]
    }
    result = manager.validate(bad)
    assert result["valid"] is False
    assert [e["path"] for e in result["errors"]] == ["s1_signal.conditions[0].params.perod"]
    assert result["errors"][0]["code"] == "invalid_params"
    with pytest.raises(StrategyInvalid):
        await manager.upsert(Caller("eve"), bad)
    assert await db.latest_strategies() == []


async def test_a_bad_direction_does_not_hide_a_misspelled_parameter(db: Database) -> None:
    """Validation reports every error at once, indicator parameters included."""
    manager = _manager(db)
    bad: dict[str, Any] = {**RSI_MEAN_REVERSION, "direction": "UP"}
    bad["s1_signal"] = {
        "conditions": [
            {"id": "x", "indicatorId": "rsi", "operator": "<", "value": 30, "params": {"perod": 14}}
        ]
    }
    paths = [e["path"] for e in manager.validate(bad)["errors"]]
    assert paths == ["direction", "s1_signal.conditions[0].params.perod"]


async def test_ticks_older_than_the_last_one_are_dropped_and_counted(db: Database) -> None:
    bank = IndicatorBank()
    manager = _manager(db, bank)
    await manager.upsert(Caller("tests"), RSI_MEAN_REVERSION)
    await manager.activate(Caller("tests"), "rsi_mean_reversion", "BTC-USD")
    manager.on_tick(Tick("BTC-USD", 100.0, 1.0, 10.0))
    manager.on_tick(Tick("BTC-USD", 101.0, 1.0, 10.0))  # same time: fine
    manager.on_tick(Tick("BTC-USD", 99.0, 1.0, 9.0))  # older: dropped
    assert (manager.ticks, manager.out_of_order_ticks) == (2, 1)
    assert manager.health()["out_of_order_ticks"] == 1


async def test_concurrent_activate_and_deactivate_end_consistent(db: Database) -> None:
    manager = _manager(db)
    await manager.upsert(Caller("tests"), RSI_MEAN_REVERSION)
    await asyncio.gather(
        manager.activate(Caller("tests"), "rsi_mean_reversion", "BTC-USD"),
        manager.deactivate(Caller("tests"), "rsi_mean_reversion", "BTC-USD"),
    )
    running = {(p["strategy_name"], p["symbol"]) for p in manager.status()}
    assert running == set(await db.active_pairs())


async def test_reload_does_not_duplicate_machines(db: Database) -> None:
    events: list[str] = []
    manager = StrategyManager(db, IndicatorBank(), lambda topic, payload: events.append(topic))
    await manager.load(["BTC-USD"])
    await manager.load(["BTC-USD"])  # e.g. the engine stopped and started again
    assert len(manager.status()) == 2
    assert len(manager._by_symbol["BTC-USD"]) == 2


async def test_deactivating_an_open_position_reports_it_closed(db: Database) -> None:
    signals: list[dict[str, Any]] = []
    manager = StrategyManager(
        db,
        IndicatorBank(),
        lambda topic, payload: signals.append(payload) if topic == "signal_generated" else None,
    )
    fast: dict[str, Any] = {**RSI_MEAN_REVERSION, "strategy_name": "fast"}
    fast["s1_signal"] = {
        "conditions": [
            {"id": "s", "indicatorId": "rsi", "operator": "<", "value": 50, "params": {"period": 2}}
        ]
    }
    fast["z1_entry"] = {
        **fast["z1_entry"],
        "conditions": [
            {"id": "z", "indicatorId": "rsi", "operator": ">", "value": 50, "params": {"period": 2}}
        ],
    }
    await manager.upsert(Caller("tests"), fast)
    await manager.activate(Caller("tests"), "fast", "BTC-USD")
    for ts, price in enumerate([100, 99, 98, 97, 99, 99.5]):
        manager.on_tick(Tick("BTC-USD", float(price), 1.0, float(ts)))
    assert [s["signal_type"] for s in signals] == ["S1", "Z1"], signals
    await manager.deactivate(Caller("tests"), "fast", "BTC-USD")
    assert (signals[-1]["signal_type"], signals[-1]["reason"]) == ("ZE1", "deactivated")
