"""The engine's database: connection, migrations on start, and the queries the engine needs.

SQLite (``sqlite+aiosqlite:///path``) by default, PostgreSQL (``postgresql+asyncpg://...``)
through the same code. Every write runs in one transaction (``engine.begin()``), so a crash loses
nothing that was committed and never leaves half a strategy version or half a dataset.
"""

from __future__ import annotations

import sys
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, delete, event, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tradewire.engine.storage.schema import (
    MIGRATIONS,
    SYSTEM_OWNER,
    activations,
    bars,
    dataset_columns,
    datasets,
    schema_migrations,
    session_results,
    sessions,
    strategies,
    trades,
)
from tradewire.engine.ticks import Tick

_log = structlog.get_logger("tradewire.storage")
INSERT_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class StoredStrategy:
    name: str
    version: int
    document: dict[str, Any]
    created_at: float
    created_by: str | None
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    id: int
    symbol: str
    kind: str
    source: str
    created_at: float
    rows: int
    start_ts: float | None
    end_ts: float | None
    sha256: str | None = None
    owner: str | None = None

    def describe(self) -> dict[str, Any]:
        """The wire form (``query datasets``, ``GET /api/v1/datasets``)."""
        return {
            "id": self.id,
            "symbol": self.symbol,
            "kind": self.kind,
            "source": self.source,
            "rows": self.rows,
            "start_time": self.start_ts,
            "end_time": self.end_ts,
            "sha256": self.sha256,
            "owner": self.owner,
        }


@dataclass(frozen=True, slots=True)
class BarColumns:
    """A dataset as columns (8 bytes per value: a million bars hold ~48 MB, not ~250 MB of
    objects); trade ticks are bars with open = high = low = close = price."""

    ts: array[float]
    open: array[float]
    high: array[float]
    low: array[float]
    close: array[float]
    volume: array[float]

    def __len__(self) -> int:
        return len(self.ts)

    def pack(self) -> bytes:
        """The six columns as little-endian float64, one after the other."""
        parts = [array("d", column) for column in self.arrays()]
        if sys.byteorder == "big":
            for part in parts:
                part.byteswap()
        return b"".join(part.tobytes() for part in parts)

    @classmethod
    def unpack(cls, blob: bytes, rows: int) -> BarColumns:
        whole = array("d")
        whole.frombytes(blob)
        if sys.byteorder == "big":
            whole.byteswap()
        if len(whole) != 6 * rows:
            raise ValueError(f"columnar copy holds {len(whole)} values, expected {6 * rows}")
        return cls(*(whole[i * rows : (i + 1) * rows] for i in range(6)))

    def arrays(self) -> tuple[array[float], ...]:
        return (self.ts, self.open, self.high, self.low, self.close, self.volume)


@dataclass(frozen=True, slots=True)
class Bar:
    ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float


_BAR_FIELDS = ("ts", "open", "high", "low", "close", "volume")


def bars_to_ticks(symbol: str, bars: Iterable[Bar]) -> list[Tick]:
    """One tick per bar, at its close (price = close, volume = the bar's volume)."""
    return [Tick(symbol, bar.close, bar.volume, bar.ts) for bar in bars]


def sqlite_url(data_dir: Path) -> str:
    """The default database: one SQLite file in the data directory."""
    return f"sqlite+aiosqlite:///{(data_dir / 'tradewire.db').resolve()}"


class Database:
    """One engine per process; ``start()`` applies missing migrations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database not started")
        return self._engine

    async def start(self) -> None:
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_async_engine(self.url)
        if self.url.startswith("sqlite"):
            # The driver would start transactions only before DML, so DDL (migrations) would
            # commit statement by statement; SQLAlchemy's recipe: we issue BEGIN ourselves.
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self._engine.sync_engine, "begin", _sqlite_begin)
        async with self._engine.begin() as conn:
            applied = await conn.run_sync(_migrate)
        if applied:
            _log.info("storage.migrated", applied=applied, url=_redact(self.url))

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def schema_version(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.max(schema_migrations.c.version)))).scalar() or 0)

    # ------------------------------------------------------------------ strategies
    async def save_strategy(
        self, name: str, document: dict[str, Any], created_by: str | None, owner: str | None = None
    ) -> int:
        """Store ``document`` as the next version of ``name``; returns that version. The owner is
        the first version's (``owner``, else ``created_by``, for a new name)."""
        for _attempt in range(3):  # a concurrent upsert of the same name may take our number
            try:
                async with self.engine.begin() as conn:
                    current = (
                        await conn.execute(
                            select(strategies.c.version, strategies.c.owner)
                            .where(strategies.c.name == name)
                            .order_by(strategies.c.version.desc())
                            .limit(1)
                        )
                    ).first()
                    version = int(current[0]) + 1 if current is not None else 1
                    await conn.execute(
                        insert(strategies).values(
                            name=name,
                            version=version,
                            document=document,
                            created_at=time.time(),
                            created_by=created_by,
                            owner=(current[1] if current is not None else None) or owner or created_by,
                        )
                    )
                return version
            except IntegrityError:
                continue
        raise RuntimeError(f"could not store a new version of {name!r}")

    async def latest_strategies(self) -> list[StoredStrategy]:
        latest = (
            select(strategies.c.name, func.max(strategies.c.version).label("version"))
            .group_by(strategies.c.name)
            .subquery()
        )
        query = select(strategies).join(
            latest, (strategies.c.name == latest.c.name) & (strategies.c.version == latest.c.version)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(strategies.c.name))).mappings().all()
        return [_stored(row) for row in rows]

    async def strategy_history(self, name: str) -> list[StoredStrategy]:
        query = select(strategies).where(strategies.c.name == name).order_by(strategies.c.version)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_stored(row) for row in rows]

    async def set_active(self, name: str, symbol: str, active: bool) -> None:
        """Remember (or forget) that ``name`` runs on ``symbol``, so a restart resumes it."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(activations).where(
                    (activations.c.strategy_name == name) & (activations.c.symbol == symbol)
                )
            )
            if active:
                await conn.execute(
                    insert(activations).values(strategy_name=name, symbol=symbol, activated_at=time.time())
                )

    async def active_pairs(self) -> list[tuple[str, str]]:
        query = select(activations.c.strategy_name, activations.c.symbol).order_by(activations.c.activated_at)
        async with self.engine.connect() as conn:
            return [(row[0], row[1]) for row in (await conn.execute(query)).all()]

    # ------------------------------------------------------------------ datasets
    async def import_bars(
        self,
        symbol: str,
        source: str,
        rows: Sequence[Bar],
        sha256: str | None = None,
        owner: str = SYSTEM_OWNER,
    ) -> Dataset:
        """A new OHLCV dataset with ``rows`` (and its columnar copy), in one transaction."""
        ordered = sorted(rows, key=lambda bar: bar.ts)
        columns = BarColumns(
            *(
                array("d", (getattr(bar, name) for bar in ordered))
                for name in ("ts", "open", "high", "low", "close", "volume")
            )
        )
        async with self.engine.begin() as conn:
            dataset_id = await _new_dataset(conn, symbol, "ohlcv", source, rows, sha256, owner)
            for chunk in _chunks([_bar_row(dataset_id, bar) for bar in ordered]):
                await conn.execute(insert(bars), chunk)
            if ordered:
                await store_columns(conn, dataset_id, columns)
        return await self.dataset(dataset_id)

    async def import_trades(
        self,
        symbol: str,
        source: str,
        rows: Sequence[dict[str, Any]],
        sha256: str | None = None,
        owner: str = SYSTEM_OWNER,
    ) -> Dataset:
        """A new trade-tick dataset (``ts, price, volume, bid?, ask?`` per row), in one transaction."""
        async with self.engine.begin() as conn:
            dataset_id = await _new_dataset(conn, symbol, "trades", source, rows, sha256, owner)
            for chunk in _chunks([{"dataset_id": dataset_id, **row} for row in rows]):
                await conn.execute(insert(trades), chunk)
        return await self.dataset(dataset_id)

    async def dataset_by_hash(self, sha256: str) -> Dataset | None:
        """The dataset with this content hash, if one was imported already."""
        query = select(datasets).where(datasets.c.sha256 == sha256).order_by(datasets.c.id).limit(1)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return Dataset(**dict(row)) if row is not None else None

    async def find_dataset(self, dataset_id: int) -> Dataset | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(datasets).where(datasets.c.id == dataset_id))).mappings().first()
        return Dataset(**dict(row)) if row is not None else None

    async def load_columns(self, dataset_id: int) -> BarColumns:
        """A dataset in time order as :class:`BarColumns`.

        Replays read the dataset's columnar copy (one blob: ~50 ms for a million bars) instead of
        its rows (~1.5 µs per row in SQLite's own row decoding, the larger part of a backtest's
        time). The copy is written at import, or built from the rows on first use.
        """
        async with self.engine.connect() as conn:
            query = select(dataset_columns.c.rows, dataset_columns.c.columns).where(
                dataset_columns.c.dataset_id == dataset_id
            )
            stored = (await conn.execute(query)).first()
        if stored is not None:
            return BarColumns.unpack(bytes(stored[1]), int(stored[0]))
        columns = await self.read_rows(dataset_id)
        if len(columns):
            async with self.engine.begin() as conn:
                await store_columns(conn, dataset_id, columns)
        return columns

    async def read_rows(self, dataset_id: int) -> BarColumns:
        """A dataset's rows in time order, read in chunks straight into arrays."""
        dataset = await self.dataset(dataset_id)
        columns: tuple[Any, ...]
        if dataset.kind == "ohlcv":
            table = bars
            columns = (bars.c.ts, bars.c.open, bars.c.high, bars.c.low, bars.c.close, bars.c.volume)
        else:
            table = trades
            columns = (trades.c.ts, trades.c.price, trades.c.volume)
        query = select(*columns).where(table.c.dataset_id == dataset_id).order_by(table.c.ts, table.c.id)
        out = BarColumns(*(array("d") for _ in range(6)))
        async with self.engine.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=INSERT_CHUNK))
            async for chunk in result.partitions():
                _extend(out, chunk, dataset.kind == "ohlcv")
        return out

    async def dataset(self, dataset_id: int) -> Dataset:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(datasets).where(datasets.c.id == dataset_id))).mappings().one()
        return Dataset(**dict(row))

    async def datasets(self, symbol: str | None = None) -> list[Dataset]:
        query = select(datasets).order_by(datasets.c.id)
        if symbol is not None:
            query = query.where(datasets.c.symbol == symbol)
        async with self.engine.connect() as conn:
            return [Dataset(**dict(row)) for row in (await conn.execute(query)).mappings().all()]

    async def load_ticks(self, dataset_id: int) -> list[Tick]:
        """A dataset as ticks in time order: one per trade, or one per bar at its close."""
        dataset = await self.dataset(dataset_id)
        if dataset.kind == "ohlcv":
            return bars_to_ticks(dataset.symbol, await self.load_bars(dataset_id))
        query = select(trades.c.ts, trades.c.price, trades.c.volume, trades.c.bid, trades.c.ask).where(
            trades.c.dataset_id == dataset_id
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(trades.c.ts, trades.c.id))).all()
        return [Tick(dataset.symbol, price, volume, ts, bid, ask) for ts, price, volume, bid, ask in rows]

    async def load_bars(self, dataset_id: int) -> list[Bar]:
        query = select(bars.c.ts, bars.c.open, bars.c.high, bars.c.low, bars.c.close, bars.c.volume).where(
            bars.c.dataset_id == dataset_id
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(bars.c.ts, bars.c.id))).all()
        return [Bar(*row) for row in rows]


async def store_columns(conn: Any, dataset_id: int, columns: BarColumns) -> None:
    await conn.execute(delete(dataset_columns).where(dataset_columns.c.dataset_id == dataset_id))
    await conn.execute(
        insert(dataset_columns).values(dataset_id=dataset_id, rows=len(columns), columns=columns.pack())
    )


def _extend(out: BarColumns, rows: Sequence[Any], ohlcv: bool) -> None:
    if ohlcv:
        for column, values in zip(
            (out.ts, out.open, out.high, out.low, out.close, out.volume), zip(*rows, strict=True), strict=True
        ):
            column.extend(values)
        return
    stamps, prices, volumes = zip(*rows, strict=True)
    out.ts.extend(stamps)
    for column in (out.open, out.high, out.low, out.close):
        column.extend(prices)
    out.volume.extend(volumes)


# ---------------------------------------------------------------------- sessions


class SessionStorage:
    """Session records and their results (a view of :class:`Database` for the job controller)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, record: dict[str, Any]) -> None:
        async with self._db.engine.begin() as conn:
            await conn.execute(insert(sessions).values(**record))

    async def update(self, session_id: str, **fields: Any) -> None:
        async with self._db.engine.begin() as conn:
            await conn.execute(update(sessions).where(sessions.c.id == session_id).values(**fields))

    async def get(self, session_id: str) -> dict[str, Any] | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.id == session_id))).mappings().first()
        return dict(row) if row is not None else None

    async def by_client_key(self, owner: str, client_key: str) -> dict[str, Any] | None:
        query = select(sessions).where((sessions.c.owner == owner) & (sessions.c.client_key == client_key))
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return dict(row) if row is not None else None

    async def list(self, owner: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first; every owner's when ``owner`` is None (admins)."""
        query = select(sessions).order_by(sessions.c.created_at.desc(), sessions.c.id).limit(limit)
        if owner is not None:
            query = query.where(sessions.c.owner == owner)
        async with self._db.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]

    async def interrupt_unfinished(self, now: float) -> int:
        """Sessions a previous process left running are ``interrupted`` (returns how many)."""
        unfinished = sessions.c.status.in_(("starting", "running", "stopping"))
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                update(sessions).where(unfinished).values(status="interrupted", ended_at=now)
            )
        return int(result.rowcount or 0)

    async def save_results(self, session_id: str, document: bytes, equity: bytes, sha256: str) -> None:
        async with self._db.engine.begin() as conn:
            await conn.execute(
                insert(session_results).values(
                    session_id=session_id,
                    document=document,
                    equity=equity,
                    sha256=sha256,
                    created_at=time.time(),
                )
            )

    async def results(self, session_id: str) -> tuple[bytes, bytes, str] | None:
        query = select(session_results.c.document, session_results.c.equity, session_results.c.sha256).where(
            session_results.c.session_id == session_id
        )
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (bytes(row[0]), bytes(row[1]), str(row[2])) if row is not None else None


async def _new_dataset(
    conn: Any, symbol: str, kind: str, source: str, rows: Sequence[Any], sha256: str | None, owner: str
) -> int:
    stamps = [row.ts if isinstance(row, Bar) else row["ts"] for row in rows]
    result = await conn.execute(
        insert(datasets).values(
            symbol=symbol,
            kind=kind,
            source=source,
            created_at=time.time(),
            rows=len(rows),
            start_ts=min(stamps, default=None),
            end_ts=max(stamps, default=None),
            sha256=sha256,
            owner=owner,
        )
    )
    return int(result.inserted_primary_key[0])


def _bar_row(dataset_id: int, bar: Bar) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "ts": bar.ts,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
    }


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), INSERT_CHUNK):
        yield rows[start : start + INSERT_CHUNK]


def _stored(row: Any) -> StoredStrategy:
    return StoredStrategy(
        row["name"], row["version"], row["document"], row["created_at"], row["created_by"], row["owner"]
    )


def _migrate(conn: Connection) -> list[int]:
    """Apply the migrations this database lacks, in order; returns their numbers."""
    if not inspect(conn).has_table(schema_migrations.name):
        schema_migrations.create(conn)
    done = {row[0] for row in conn.execute(select(schema_migrations.c.version))}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        migration.apply(conn)
        conn.execute(
            insert(schema_migrations).values(
                version=migration.version, description=migration.description, applied_at=time.time()
            )
        )
        applied.append(migration.version)
    return applied


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # writers queue up front: read-then-insert is atomic


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; transactions via _sqlite_begin
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # committed means on disk, even after a power loss
    cursor.close()


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    return (head.split("//")[0] + "//***@" + tail) if sep else url
