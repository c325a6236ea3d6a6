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
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
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
    Column("owner", String(128)),  # of the strategy (the creator of version 1; migration 8)
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
    Column("sha256", String(64)),  # content hash (migration 6)
    Column("owner", String(128)),  # who imported or collected it; "tradewire" for samples (migration 8)
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


sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("session_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("strategy_config", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("client_key", String(64)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("progress", Float, nullable=False, default=0.0),
    Column("processed", BigInteger, nullable=False, default=0),
    Column("error", JSON),
    Column("summary", JSON),
    UniqueConstraint("owner", "client_key", name="uq_session_client_key"),
)
Index("ix_sessions_owner", sessions.c.owner, sessions.c.created_at)
Index("ix_sessions_status", sessions.c.status)

session_results = Table(
    "session_results",
    metadata,
    Column("session_id", String(32), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("document", LargeBinary, nullable=False),  # canonical JSON (sorted keys): byte-identical reruns
    Column("equity", LargeBinary, nullable=False),  # float64 times, then float64 values
    Column("sha256", String(64), nullable=False),  # of document + equity
    Column("created_at", Float, nullable=False),
)


dataset_columns = Table(
    "dataset_columns",
    metadata,
    Column("dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("rows", Integer, nullable=False),
    # six little-endian float64 arrays one after the other: ts, open, high, low, close, volume
    Column("columns", LargeBinary, nullable=False),
)


collections = Table(
    "collections",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("symbols", JSON, nullable=False),
    Column("duration", String(16), nullable=False),  # "30s", "5m", "1h", "continuous"
    Column("status", String(16), nullable=False),  # running | stopping | completed | stopped | ...
    Column("datasets", JSON, nullable=False),  # {symbol: dataset id}
    Column("created_at", Float, nullable=False),
    Column("ends_at", Float),  # None: continuous
    Column("ended_at", Float),
    Column("written", BigInteger, nullable=False, default=0),  # rows committed
    Column("dropped", BigInteger, nullable=False, default=0),  # rows refused by a full buffer
    Column("error", JSON),
)
Index("ix_collections_owner", collections.c.owner, collections.c.created_at)

SYSTEM_OWNER = "tradewire"  # owner of what tradewire ships (example strategies, sample datasets)


def _add_column(conn: Connection, table: str, column: str, ddl: str) -> None:
    """``ALTER TABLE ... ADD COLUMN`` unless ``table`` has it (a database created after the column
    joined the table definition already does)."""
    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")


def _ownership_and_collections(conn: Connection) -> None:
    """Owners of strategies (the creator of each strategy's first version, or "tradewire") and of
    datasets (existing ones are the operator's imports and the samples: "tradewire"); the
    ``collections`` table."""
    _add_column(conn, "strategies", "owner", "VARCHAR(128)")
    _add_column(conn, "datasets", "owner", "VARCHAR(128)")
    conn.execute(
        text(
            "UPDATE strategies SET owner = COALESCE((SELECT v1.created_by FROM strategies AS v1 "
            "WHERE v1.name = strategies.name ORDER BY v1.version LIMIT 1), :owner) WHERE owner IS NULL"
        ),
        {"owner": SYSTEM_OWNER},
    )
    conn.execute(datasets.update().where(datasets.c.owner.is_(None)).values(owner=SYSTEM_OWNER))
    collections.create(conn, checkfirst=True)


def _add_dataset_hash(conn: Connection) -> None:
    """``datasets.sha256``: the content hash that makes importing the same data twice a no-op.
    (Guarded: a database created after this column joined ``datasets`` already has it.)"""
    columns = {column["name"] for column in inspect(conn).get_columns("datasets")}
    if "sha256" not in columns:
        conn.exec_driver_sql("ALTER TABLE datasets ADD COLUMN sha256 VARCHAR(64)")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_datasets_sha256 ON datasets (sha256)")


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
    Migration(4, "sessions (backtest, paper, live jobs)", _create(sessions)),
    Migration(5, "stored session results", _create(session_results)),
    Migration(6, "dataset content hashes", _add_dataset_hash),
    Migration(7, "columnar copies of datasets for replay", _create(dataset_columns)),
    Migration(8, "owners of strategies and datasets; data collections", _ownership_and_collections),
)
