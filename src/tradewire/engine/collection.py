"""Data collection: record live price updates of symbols into datasets that backtests can replay.

``collection_start {symbols, duration}`` creates one trade-tick dataset per symbol (``kind:
trades``: ``ts, price, volume, bid, ask`` — the book columns hold the top of book known when the
price arrived) and records every price update of those symbols from the engine's live feeds
until ``duration`` ("30s", "5m", "1h", "2d", or "continuous") has passed or it is stopped.

Writes and memory::

    feed tick ──on_tick (sync, O(1))──► buffer (bounded: ``buffer_rows``) ──writer task──► database
                                          │ full: the update is dropped                 one transaction
                                          └─ and counted (``dropped``)                  per batch

* The writer commits batches of at most :data:`BATCH_ROWS` rows, one transaction each (rows,
  the datasets' counts and time range, the collection's counters), whenever rows wait and
  ``flush_interval`` has passed, or at once when a batch is full.
* **Back-pressure policy: bounded buffer, newest dropped.** While the database is slow or failing
  the buffer grows to ``buffer_rows`` and no further; updates arriving meanwhile are dropped and
  counted (``dropped`` in ``collection_status``, the collection record and the engine metric
  ``tradewire_engine_collection_dropped_rows``). Feeds are never blocked (a publisher must not
  wait for a database) and memory stays bounded (~220 bytes a row: 100,000 rows ≈ 21 MiB). A
  failed write keeps its rows at the head of the buffer and is retried with backoff; dropping
  newest keeps every dataset a gap-free prefix up to the first drop.
* **Nothing is lost on stop or shutdown**: stopping (``collection_stop``, the duration, a server
  shutdown) stops accepting, then the writer commits everything still buffered before the
  collection ends; a crash loses only rows not yet committed (at most ``flush_interval`` of
  data), and the datasets keep every committed row.
* **Usable at once:** every batch invalidates the datasets' columnar copies in its transaction
  (a backtest of a running collection reads the rows so far); the end builds them, so the first
  backtest of a finished collection reads one blob.

Ownership: a collection and its datasets belong to whoever started it; only they or an admin
stop it; other users' collections look absent (``CollectionNotFound``). Datasets are shared
market data: everyone may list and backtest them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog

from tradewire.controller import Caller
from tradewire.engine.storage.collections import CollectionStorage
from tradewire.engine.symbols import SymbolRegistry, SymbolSource
from tradewire.engine.ticks import Tick
from tradewire.errors import CollectionLimitExceeded, CollectionNotFound, InvalidRequest

_log = structlog.get_logger("tradewire.collection")
BATCH_ROWS = 5_000  # rows per transaction
STOP_WAIT = 10.0  # s collection_stop waits for the buffer to be committed before replying
RETRY_MAX = 2.0  # s between attempts of a failing write, at most
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Row = tuple[int, float, float, float, float | None, float | None]  # dataset id, ts, price, volume, bid, ask


def parse_duration(text: str) -> float | None:
    """Seconds of ``"30s"``, ``"5m"``, ``"1h"``, ``"2d"``; None for ``"continuous"``."""
    if text == "continuous":
        return None
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise InvalidRequest("duration", f"duration {text[:16]!r}: use e.g. 30s, 5m, 1h, 2d or continuous")
    return float(int(match.group(1)) * _UNIT[match.group(2)])


class CollectionStatus(StrEnum):
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"  # the duration passed
    STOPPED = "stopped"  # collection_stop
    INTERRUPTED = "interrupted"  # the server stopped (or died) while it ran
    FAILED = "failed"  # the database refused the data for good (``error`` says so)


@dataclass(slots=True)
class CollectionRecord:
    id: str
    owner: str
    symbols: list[str]
    duration: str
    datasets: dict[str, int]  # symbol → dataset id
    created_at: float
    ends_at: float | None
    status: CollectionStatus = CollectionStatus.RUNNING
    ended_at: float | None = None
    written: int = 0  # rows committed
    dropped: int = 0  # updates refused by a full buffer
    error: dict[str, Any] | None = None
    received: int = 0  # updates accepted into the buffer (this process)
    per_symbol: dict[str, int] = field(default_factory=dict)  # updates accepted, by symbol

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "symbols": self.symbols,
            "duration": self.duration,
            "status": self.status.value,
            "datasets": self.datasets,
            "created_at": self.created_at,
            "ends_at": self.ends_at,
            "ended_at": self.ended_at,
            "written": self.written,
            "dropped": self.dropped,
            "error": self.error,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CollectionRecord:
        values = dict(row)
        values["status"] = CollectionStatus(values["status"])
        values["datasets"] = {k: int(v) for k, v in values["datasets"].items()}
        return cls(**values)

    def describe(self, now: float, pending: int = 0) -> dict[str, Any]:
        """The wire form: ``count`` = updates recorded (committed + waiting), ``rate`` per second."""
        end = self.ended_at if self.ended_at is not None else now
        elapsed = max(end - self.created_at, 1e-9)
        count = self.written + pending
        out = self.to_row()
        out["collection_id"] = out.pop("id")
        out.update(
            started_at=self.created_at,
            count=count,
            pending=pending,
            rate=round(count / elapsed, 3),
            per_symbol=dict(self.per_symbol),
        )
        return out


class Collector:
    """One running collection: its bounded buffer and its writer task."""

    def __init__(
        self,
        record: CollectionRecord,
        storage: CollectionStorage,
        *,
        buffer_rows: int,
        flush_interval: float,
    ) -> None:
        self.record = record
        self._storage = storage
        self._limit = buffer_rows
        self._interval = flush_interval
        self._buffer: deque[Row] = deque()
        self._wake = asyncio.Event()
        self.accepting = True
        self.write_errors = 0
        self.end_status = CollectionStatus.STOPPED
        self.task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, tick: Tick) -> None:
        """Buffer one price update (or drop and count it when the buffer is full)."""
        if not self.accepting:
            return
        record = self.record
        if len(self._buffer) >= self._limit:
            record.dropped += 1
            return
        self._buffer.append(
            (record.datasets[tick.symbol], tick.ts, tick.price, tick.volume, tick.bid, tick.ask)
        )
        record.received += 1
        record.per_symbol[tick.symbol] = record.per_symbol.get(tick.symbol, 0) + 1
        if len(self._buffer) >= BATCH_ROWS:
            self._wake.set()

    def stop(self, status: CollectionStatus) -> None:
        """Stop accepting; the writer commits what is buffered, then the collection ends."""
        if self.accepting:
            self.accepting = False
            self.end_status = status
            self.record.status = CollectionStatus.STOPPING
        self._wake.set()

    async def run(self) -> None:
        """Write batches until stopped and drained."""
        retry = 0.05
        while self.accepting or self._buffer:
            if self.accepting and len(self._buffer) < BATCH_ROWS:
                with contextlib.suppress(TimeoutError):  # the usual case: the interval passed
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
            if not self._buffer:
                continue
            if await self._write_batch():
                retry = 0.05
            else:
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)

    async def _write_batch(self) -> bool:
        """Commit up to :data:`BATCH_ROWS` rows; on failure they stay at the head of the buffer."""
        count = min(len(self._buffer), BATCH_ROWS)
        batch = [self._buffer[i] for i in range(count)]
        record = self.record
        try:
            await self._storage.append(record.id, batch, record.written + count, record.dropped)
        except Exception as exc:  # noqa: BLE001 - any database failure: keep the rows, retry, count
            self.write_errors += 1
            _log.warning(
                "collection.write_failed",
                collection_id=record.id,
                rows=count,
                buffered=len(self._buffer),
                error=type(exc).__name__,
            )
            return False
        for _ in range(count):
            self._buffer.popleft()
        record.written += count
        return True


class CollectionManager:
    """Every user's collections (see the module docstring)."""

    def __init__(
        self,
        storage: CollectionStorage,
        symbols: SymbolRegistry,
        *,
        max_per_user: int,
        buffer_rows: int,
        flush_interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._symbols = symbols
        self._max_per_user = max_per_user
        self._buffer_rows = buffer_rows
        self._flush_interval = flush_interval
        self._clock = clock
        self._active: dict[str, Collector] = {}
        self._by_symbol: dict[str, list[Collector]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._lock = asyncio.Lock()
        self.write_errors = 0  # of finished collections (running ones add theirs in health())
        self.dropped = 0
        self.interrupted_at_start = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Collections a previous process left running become ``interrupted`` (their committed
        rows stay; columnar copies are built on first use)."""
        self.interrupted_at_start = await self._storage.interrupt_unfinished(self._clock())
        if self.interrupted_at_start:
            _log.warning("collections.interrupted_by_restart", count=self.interrupted_at_start)

    async def stop(self, timeout: float = STOP_WAIT) -> None:
        """End every collection (``interrupted``) after committing what each buffered."""
        for collector in list(self._active.values()):
            collector.stop(CollectionStatus.INTERRUPTED)
        tasks = [c.task for c in self._active.values() if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:  # the database never came back: say what is lost
                _log.error("collection.shutdown_unflushed", task=task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def on_tick(self, tick: Tick) -> None:
        """A live price update (the engine's market-data path: one dict lookup when idle)."""
        collectors = self._by_symbol.get(tick.symbol)
        if collectors:
            for collector in collectors:
                collector.add(tick)

    def health(self) -> dict[str, Any]:
        active = list(self._active.values())
        return {
            "running_collections": len(active),
            "collection_buffered_rows": sum(c.pending for c in active),
            "collection_dropped_rows": self.dropped + sum(c.record.dropped for c in active),
            "collection_write_errors": self.write_errors + sum(c.write_errors for c in active),
        }

    # ------------------------------------------------------------------ messages
    async def start_collection(self, caller: Caller, symbols: list[str], duration: str) -> dict[str, Any]:
        seconds = parse_duration(duration)
        wanted = list(dict.fromkeys(symbols))
        self._symbols.require(wanted, live=True, path="symbols")
        async with self._lock:
            if (
                sum(1 for c in self._active.values() if c.record.owner == caller.user_id)
                >= self._max_per_user
            ):
                raise CollectionLimitExceeded(self._max_per_user)
            collection_id = "col_" + secrets.token_urlsafe(9)
            now = self._clock()
            record = CollectionRecord(
                id=collection_id,
                owner=caller.user_id,
                symbols=wanted,
                duration=duration,
                datasets={},
                created_at=now,
                ends_at=now + seconds if seconds is not None else None,
            )
            record.datasets = await self._storage.create(record.to_row(), f"collection:{collection_id}")
            self._launch(record, seconds)
        self._symbols.add(SymbolSource.DATASET, wanted)
        _log.info("collection.started", collection_id=collection_id, owner=caller.user_id, symbols=wanted)
        return record.describe(now)

    def _launch(self, record: CollectionRecord, seconds: float | None) -> None:
        collector = Collector(
            record, self._storage, buffer_rows=self._buffer_rows, flush_interval=self._flush_interval
        )
        self._active[record.id] = collector
        for symbol in record.symbols:
            self._by_symbol.setdefault(symbol, []).append(collector)
        loop = asyncio.get_running_loop()
        collector.task = loop.create_task(self._run(collector), name=f"collection:{record.id}")
        if seconds is not None:
            self._timers[record.id] = loop.call_later(seconds, collector.stop, CollectionStatus.COMPLETED)

    async def _run(self, collector: Collector) -> None:
        record = collector.record
        try:
            await collector.run()
            await self._storage.finish(record.datasets.values())
            record.status = collector.end_status
        except Exception as exc:  # noqa: BLE001 - boundary: any failure ends the collection as failed
            correlation_id = secrets.token_hex(8)
            _log.error(
                "collection.failed", collection_id=record.id, correlation_id=correlation_id, exc_info=exc
            )
            record.status = CollectionStatus.FAILED
            record.error = {
                "message": "the collection failed on an internal error",
                "correlation_id": correlation_id,
            }
        finally:
            self._detach(collector)
        record.ended_at = self._clock()
        try:
            await self._storage.update(record.id, record.to_row())
        except Exception as exc:  # noqa: BLE001 - the store may be what failed: log with context
            _log.error("collection.status_not_stored", collection_id=record.id, exc_info=exc)
        _log.info(
            "collection.ended", collection_id=record.id, status=record.status.value, rows=record.written
        )

    def _detach(self, collector: Collector) -> None:
        record = collector.record
        self._active.pop(record.id, None)
        timer = self._timers.pop(record.id, None)
        if timer is not None:
            timer.cancel()
        for symbol in record.symbols:
            collectors = self._by_symbol.get(symbol, [])
            if collector in collectors:
                collectors.remove(collector)
            if not collectors:
                self._by_symbol.pop(symbol, None)
        self.dropped += record.dropped
        self.write_errors += collector.write_errors

    async def stop_collection(self, caller: Caller, collection_id: str) -> dict[str, Any]:
        """Stop (owner or admin), wait until the buffer is committed (bounded), describe it."""
        record = await self._visible(caller, collection_id)
        collector = self._active.get(collection_id)
        if collector is not None:
            collector.stop(CollectionStatus.STOPPED)
            if collector.task is not None:
                await asyncio.wait([collector.task], timeout=STOP_WAIT)
        return self._describe(record)

    async def collection(self, caller: Caller, collection_id: str) -> dict[str, Any]:
        return self._describe(await self._visible(caller, collection_id))

    async def collections(self, caller: Caller, limit: int = 100) -> list[dict[str, Any]]:
        """The caller's collections (everyone's for admins), newest first; running ones live."""
        rows = await self._storage.list(None if caller.admin else caller.user_id, limit)
        records = []
        for row in rows:
            active = self._active.get(row["id"])
            records.append(active.record if active is not None else CollectionRecord.from_row(row))
        return [self._describe(record) for record in records]

    def _describe(self, record: CollectionRecord) -> dict[str, Any]:
        collector = self._active.get(record.id)
        return record.describe(self._clock(), collector.pending if collector is not None else 0)

    async def _visible(self, caller: Caller, collection_id: str) -> CollectionRecord:
        collector = self._active.get(collection_id)
        record = collector.record if collector is not None else None
        if record is None:
            row = await self._storage.get(collection_id)
            record = CollectionRecord.from_row(row) if row is not None else None
        if record is None or not (caller.admin or record.owner == caller.user_id):
            raise CollectionNotFound(collection_id)
        return record
