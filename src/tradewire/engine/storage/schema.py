"""Tables of the engine's database (SQLAlchemy Core) and the ordered migrations that create them.

A migration is a numbered step applied once, in order, inside a transaction, and recorded in
``schema_migrations``; a database is upgraded on start by running the steps it lacks. Steps are
append-only: never edit a released one, add the next number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("applied_at", Float, nullable=False),
)

strategies = Table(
    "strategies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128)),
    UniqueConstraint("name", "version", name="uq_strategy_version"),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("symbol", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # "ohlcv" | "trades"
    Column("source", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("rows", Integer, nullable=False, default=0),
    Column("start_ts", Float),
    Column("end_ts", Float),
)

bars = Table(
    "bars",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("open", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("volume", Float, nullable=False),
)
Index("ix_bars_dataset_ts", bars.c.dataset_id, bars.c.ts)

trades = Table(
    "trades",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("volume", Float, nullable=False),
    Column("bid", Float),
    Column("ask", Float),
)
Index("ix_trades_dataset_ts", trades.c.dataset_id, trades.c.ts)


activations = Table(
    "activations",
    metadata,
    Column("strategy_name", String(128), primary_key=True),
    Column("symbol", String(32), primary_key=True),
    Column("activated_at", Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create(*tables: Table) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for table in tables:
            table.create(conn)

    return apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "strategies with versions", _create(strategies)),
    Migration(2, "datasets of bars and trades", _create(datasets, bars, trades)),
    Migration(3, "active (strategy, symbol) pairs", _create(activations)),
)
