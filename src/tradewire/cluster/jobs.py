"""Jobs on any node: sessions started through any node run on whichever node takes them.

Dispatch is a Redis stream with one consumer group (``<prefix>jobs``, group ``workers``, one
consumer per node): the asking node checks the cluster-wide limits and conflicts against the
shared database, appends the request, and waits for the reply on its own channel; the first free
node reads it (``XREADGROUP``), starts the session with its local
:class:`~tradewire.engine.sessions.controller.ExecutionController` (which validates everything and
stores the record, exactly as in one process), replies with the record or the error, and
acknowledges it. A request older than its deadline is acknowledged without running (the asker has
given up), and entries a dead node read but never acknowledged are reclaimed and dropped. Why not
a job library (arq, saq, rq): sessions are long-lived tasks inside the node's event loop, sharing
its engine, bus and database; they are not functions to serialise, retry or time out.

While a session runs, its node holds a lease ``<prefix>job:<id>`` (node id and the live progress,
renewed every ``ttl/3``). ``session_stop`` from another node is a request to the lease's holder;
``session_status`` anywhere reads the database and overlays the live progress from the lease.
A node that dies marks nothing itself: every node's reaper marks ``interrupted`` the sessions the
database says are active whose lease has expired (after a grace period for starts in flight),
and publishes ``execution.interrupted`` for their owners.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import select, update

from tradewire import errors
from tradewire.bus import topics
from tradewire.cluster.link import ClusterLink, RemoteError
from tradewire.controller import Caller
from tradewire.engine.sessions.controller import ExecutionController
from tradewire.engine.sessions.records import SessionRecord, SessionStatus
from tradewire.engine.storage.database import Database
from tradewire.engine.storage.schema import sessions as sessions_table
from tradewire.errors import ClusterUnavailable, EngineError, SessionConflict, SessionLimitExceeded
from tradewire.metrics import ServerMetrics

_log = structlog.get_logger("tradewire.cluster.jobs")
GROUP = "workers"
START_TIMEOUT = 15.0  # s the asking node waits for a node to start the session
STOP_TIMEOUT = 10.0
RECLAIM_IDLE_MS = 60_000  # entries read by a node that never acknowledged them (it died)
_ACTIVE = ("starting", "running", "stopping")


class ClusterSessions:
    """The :class:`~tradewire.controller.SessionService` of a cluster node (module docstring)."""

    def __init__(
        self,
        inner: ExecutionController,
        database: Database,
        publish: Any,
        *,
        ttl: float,
        max_per_user: int,
        max_total: int,
        prepare: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._inner = inner
        self._db = database
        self._publish = publish
        self._ttl = ttl
        self._max_per_user = max_per_user
        self._max_total = max_total
        self._prepare = prepare  # makes this node's strategy versions current before a start
        self._local: dict[str, Caller] = {}  # sessions running on this node → their owner
        self._lock = asyncio.Lock()  # this node's starts: check + dispatch never interleave
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, link: ClusterLink, metrics: ServerMetrics) -> None:
        """Connect to the cluster (at start: the link belongs to the gateway's event bus)."""
        self._link = link
        self._redis = link.redis
        self._node = link.node_id
        self._prefix = link.prefix
        self._metrics = metrics
        self._stream = f"{link.prefix}jobs"
        link.serve("session_stop", self._serve_stop)

    def _lease_key(self, session_id: str) -> str:
        return f"{self._prefix}job:{session_id}"

    async def start(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except (RedisError, OSError) as exc:  # created by the worker loop once Redis is back
            _log.warning("cluster.jobs_group_unavailable", error=type(exc).__name__)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work_loop()),
            loop.create_task(self._lease_loop()),
            loop.create_task(self._reap_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # ------------------------------------------------------------------ SessionService
    async def start_session(
        self,
        caller: Caller,
        session_type: str,
        strategy_config: dict[str, list[str]],
        config: dict[str, Any],
        client_key: str | None,
    ) -> dict[str, Any]:
        """Check cluster-wide limits and conflicts, then let any node start it (see module)."""
        async with self._lock:
            await self._check(caller.user_id, session_type, strategy_config)
            request = {
                "from": self._node,
                "deadline": time.time() + START_TIMEOUT,
                "caller": [caller.user_id, caller.admin],
                "session_type": session_type,
                "strategy_config": strategy_config,
                "config": config,
                "client_key": client_key,
            }
            request_id = secrets.token_hex(8)
            request["id"] = request_id
            future = self._link.expect(request_id)
            try:
                await self._redis.xadd(self._stream, {"request": orjson.dumps(request)})
                reply = await asyncio.wait_for(future, START_TIMEOUT)
            except (RedisError, OSError) as exc:
                raise ClusterUnavailable("the job queue is unreachable") from exc
            except TimeoutError:
                raise ClusterUnavailable("no node started the session in time") from None
            finally:
                self._link.forget(request_id)
        return _unpack(reply)

    async def stop_session(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """Stop it where it runs: here, or through a request to the lease holder."""
        if session_id in self._local:
            return await self._inner.stop_session(caller, session_id)
        record = await self._inner.session(caller, session_id)  # SessionNotFound for strangers
        holder = await self._holder(session_id)
        if holder is None or not SessionStatus(record["status"]).active:
            return record
        try:
            reply = await self._link.request(
                holder,
                "session_stop",
                {"caller": [caller.user_id, caller.admin], "session_id": session_id},
                STOP_TIMEOUT,
            )
        except RemoteError as exc:
            raise ClusterUnavailable(f"the node running the session did not answer ({exc.reason})") from exc
        return _unpack(reply)

    async def session(self, caller: Caller, session_id: str) -> dict[str, Any]:
        record = await self._inner.session(caller, session_id)
        return (await self._overlay([record]))[0]

    async def sessions(self, caller: Caller, limit: int = 100) -> list[dict[str, Any]]:
        return await self._overlay(await self._inner.sessions(caller, limit))

    async def results(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._inner.results(caller, session_id)

    async def equity(self, caller: Caller, session_id: str) -> tuple[list[float], list[float]]:
        return await self._inner.equity(caller, session_id)

    async def datasets(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return await self._inner.datasets(symbol)

    def health(self) -> dict[str, Any]:
        return {"node_sessions": len(self._local)}

    # ------------------------------------------------------------------ asking side
    async def _check(self, owner: str, session_type: str, strategy_config: dict[str, list[str]]) -> None:
        """The limits and conflicts of :class:`ExecutionController`, over every node's sessions."""
        query = select(
            sessions_table.c.id,
            sessions_table.c.owner,
            sessions_table.c.session_type,
            sessions_table.c.strategy_config,
        ).where(sessions_table.c.status.in_(_ACTIVE))
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        wanted = {(name, symbol) for name, symbols in strategy_config.items() for symbol in symbols}
        mine = [row for row in rows if row["owner"] == owner]
        for row in mine:
            if row["session_type"] != session_type:
                continue
            pairs = {(n, s) for n, symbols in (row["strategy_config"] or {}).items() for s in symbols}
            clash = sorted(wanted & pairs)
            if clash:
                raise SessionConflict(row["id"], *clash[0])
        if len(mine) >= self._max_per_user:
            raise SessionLimitExceeded("per user", self._max_per_user)
        if len(rows) >= self._max_total:
            raise SessionLimitExceeded("in total", self._max_total)

    async def _holder(self, session_id: str) -> str | None:
        try:
            raw = await self._redis.hget(self._lease_key(session_id), "node")
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable("the cluster is unreachable") from exc
        return _text(raw) if raw is not None else None

    async def _overlay(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Running sessions of other nodes: the live progress from their lease."""
        remote = [
            r for r in records if r["session_id"] not in self._local and SessionStatus(r["status"]).active
        ]
        if not remote:
            return records
        try:
            pipe = self._redis.pipeline(transaction=False)
            for record in remote:
                pipe.hget(self._lease_key(record["session_id"]), "live")
            lives = await pipe.execute()
        except (RedisError, OSError):
            self._metrics.cluster["overlay_failed"] += 1
            return records
        for record, live in zip(remote, lives, strict=True):
            if live:
                record.update(orjson.loads(live))
        return records

    # ------------------------------------------------------------------ working side
    async def _work_loop(self) -> None:
        while True:
            try:
                await self._take()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._metrics.cluster["jobs_unreachable"] += 1
                _log.info("cluster.jobs_unreachable", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _take(self) -> None:
        try:
            batch = await self._redis.xreadgroup(GROUP, self._node, {self._stream: ">"}, count=1, block=1000)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
            return
        streams: list[Any] = list(batch or ())
        for _, entries in streams:
            for entry_id, fields in entries:
                await self._run_request(bytes(fields.get(b"request", b"{}")))
                await self._redis.xack(self._stream, GROUP, entry_id)

    async def _run_request(self, raw: bytes) -> None:
        request = orjson.loads(raw)
        if float(request.get("deadline", 0)) < time.time():
            self._metrics.cluster["jobs_expired"] += 1
            return
        user_id, admin = request["caller"]
        caller = Caller(str(user_id), bool(admin))
        try:
            if self._prepare is not None:
                await self._prepare(list(request["strategy_config"]))
            record = await self._inner.start_session(
                caller,
                request["session_type"],
                request["strategy_config"],
                request["config"],
                request.get("client_key"),
            )
        except EngineError as exc:
            body: dict[str, Any] = {"error": _pack_error(exc)}
        else:
            body = {"record": record}
            if not record.get("existing") and SessionStatus(record["status"]).active:
                self._local[record["session_id"]] = caller
                await self._renew(record["session_id"], record)
        self._metrics.cluster["jobs_taken"] += 1
        self._link.reply(str(request["from"]), str(request.get("id")), body)

    async def _serve_stop(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id, admin = body["caller"]
        try:
            return {
                "record": await self._inner.stop_session(
                    Caller(str(user_id), bool(admin)), body["session_id"]
                )
            }
        except EngineError as exc:
            return {"error": _pack_error(exc)}

    async def _renew(self, session_id: str, record: dict[str, Any]) -> None:
        # progress only: the status is stored in the shared database on every change, and a lease
        # renewed a moment before a change would overlay a stale one (a running session shown
        # `starting` on other nodes)
        live = {k: record[k] for k in ("progress", "processed") if k in record}
        key = self._lease_key(session_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping={"node": self._node, "live": orjson.dumps(live)})
        pipe.pexpire(key, int(self._ttl * 1000))
        await pipe.execute()

    async def _lease_loop(self) -> None:
        """Renew the leases of this node's running sessions; drop those that ended."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            for session_id, caller in list(self._local.items()):
                try:
                    record = await self._inner.session(Caller(caller.user_id, True), session_id)
                    if SessionStatus(record["status"]).active:
                        await self._renew(session_id, record)
                        continue
                    self._local.pop(session_id, None)
                    await self._redis.delete(self._lease_key(session_id))
                except (RedisError, OSError) as exc:
                    _log.info("cluster.lease_renew_failed", session_id=session_id, error=type(exc).__name__)
                except EngineError:
                    self._local.pop(session_id, None)

    async def _reap_loop(self) -> None:
        """Mark ``interrupted`` the active sessions whose lease expired (their node died)."""
        while True:
            await asyncio.sleep(self._ttl)
            try:
                await self._reap()
                await self._drop_orphans()
            except (RedisError, OSError) as exc:
                _log.info("cluster.reap_skipped", error=type(exc).__name__)

    async def _reap(self) -> None:
        grace = time.time() - 2 * self._ttl  # a start in flight has no lease yet
        query = select(sessions_table).where(
            sessions_table.c.status.in_(_ACTIVE) & (sessions_table.c.created_at < grace)
        )
        async with self._db.engine.connect() as conn:
            rows = [dict(row) for row in (await conn.execute(query)).mappings().all()]
        rows = [row for row in rows if row["id"] not in self._local]
        if not rows:
            return
        pipe = self._redis.pipeline(transaction=False)
        for row in rows:
            pipe.exists(self._lease_key(row["id"]))
        alive = await pipe.execute()
        for row, exists in zip(rows, alive, strict=True):
            if not exists:
                await self._interrupt(row)

    async def _interrupt(self, row: dict[str, Any]) -> None:
        now = time.time()
        statement = (
            update(sessions_table)
            .where((sessions_table.c.id == row["id"]) & sessions_table.c.status.in_(_ACTIVE))
            .values(status="interrupted", ended_at=now)
        )
        async with self._db.engine.begin() as conn:
            changed = (await conn.execute(statement)).rowcount
        if not changed:
            return  # another node's reaper was first
        self._metrics.cluster["jobs_reaped"] += 1
        record = SessionRecord.from_row(row | {"status": "interrupted", "ended_at": now})
        _log.warning("cluster.session_interrupted", session_id=record.id, detail="its node stopped renewing")
        payload = {
            "session_id": record.id,
            "owner": record.owner,
            "session_type": record.session_type,
            "status": "interrupted",
            "progress_pct": record.progress,
            "processed": record.processed,
            "reason": "node_lost",
        }
        self._publish(topics.EXECUTION_INTERRUPTED, payload)

    async def _drop_orphans(self) -> None:
        """Requests read by a node that died before acknowledging them: their asker gave up."""
        try:
            result = await self._redis.xautoclaim(
                self._stream, GROUP, self._node, RECLAIM_IDLE_MS, start_id="0-0", count=100
            )
        except ResponseError:
            return
        claimed = result[1] if len(result) > 1 else []
        ids = [entry[0] for entry in claimed if entry]
        if ids:
            await self._redis.xack(self._stream, GROUP, *ids)
            self._metrics.cluster["jobs_orphaned"] += len(ids)


def _pack_error(exc: EngineError) -> dict[str, Any]:
    return {"kind": type(exc).__name__, "message": exc.message, "details": exc.details}


def _unpack(reply: dict[str, Any]) -> dict[str, Any]:
    """The record of a reply, or its error raised again as the same engine error class."""
    error = reply.get("error")
    if isinstance(error, dict):
        kind = getattr(errors, str(error.get("kind")), None)
        exc = kind.__new__(kind) if isinstance(kind, type) and issubclass(kind, EngineError) else None
        if exc is None:
            exc = ClusterUnavailable.__new__(ClusterUnavailable)
        EngineError.__init__(exc, str(error.get("message", "")), error.get("details") or None)
        raise exc
    record = reply.get("record")
    if not isinstance(record, dict):
        raise ClusterUnavailable("the node gave no answer")
    return record


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
