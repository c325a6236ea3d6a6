"""The execution controller: many sessions at once, each owned, limited, stored and reported.

``start_session`` validates everything before anything runs (strategy names, symbols, datasets,
the ``config`` schema), refuses a conflict (the same owner already runs the same strategy on the
same symbol in a session of the same type: a backtest and a paper session of one strategy are
not a conflict, two paper sessions would trade the same signals twice) and the limits (running
sessions per user and in total), stores the record, and starts the job as a task. A repeated
``client_key`` of the same owner returns the session it started the first time (idempotent
start). Users see and stop only their own sessions; admins see all. Other users' sessions look
absent (``session_not_found``), never "forbidden".

Events (bus → streams), every payload with ``session_id`` and ``owner`` (streams deliver
session events to their owner and admins only): ``execution.started``, ``execution.progress``
(≤ 10/s), ``execution.stopping``, and one terminal ``execution.completed|stopped|failed|
interrupted``, then ``session.result`` (summary metrics, or the error). With ``stream_events``
the session's signals, state changes, orders and positions go out too.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from tradewire.bus import topics
from tradewire.controller import Caller
from tradewire.engine.datasets import ensure_samples
from tradewire.engine.exchange_service import ExchangeService
from tradewire.engine.sessions.config import SessionConfig, parse_config
from tradewire.engine.sessions.jobs import BacktestJob, Job, PaperJob
from tradewire.engine.sessions.live import LiveBroker, LiveJob, RiskLimits
from tradewire.engine.sessions.records import SessionRecord, SessionStatus, new_session_id
from tradewire.engine.sessions.results import headline, pack, unpack_equity
from tradewire.engine.sessions.simulation import BrokerFactory, Publish, Simulation
from tradewire.engine.storage.database import BarColumns, Database, SessionStorage
from tradewire.engine.strategy_document import StrategyDocument
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.symbols import SymbolRegistry, SymbolSource
from tradewire.engine.ticks import Tick
from tradewire.errors import (
    DatasetNotFound,
    InvalidSessionConfig,
    LiveTradingUnavailable,
    ResultsNotAvailable,
    SessionConflict,
    SessionFailed,
    SessionLimitExceeded,
    SessionNotFound,
    StrategyDisabled,
    UnknownSymbol,
)

_log = structlog.get_logger("tradewire.sessions")
STOP_WAIT = 5.0  # s session_stop waits for the job to wind down before replying
_TERMINAL_TOPIC = {
    SessionStatus.COMPLETED: topics.EXECUTION_COMPLETED,
    SessionStatus.STOPPED: topics.EXECUTION_STOPPED,
    SessionStatus.FAILED: topics.EXECUTION_FAILED,
    SessionStatus.INTERRUPTED: topics.EXECUTION_INTERRUPTED,
}
_BACKTEST_ONLY = ("dataset_id", "datasets", "acceleration_factor", "close_at_end")
_LIVE_ONLY = ("max_position_notional", "max_orders_per_minute")
StrategyPlan = dict[str, tuple[StrategyDocument, int, list[str]]]


class ExecutionController:
    """Sessions of every user (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        strategies: StrategyManager,
        publish: Publish,
        *,
        max_per_user: int,
        max_total: int,
        symbols: SymbolRegistry,
        exchange: ExchangeService | None = None,
        clock: Callable[[], float] = time.time,
        interrupt_at_start: bool = True,
    ) -> None:
        self._db = db
        self._storage = SessionStorage(db)
        self._strategies = strategies
        self._publish = publish
        self._max_per_user = max_per_user
        self._max_total = max_total
        self._symbols = symbols
        self._exchange = exchange  # live sessions trade through it (None: live is unavailable)
        self._clock = clock
        self._active: dict[str, SessionRecord] = {}  # starting, running or stopping
        self._jobs: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._paper: dict[str, list[PaperJob]] = {}  # symbol → paper and live jobs fed by the live feed
        self._lock = asyncio.Lock()  # checks and insert of a start never interleave
        self.interrupted_at_start = 0
        self._interrupt_at_start = interrupt_at_start  # False in a cluster: other nodes' jobs run

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Sessions a previous process left running become ``interrupted``; samples are listed."""
        if self._interrupt_at_start:
            self.interrupted_at_start = await self._storage.interrupt_unfinished(self._clock())
        if self.interrupted_at_start:
            _log.warning("sessions.interrupted_by_restart", count=self.interrupted_at_start)
        await ensure_samples(self._db)
        await self.refresh_dataset_symbols()

    async def refresh_dataset_symbols(self) -> None:
        """Datasets are known symbols (a CLI import into a running server's database is seen here,
        at the next backtest that names its symbol)."""
        self._symbols.add(SymbolSource.DATASET, {dataset.symbol for dataset in await self._db.datasets()})

    async def stop(self, timeout: float = 5.0) -> None:
        """Interrupt every running session (partial results are stored) and wait for them."""
        for job, _ in self._jobs.values():
            job.stop("server_shutdown")
        tasks = [task for _, task in self._jobs.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def on_tick(self, tick: Tick) -> None:
        """A live tick (synthetic or exchange feed): paper sessions on its symbol trade it."""
        jobs = self._paper.get(tick.symbol)
        if jobs:
            for job in list(jobs):
                job.on_tick(tick)

    def health(self) -> dict[str, Any]:
        return {"running_sessions": len(self._active), "interrupted_at_start": self.interrupted_at_start}

    # ------------------------------------------------------------------ start
    async def start_session(
        self,
        caller: Caller,
        session_type: str,
        strategy_config: dict[str, list[str]],
        config: dict[str, Any],
        client_key: str | None,
    ) -> dict[str, Any]:
        async with self._lock:
            if client_key is not None:
                existing = await self._by_client_key(caller.user_id, client_key)
                if existing is not None:
                    return existing.describe() | {"existing": True}
            if session_type == "live":
                self._check_exchange()
            settings = self._config(session_type, config)
            plan = self._plan(strategy_config)
            await self._check_symbols(session_type, plan)
            data = await self._datasets(plan, settings) if session_type == "backtest" else []
            self._check_conflicts(caller.user_id, session_type, plan)
            self._check_limits(caller.user_id)
            record = SessionRecord(
                id=new_session_id(),
                owner=caller.user_id,
                session_type=session_type,
                strategy_config={name: list(symbols) for name, (_, _, symbols) in plan.items()},
                config=msgspec.to_builtins(settings),
                created_at=self._clock(),
                client_key=client_key,
            )
            await self._storage.insert(record.to_row())
            self._active[record.id] = record
            self._launch(record, plan, settings, data)
        return record.describe() | {"existing": False}

    def _check_exchange(self) -> None:
        if self._exchange is None:
            raise LiveTradingUnavailable()
        if not self._exchange.connected:
            raise LiveTradingUnavailable(
                f"the exchange {self._exchange.name} is not connected; retry when it is",
                {"exchange": self._exchange.name, "connected": False},
            )

    def _config(self, session_type: str, raw: dict[str, Any]) -> SessionConfig:
        settings = parse_config(raw)
        if session_type != "live":
            wrong = [key for key in _LIVE_ONLY if key in raw]
            if wrong:
                raise InvalidSessionConfig(
                    [{"path": f"config.{key}", "message": "only for live sessions"} for key in wrong]
                )
        if session_type != "backtest":
            wrong = [key for key in _BACKTEST_ONLY if key in raw]
            if wrong:
                raise InvalidSessionConfig(
                    [{"path": f"config.{key}", "message": "only for backtests"} for key in wrong]
                )
        elif "max_duration_seconds" in raw:
            raise InvalidSessionConfig(
                [{"path": "config.max_duration_seconds", "message": "only for paper and live sessions"}]
            )
        return settings

    def _plan(self, strategy_config: dict[str, list[str]]) -> StrategyPlan:
        """Each strategy's current version and symbols; every problem reported at once."""
        if not strategy_config:
            raise InvalidSessionConfig([{"path": "strategy_config", "message": "name at least one strategy"}])
        errors: list[dict[str, str]] = []
        plan: StrategyPlan = {}
        for name, symbols in strategy_config.items():
            document, version = self._strategies.document(name)  # StrategyNotFound
            if not document.enabled:
                raise StrategyDisabled(name)
            if not symbols:
                errors.append({"path": f"strategy_config.{name}", "message": "name at least one symbol"})
            elif len(set(symbols)) != len(symbols):
                errors.append({"path": f"strategy_config.{name}", "message": "symbols repeat"})
            plan[name] = (document, version, list(symbols))
        if errors:
            raise InvalidSessionConfig(errors)
        return plan

    async def _datasets(self, plan: StrategyPlan, settings: SessionConfig) -> list[tuple[str, int]]:
        """The dataset of every traded symbol, in a stable order: ``[(symbol, dataset id)]``."""
        symbols = sorted({symbol for _, _, symbols in plan.values() for symbol in symbols})
        mapping = dict(settings.datasets or {})
        if settings.dataset_id is not None:
            dataset = await self._db.find_dataset(settings.dataset_id)
            if dataset is None:
                raise DatasetNotFound(settings.dataset_id)
            mapping.setdefault(dataset.symbol, dataset.id)
        if not mapping:
            raise InvalidSessionConfig(
                [{"path": "config.dataset_id", "message": "a backtest needs a dataset"}]
            )
        errors = [
            {
                "path": "strategy_config",
                "message": f"no dataset for symbol {symbol!r} (datasets: {sorted(mapping)})",
            }
            for symbol in symbols
            if symbol not in mapping
        ]
        if errors:
            raise InvalidSessionConfig(errors)
        for symbol in symbols:
            found = await self._db.find_dataset(mapping[symbol])
            if found is None:
                raise DatasetNotFound(mapping[symbol])
            if found.symbol != symbol:
                raise InvalidSessionConfig(
                    [
                        {
                            "path": f"config.datasets.{symbol}",
                            "message": f"dataset {found.id} holds {found.symbol}",
                        }
                    ]
                )
        return [(symbol, mapping[symbol]) for symbol in symbols]

    async def _check_symbols(self, session_type: str, plan: StrategyPlan) -> None:
        """Backtests need known symbols (datasets), paper and live sessions symbols a live feed
        publishes: :class:`~tradewire.errors.UnknownSymbol` with close matches otherwise."""
        live = session_type != "backtest"
        for name, (_, _, symbols) in plan.items():
            if not live and not self._symbols.known.issuperset(symbols):
                await self.refresh_dataset_symbols()
            path = f"strategy_config.{name}"
            self._symbols.require(symbols, live=live, path=path)
            if session_type == "live" and self._exchange is not None:
                feed = frozenset(self._exchange.feed)
                for symbol in symbols:  # live trades only what the exchange itself feeds
                    if symbol not in feed:
                        raise UnknownSymbol(symbol, self._symbols.matches(symbol, feed), live=True, path=path)

    def _check_conflicts(self, owner: str, session_type: str, plan: StrategyPlan) -> None:
        wanted = {(name, symbol) for name, (_, _, symbols) in plan.items() for symbol in symbols}
        for record in self._active.values():
            if record.owner != owner or record.session_type != session_type:
                continue
            clash = sorted(wanted & record.pairs())
            if clash:
                raise SessionConflict(record.id, *clash[0])

    def _check_limits(self, owner: str) -> None:
        if sum(1 for r in self._active.values() if r.owner == owner) >= self._max_per_user:
            raise SessionLimitExceeded("per user", self._max_per_user)
        if len(self._active) >= self._max_total:
            raise SessionLimitExceeded("in total", self._max_total)

    # ------------------------------------------------------------------ running
    def _launch(
        self, record: SessionRecord, plan: StrategyPlan, settings: SessionConfig, data: list[tuple[str, int]]
    ) -> None:
        publish = self._publish if settings.streams_events(record.session_type) else None
        sim = Simulation(
            record.id, record.owner, plan, settings, publish, self._live_broker(record, settings)
        )
        progress = self._progress_reporter(record)
        job: Job
        if record.session_type == "backtest":

            async def load() -> list[tuple[str, BarColumns]]:
                return [(symbol, await self._db.load_columns(dataset_id)) for symbol, dataset_id in data]

            job = BacktestJob(
                sim,
                load,
                progress,
                acceleration=settings.acceleration_factor,
                close_at_end=settings.close_at_end,
            )
        elif record.session_type == "live":
            job = LiveJob(sim, progress, max_duration=settings.max_duration_seconds)
        else:
            job = PaperJob(sim, progress, max_duration=settings.max_duration_seconds)
        task = asyncio.get_running_loop().create_task(self._run(record, job))
        self._jobs[record.id] = (job, task)

    def _live_broker(self, record: SessionRecord, settings: SessionConfig) -> BrokerFactory | None:
        exchange = self._exchange
        if record.session_type != "live" or exchange is None:
            return None
        risk = RiskLimits(settings.max_position_notional, settings.max_orders_per_minute)
        return lambda observer: LiveBroker(record.id, settings.initial_capital, exchange, risk, observer)

    async def _run(self, record: SessionRecord, job: Job) -> None:
        try:
            if isinstance(job, BacktestJob):
                await job.prepare()
            await self._set_status(record, SessionStatus.RUNNING, started_at=self._clock())
            self._event(topics.EXECUTION_STARTED, record)
            if isinstance(job, PaperJob):
                for symbol in job.symbols:
                    self._paper.setdefault(symbol, []).append(job)
            results = await job.run()
            await self._finish(record, job, results)
        except Exception as exc:  # noqa: BLE001 - boundary: any failure ends the session as failed
            await self._fail(record, exc)
        finally:
            self._detach(record.id, job)
            job.sim.release()

    async def _finish(self, record: SessionRecord, job: Job, results: dict[str, Any]) -> None:
        reason = job.end_reason
        status = (
            SessionStatus.STOPPED
            if reason == "stopped"
            else SessionStatus.INTERRUPTED
            if reason == "server_shutdown"
            else SessionStatus.COMPLETED
        )
        document, equity, sha256 = pack(results, job.sim.times, job.sim.equity)
        await self._storage.save_results(record.id, document, equity, sha256)
        record.summary = headline(results) | {
            "results_sha256": sha256,
            "by_strategy": results["by_strategy"],
            "by_symbol": results["by_symbol"],
        }
        record.processed = job.sim.bars
        if status is SessionStatus.COMPLETED:
            record.progress = 100.0
        await self._set_status(record, status, ended_at=self._clock())
        self._event(_TERMINAL_TOPIC[status], record)
        self._event(topics.SESSION_RESULT, record, {"summary": record.summary})

    async def _fail(self, record: SessionRecord, exc: Exception) -> None:
        correlation_id = secrets.token_hex(8)
        if isinstance(exc, SessionFailed):
            message = exc.message
            _log.warning(
                "session.failed", session_id=record.id, reason=message, correlation_id=correlation_id
            )
        else:
            message = "the session failed on an internal error"
            _log.error("session.failed", session_id=record.id, correlation_id=correlation_id, exc_info=exc)
        record.error = {"code": "session_failed", "message": message, "correlation_id": correlation_id}
        try:
            await self._set_status(record, SessionStatus.FAILED, ended_at=self._clock())
        except Exception as store_exc:  # noqa: BLE001 - the store may be what failed: report anyway
            _log.error("session.status_not_stored", session_id=record.id, exc_info=store_exc)
        self._event(topics.EXECUTION_FAILED, record)
        self._event(topics.SESSION_RESULT, record, {"error": record.error})

    def _detach(self, session_id: str, job: Job) -> None:
        self._active.pop(session_id, None)
        self._jobs.pop(session_id, None)
        if isinstance(job, PaperJob):
            for symbol in job.symbols:
                jobs = self._paper.get(symbol, [])
                if job in jobs:
                    jobs.remove(job)
                if not jobs:
                    self._paper.pop(symbol, None)

    async def _set_status(self, record: SessionRecord, status: SessionStatus, **fields: Any) -> None:
        record.status = status
        for key, value in fields.items():
            setattr(record, key, value)
        row = record.to_row()
        await self._storage.update(record.id, **{k: v for k, v in row.items() if k not in ("id", "owner")})

    def _progress_reporter(self, record: SessionRecord) -> Callable[[float, dict[str, Any]], None]:
        def report(percent: float, snapshot: dict[str, Any]) -> None:
            record.progress = round(percent, 3)
            record.processed = snapshot["processed"]
            record.live = snapshot
            self._event(topics.EXECUTION_PROGRESS, record, snapshot)

        return report

    def _event(self, topic: str, record: SessionRecord, extra: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {
            "session_id": record.id,
            "owner": record.owner,
            "session_type": record.session_type,
            "status": record.status.value,
            "progress_pct": record.progress,
            "processed": record.processed,
        }
        if record.error is not None:
            payload["error"] = record.error
        if extra:
            payload.update(extra)
        self._publish(topic, payload)

    # ------------------------------------------------------------------ stop and look
    async def stop_session(self, caller: Caller, session_id: str) -> dict[str, Any]:
        record = await self._visible(caller, session_id)
        running = self._jobs.get(session_id)
        if running is None or not record.status.active:
            return record.describe()
        job, task = running
        if record.status is not SessionStatus.STOPPING:
            await self._set_status(record, SessionStatus.STOPPING)
            self._event(topics.EXECUTION_STOPPING, record)
            job.stop("stopped")
        await asyncio.wait([task], timeout=STOP_WAIT)
        return record.describe()

    async def session(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return (await self._visible(caller, session_id)).describe()

    async def sessions(self, caller: Caller, limit: int = 100) -> list[dict[str, Any]]:
        """The caller's sessions (everyone's for admins), newest first; running ones live."""
        rows = await self._storage.list(None if caller.admin else caller.user_id, limit)
        records = [self._active.get(row["id"]) or SessionRecord.from_row(row) for row in rows]
        return [record.describe() for record in records]

    async def results(self, caller: Caller, session_id: str) -> dict[str, Any]:
        record = await self._visible(caller, session_id)
        stored = await self._storage.results(session_id)
        if stored is None:
            raise ResultsNotAvailable(session_id, record.status.value)
        document, _, sha256 = stored
        return {
            "session": record.describe(),
            "results": msgspec.json.decode(document),
            "results_sha256": sha256,
        }

    async def equity(self, caller: Caller, session_id: str) -> tuple[list[float], list[float]]:
        record = await self._visible(caller, session_id)
        stored = await self._storage.results(session_id)
        if stored is None:
            raise ResultsNotAvailable(session_id, record.status.value)
        return unpack_equity(stored[1])

    async def datasets(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [dataset.describe() for dataset in await self._db.datasets(symbol)]

    async def _visible(self, caller: Caller, session_id: str) -> SessionRecord:
        record = self._active.get(session_id)
        if record is None:
            row = await self._storage.get(session_id)
            record = SessionRecord.from_row(row) if row is not None else None
        if record is None or not (caller.admin or record.owner == caller.user_id):
            raise SessionNotFound(session_id)
        return record

    async def _by_client_key(self, owner: str, client_key: str) -> SessionRecord | None:
        for record in self._active.values():
            if record.owner == owner and record.client_key == client_key:
                return record
        row = await self._storage.by_client_key(owner, client_key)
        return SessionRecord.from_row(row) if row is not None else None
