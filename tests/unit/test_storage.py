"""The engine database on real SQLite and real PostgreSQL: migrations, versions, datasets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import require_service
from tests.postgres_server import postgres_database
from tradewire.engine.storage.collections import CollectionStorage
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


async def test_migration_8_gives_existing_rows_owners(database_url: str) -> None:
    """A database from before ownership: each strategy is owned by the creator of its first
    version ("tradewire" when unknown); existing datasets by "tradewire"."""
    db = Database(database_url)
    await db.start()
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM schema_migrations WHERE version = 8"))
        await conn.execute(text("DROP TABLE collections"))
        for table in ("strategies", "datasets"):
            await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN owner"))
        for name, version, by in (("a", 1, "alice"), ("a", 2, "bob"), ("b", 1, None)):
            await conn.execute(
                text(
                    "INSERT INTO strategies (name, version, document, created_at, created_by) "
                    "VALUES (:n, :v, '{}', 0, :by)"
                ),
                {"n": name, "v": version, "by": by},
            )
        await conn.execute(
            text(
                "INSERT INTO datasets (symbol, kind, source, created_at, rows) "
                "VALUES ('X', 'trades', 'f', 0, 0)"
            )
        )
    await db.stop()
    upgraded = Database(database_url)
    await upgraded.start()
    latest = {s.name: s for s in await upgraded.latest_strategies()}
    datasets = await upgraded.datasets()
    assert await upgraded.schema_version() == 8
    await upgraded.stop()
    assert (latest["a"].owner, latest["a"].created_by, latest["b"].owner) == ("alice", "bob", "tradewire")
    assert [d.owner for d in datasets] == ["tradewire"]


async def test_collection_appends_are_transactions_and_build_columns(database_url: str) -> None:
    """Batches extend the datasets' counts and time range, invalidate the columnar copy, and the
    end builds it; on SQLite and PostgreSQL alike."""
    db = Database(database_url)
    await db.start()
    storage = CollectionStorage(db)
    record = {
        "id": "col_t",
        "owner": "alice",
        "symbols": ["BTC-USD", "ETH-USD"],
        "duration": "continuous",
        "status": "running",
        "datasets": {},
        "created_at": 0.0,
        "ends_at": None,
        "ended_at": None,
        "written": 0,
        "dropped": 0,
        "error": None,
    }
    ids = await storage.create(record, "collection:col_t")
    btc, eth = ids["BTC-USD"], ids["ETH-USD"]
    await storage.append("col_t", [(btc, 2.0, 10.0, 1.0, 9.9, 10.1), (eth, 1.0, 5.0, 2.0, None, None)], 2, 0)
    early = await db.load_columns(btc)  # a backtest of a running collection: rows so far
    await storage.append("col_t", [(btc, 3.0, 11.0, 1.0, None, None), (btc, 1.5, 9.0, 1.0, None, None)], 4, 7)
    await storage.finish([btc, eth])
    columns = await db.load_columns(btc)
    dataset = await db.dataset(btc)
    row = await storage.get("col_t")
    await db.stop()
    assert (
        len(early) == 1 and list(columns.ts) == [1.5, 2.0, 3.0] and list(columns.close) == [9.0, 10.0, 11.0]
    )
    assert (dataset.rows, dataset.start_ts, dataset.end_ts, dataset.owner) == (3, 1.5, 3.0, "alice")
    assert dataset.sha256 is not None and len(dataset.sha256) == 64
    assert row is not None and (row["written"], row["dropped"], row["datasets"]) == (
        4,
        7,
        {"BTC-USD": btc, "ETH-USD": eth},
    )
