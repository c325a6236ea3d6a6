"""The engine database on real SQLite and real PostgreSQL: migrations, versions, datasets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.postgres_server import postgres_database
from tradewire.engine.storage.database import Bar, Database, sqlite_url
from tradewire.engine.storage.schema import MIGRATIONS


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    async with postgres_database() as url:
        yield require_service(url, "no PostgreSQL server on 127.0.0.1:5432")


async def test_migrations_apply_once_and_record_the_version(database_url: str) -> None:
    db = Database(database_url)
    await db.start()
    assert await db.schema_version() == MIGRATIONS[-1].version
    await db.stop()
    again = Database(database_url)
    await again.start()  # nothing left to apply: must not fail or duplicate
    assert await again.schema_version() == MIGRATIONS[-1].version
    await again.stop()


async def test_strategy_versions_persist_across_restarts(database_url: str) -> None:
    db = Database(database_url)
    await db.start()
    assert await db.save_strategy("pump", {"strategy_name": "pump", "v": 1}, "alice") == 1
    assert await db.save_strategy("pump", {"strategy_name": "pump", "v": 2}, "bob") == 2
    assert await db.save_strategy("revert", {"strategy_name": "revert"}, None) == 1
    await db.stop()
    reopened = Database(database_url)
    await reopened.start()
    latest = {s.name: s for s in await reopened.latest_strategies()}
    assert (latest["pump"].version, latest["pump"].document["v"], latest["pump"].created_by) == (2, 2, "bob")
    assert [s.version for s in await reopened.strategy_history("pump")] == [1, 2]
    await reopened.stop()


async def test_dataset_import_is_one_transaction_and_reads_back_in_order(database_url: str) -> None:
    db = Database(database_url)
    await db.start()
    rows = [Bar(float(t), 1.0 + t, 2.0 + t, 0.5 + t, 1.5 + t, 10.0 * t) for t in range(12_000, 0, -1)]
    dataset = await db.import_bars("BTC", "unit-test", rows)
    assert (dataset.symbol, dataset.kind, dataset.rows) == ("BTC", "ohlcv", 12_000)
    assert (dataset.start_ts, dataset.end_ts) == (1.0, 12_000.0)
    loaded = await db.load_bars(dataset.id)
    assert [b.ts for b in loaded] == [float(t) for t in range(1, 12_001)]
    assert loaded[0] == Bar(1.0, 2.0, 3.0, 1.5, 2.5, 10.0)
    trades = await db.import_trades("ETH", "unit-test", [{"ts": 1.0, "price": 5.0, "volume": 1.0}])
    assert [d.symbol for d in await db.datasets()] == ["BTC", "ETH"]
    assert (await db.datasets("ETH"))[0].id == trades.id
    await db.stop()
