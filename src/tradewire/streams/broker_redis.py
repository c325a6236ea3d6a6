"""The Redis broker: one stream of truth for every node of a cluster (centrifuge's
``broker_redis.go``). See :mod:`tradewire.streams.broker` for the contract and docs/CLUSTER.md for
the key layout, sizes and failure modes.

Publish: one Lua script per message (:data:`PUBLISH_SCRIPT`) increments the stream's offset,
creates the epoch if the stream has none (a Redis restarted without persistence lost it: a fresh
random epoch, so clients see ``recovered:false``), builds the envelope bytes once, appends them
to the stream's history (a Redis stream with the explicit id ``<offset>-0``, ``MAXLEN ~`` the
history size, a TTL of the history age), keeps the latest envelope per symbol where the stream has
latest values, and ``PUBLISH``\\ es it on the stream's channel. Publishes are queued (bounded:
overflow is dropped and counted) and written by one task, all that queued meanwhile in one
pipeline, so per-stream order is the publish order and a burst costs one round trip.

Delivery: a node ``SUBSCRIBE``\\ s only to the channels of streams its clients use and hands each
message to the streams layer in offset order. Its view of a stream (:meth:`position`) starts from
the stream's position in Redis (:data:`SYNC_SCRIPT`, which also fills gaps from history); a
message out of order — a gap after a lost connection, a new epoch — triggers a resync while later
messages wait, so nothing is delivered twice or out of order.

Redis unreachable: the node switches every stream to a node-local epoch (offsets continue from
where it was; clients see the epoch change) and keeps delivering its own publications to its own
clients from a local history (:class:`MemoryBroker`), counts what could not be shared, retries
with capped, jittered backoff, and on return resubscribes in one command, resyncs every stream
in one pipeline, and switches back to the cluster's epochs (announced through ``reset``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from tradewire.clock import Clock
from tradewire.metrics import ServerMetrics
from tradewire.protocol.messages import Stream
from tradewire.streams.broker import BrokerHandler, Interest
from tradewire.streams.broker_memory import HistoryLimits, MemoryBroker
from tradewire.streams.catalog import CATALOG
from tradewire.streams.envelope import frame_for
from tradewire.streams.history import Entry

_log = structlog.get_logger("tradewire.broker")

# KEYS: meta, history, latest. ARGV: channel, candidate epoch, history size, history ttl (ms),
# now (ms), stream name, timestamp, data (JSON), symbol for latest ('' = none), excluded client.
PUBLISH_SCRIPT = r"""
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 1)
  offset = 1
end
local env = '{"type":"data","stream":"' .. ARGV[6] .. '","data":' .. ARGV[8] .. ',"offset":' ..
  offset .. ',"epoch":"' .. epoch .. '","timestamp":"' .. ARGV[7] .. '"}'
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'e', env, 't', ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[9], env)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('PUBLISH', ARGV[1], ARGV[10] .. '\n' .. env)
return offset
"""

# KEYS: meta, history, latest. ARGV: Redis run id, candidate epoch, fill from offset (-1: no
# entries), the node's epoch, max entries. A Redis that restarted *with* its data (persistence,
# or a promoted replica: its run id differs) may have gone back in offsets: new epoch, no history.
SYNC_SCRIPT = r"""
local rid = redis.call('HGET', KEYS[1], 'run_id')
if rid ~= ARGV[1] then
  if rid then
    redis.call('DEL', KEYS[2], KEYS[3])
    redis.call('HSET', KEYS[1], 'offset', 0, 'epoch', ARGV[2])
  end
  redis.call('HSET', KEYS[1], 'run_id', ARGV[1])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
local entries = {}
local from = tonumber(ARGV[3])
if from >= 0 and epoch == ARGV[4] and offset > from then
  entries = redis.call('XRANGE', KEYS[2], (from + 1) .. '-0', '+', 'COUNT', ARGV[5])
end
return {offset, epoch, entries}
"""

# KEYS: meta, history. ARGV: after offset, max entries. Position and entries in one snapshot.
HISTORY_SCRIPT = r"""
local meta = redis.call('HMGET', KEYS[1], 'offset', 'epoch')
local offset = tonumber(meta[1] or '0')
local entries = {}
if offset > tonumber(ARGV[1]) then
  entries = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', ARGV[2])
end
return {offset, meta[2] or '', entries}
"""

COMMAND_TIMEOUT = 2.0  # s: a command slower than this counts as Redis being unreachable
CONNECT_TIMEOUT = 1.0
READY_TIMEOUT = 3.0  # s a subscribe waits for its stream to sync before going on without it
WAIT_TIMEOUT = 2.0  # s publish_wait / caught_up wait for this node's delivery
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
PENDING_MAX = 10_000  # messages kept per stream while it resyncs (then: resync again)
UNTRACK_AFTER = 30.0  # s without local subscribers before a channel is unsubscribed
MAINTENANCE_INTERVAL = 1.0  # s between liveness pings and channel housekeeping
RECENT_COUNTS = 256  # per stream: recipients of the last deliveries, for publish_wait
_OFF, _SYNCING, _LIVE = 0, 1, 2
_Queued = tuple[Stream, dict[str, Any], str | None, "asyncio.Future[int] | None"]


@dataclass(slots=True)
class _Waiter:
    offset: int
    epoch: str
    future: asyncio.Future[int]


@dataclass(slots=True)
class _StreamState:
    """This node's view of one stream."""

    stream: Stream
    channel: bytes
    keys: tuple[str, str, str]  # meta, history, latest
    size: int
    age: float
    offset: int = 0
    epoch: str = ""
    state: int = _OFF
    tracked: bool = False
    idle_since: float | None = None
    pending: list[tuple[int, str, bytes, dict[str, Any], str | None]] = field(default_factory=list)
    overflowed: bool = False
    live: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: list[_Waiter] = field(default_factory=list)
    recent: dict[int, int] = field(default_factory=dict)  # offset → local recipients, last few


class RedisBroker:
    """Offsets, history and fan-out through Redis (see the module docstring)."""

    local_reads = False

    def __init__(
        self,
        url: str,
        prefix: str,
        clock: Clock,
        metrics: ServerMetrics,
        history_limits: HistoryLimits | None = None,
        *,
        queue_size: int = 10_000,
    ) -> None:
        self._redis: aioredis.Redis = aioredis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._clock = clock
        self._metrics = metrics
        self._local = MemoryBroker(clock, history_limits)  # what serves while Redis is away
        self._queue_size = queue_size
        self._queue: deque[_Queued] = deque()
        self._wake = asyncio.Event()
        self._reconnect = asyncio.Event()
        self._streams: dict[Stream, _StreamState] = {}
        self._by_channel: dict[bytes, _StreamState] = {}
        for stream, spec in CATALOG.items():
            size, age = (history_limits or {}).get(stream, (spec.history_size, spec.history_seconds))
            base = f"{prefix}stream:{{{stream.value}}}"
            state = _StreamState(
                stream, base.encode(), (base + ":meta", base + ":history", base + ":latest"), size, age
            )
            self._streams[stream] = state
            self._by_channel[state.channel] = state
        self._publish_sha = self._sync_sha = self._history_sha = ""
        self._pubsub: PubSub | None = None
        self._run_id = ""
        self.degraded = True  # until the first connection succeeds
        self._degraded_since: float | None = None  # set while in an outage
        self._unshared = 0  # publications of this node delivered only locally, this outage
        self._handler: BrokerHandler | None = None
        self._interest: Interest = lambda stream: False
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def attach(self, handler: BrokerHandler, interest: Interest) -> None:
        self._handler = handler
        self._interest = interest
        self._local.attach(handler, interest)

    async def start(self) -> None:
        """Connect (once, bounded); if Redis is not there, start degraded and keep retrying."""
        try:
            await self._connect()
        except (RedisError, OSError) as exc:
            self._enter_degraded(exc, "start")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_loop()),
            loop.create_task(self._link_loop()),
            loop.create_task(self._maintenance_loop()),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._reader] if self._reader is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        self._reader = None
        await self._close_pubsub()
        await self._redis.aclose()

    # ------------------------------------------------------------------ publish
    def publish(self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None) -> int | None:
        """Queue for Redis (delivery comes back through it); while degraded, deliver locally."""
        if self.degraded:
            return self._publish_local(stream, data, exclude_client)
        if len(self._queue) >= self._queue_size:
            self._metrics.cluster["publish_dropped"] += 1
            return 0
        self._queue.append((stream, data, exclude_client, None))
        if len(self._queue) == 1:
            self._wake.set()
        return None

    async def publish_wait(
        self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None
    ) -> int:
        if self.degraded:
            return self._publish_local(stream, data, exclude_client)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((stream, data, exclude_client, future))
        self._wake.set()
        try:
            offset = await asyncio.wait_for(future, WAIT_TIMEOUT)
        except TimeoutError:
            return 0
        state = self._streams[stream]
        if offset <= 0 or state.state == _OFF:
            return max(0, -offset)  # -n: delivered locally only (Redis failed during the write)
        return await self._wait_delivered(state, offset, state.epoch)

    def _publish_local(self, stream: Stream, data: dict[str, Any], exclude_client: str | None) -> int:
        self._unshared += 1
        self._metrics.cluster["unshared"] += 1
        return self._local.publish(stream, data, exclude_client)

    async def _write_loop(self) -> None:
        """Write everything queued, one pipeline at a time (keeps per-stream order)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self.degraded:
                batch = list(self._queue)
                self._queue.clear()
                await self._write(batch)

    def _pipeline(self, batch: list[_Queued]) -> Any:
        """One EVALSHA of the publish script per message (data encoded here, once)."""
        candidate = secrets.token_hex(6)  # the epoch, if Redis lost the stream's (one per batch)
        now_ms = str(int(self._clock.time() * 1000))
        timestamp = self._clock.iso_now()
        pipe = self._redis.pipeline(transaction=False)
        for stream, data, exclude, _ in batch:
            state = self._streams[stream]
            symbol = data.get("symbol")
            latest = symbol if CATALOG[stream].latest_on_subscribe and isinstance(symbol, str) else ""
            pipe.evalsha(
                self._publish_sha,
                3,
                *state.keys,
                state.channel,
                candidate,
                state.size,
                int(state.age * 1000),
                now_ms,
                stream.value,
                timestamp,
                orjson.dumps(data),
                latest,
                exclude or "",
            )
        return pipe

    async def _write(self, batch: list[_Queued]) -> None:
        try:
            results = await self._pipeline(batch).execute(raise_on_error=False)
            if any(isinstance(result, NoScriptError) for result in results):
                await self._load_scripts()  # the script cache was flushed: load and write again
                results = await self._pipeline(batch).execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._enter_degraded(exc, "publish")
            for stream, data, exclude, future in batch:  # unknown whether Redis took them: local only
                count = self._publish_local(stream, data, exclude)
                if future is not None and not future.done():
                    future.set_result(-count)
            return
        self._metrics.cluster["published"] += len(batch)
        for (stream, _, _, future), result in zip(batch, results, strict=True):
            offset = 0
            if isinstance(result, Exception):
                self._metrics.cluster["publish_failed"] += 1
                _log.error("broker.publish_failed", stream=stream.value, error=str(result)[:200])
            else:
                offset = int(result)
            if future is not None and not future.done():
                future.set_result(offset)

    # ------------------------------------------------------------------ per-node view
    def position(self, stream: Stream) -> tuple[int, str]:
        if self.degraded:
            return self._local.position(stream)
        state = self._streams[stream]
        return state.offset, state.epoch

    async def ready(self, stream: Stream) -> None:
        state = self._streams[stream]
        state.tracked = True
        state.idle_since = None
        if self.degraded or state.state == _LIVE:
            return
        if state.state == _OFF:
            state.state = _SYNCING
            state.live.clear()
            asyncio.get_running_loop().create_task(self._track(state))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.live.wait(), READY_TIMEOUT)

    async def caught_up(self, stream: Stream, offset: int, epoch: str) -> None:
        state = self._streams[stream]
        if self.degraded or state.state != _LIVE or epoch != state.epoch or offset <= state.offset:
            return
        await self._wait_delivered(state, offset, epoch)

    async def _wait_delivered(self, state: _StreamState, offset: int, epoch: str) -> int:
        if epoch != state.epoch or offset <= state.offset:
            return state.recent.get(offset, 0) if epoch == state.epoch else 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        state.waiters.append(_Waiter(offset, epoch, future))
        try:
            return await asyncio.wait_for(future, WAIT_TIMEOUT)
        except TimeoutError:
            return 0

    async def history(self, stream: Stream, after: int) -> tuple[list[Entry] | None, int, str]:
        if self.degraded:
            return await self._local.history(stream, after)
        state = self._streams[stream]
        try:
            offset, epoch, raw = await self._redis.evalsha(
                self._history_sha, 2, state.keys[0], state.keys[1], after, state.size + 64
            )
        except (RedisError, OSError) as exc:
            self._enter_degraded(exc, "history")
            return None, *self._local.position(stream)
        epoch = _text(epoch)
        entries = self._entries(state, raw, epoch)
        if int(offset) > after and (not entries or entries[0].offset != after + 1):
            return None, int(offset), epoch
        return entries, int(offset), epoch

    async def latest(self, stream: Stream) -> dict[str, Entry]:
        if self.degraded:
            return self._local.latest_now(stream)
        state = self._streams[stream]
        try:
            raw = await self._redis.hgetall(state.keys[2])
        except (RedisError, OSError) as exc:
            self._enter_degraded(exc, "latest")
            return {}
        latest = {}
        for symbol, payload in raw.items():
            entry = self._entry(state, payload if isinstance(payload, bytes) else payload.encode(), 0.0)
            if entry is not None:
                latest[_text(symbol)] = entry
        return latest

    def history_now(self, stream: Stream, after: int) -> list[Entry] | None:
        return self._local.history_now(stream, after) if self.degraded else None

    def latest_now(self, stream: Stream) -> dict[str, Entry]:
        return self._local.latest_now(stream) if self.degraded else {}

    def stats(self, stream: Stream) -> dict[str, Any]:
        state = self._streams[stream]
        return {"tracked": state.state == _LIVE, "history_max": state.size}

    def health(self) -> dict[str, Any]:
        return {
            "ready": True,  # degraded still serves this node's clients
            "backend": "redis",
            "degraded": self.degraded,
            "degraded_seconds": round(time.monotonic() - self._degraded_since, 3)
            if self._degraded_since is not None
            else 0.0,
            "tracked_streams": sorted(s.stream.value for s in self._streams.values() if s.state == _LIVE),
            "publish_queue": len(self._queue),
        }

    # ------------------------------------------------------------------ delivery from Redis
    def _on_message(self, channel: bytes, payload: bytes) -> None:
        state = self._by_channel.get(channel)
        if state is None:
            return
        head, _, envelope = payload.partition(b"\n")
        try:
            doc = orjson.loads(envelope)
            offset, epoch, data = int(doc["offset"]), str(doc["epoch"]), doc["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self._metrics.cluster["bad_message"] += 1
            return
        exclude = head.decode() if head else None
        if state.state == _SYNCING:
            self._hold(state, (offset, epoch, envelope, data, exclude))
        elif state.state == _LIVE:
            if epoch == state.epoch and offset == state.offset + 1:
                self._deliver(state, offset, epoch, envelope, data, exclude)
            elif epoch == state.epoch and offset <= state.offset:
                self._metrics.cluster["duplicate"] += 1
            else:  # a gap or a new epoch: resync; this and later messages wait for it
                state.state = _SYNCING
                self._hold(state, (offset, epoch, envelope, data, exclude))
                asyncio.get_running_loop().create_task(self._sync(state))

    def _hold(self, state: _StreamState, item: tuple[int, str, bytes, dict[str, Any], str | None]) -> None:
        if len(state.pending) >= PENDING_MAX:
            state.pending.clear()
            state.overflowed = True
            self._metrics.cluster["pending_overflow"] += 1
        state.pending.append(item)

    def _deliver(
        self,
        state: _StreamState,
        offset: int,
        epoch: str,
        envelope: bytes,
        data: dict[str, Any],
        exclude: str | None,
    ) -> int:
        state.offset = offset
        entry = Entry(offset, 0.0, frame_for(state.stream, envelope, offset, data), data, epoch)
        handler = self._handler
        count = handler.deliver(state.stream, entry, exclude) if handler is not None else 0
        recent = state.recent
        recent[offset] = count
        if len(recent) > RECENT_COUNTS:
            del recent[next(iter(recent))]
        if state.waiters:
            self._resolve(state, offset, count)
        return count

    def _resolve(self, state: _StreamState, offset: int, count: int) -> None:
        keep = []
        for waiter in state.waiters:
            if waiter.future.done():
                continue
            if waiter.epoch != state.epoch or waiter.offset < offset:
                waiter.future.set_result(0)
            elif waiter.offset == offset:
                waiter.future.set_result(count)
            else:
                keep.append(waiter)
        state.waiters = keep

    async def _track(self, state: _StreamState) -> None:
        """Subscribe to the stream's channel, then take its position (in that order: nothing
        published after the position can be missed)."""
        try:
            pubsub = self._pubsub
            if pubsub is None:
                raise ConnectionError("no pub/sub connection")
            await pubsub.subscribe(state.channel)
            self._ensure_reader()
        except (RedisError, OSError) as exc:
            state.state = _OFF
            self._enter_degraded(exc, "subscribe")
            return
        await self._sync(state)

    async def _sync(self, state: _StreamState) -> None:
        """Take the stream's position from Redis (filling a gap from history when the epoch is
        the same), then deliver what waited, in order."""
        for _ in range(3):  # a gap found while draining what waited: sync again (bounded)
            state.overflowed = False
            try:
                await self._sync_once(state)
            except (RedisError, OSError) as exc:
                self._enter_degraded(exc, "sync")
                return
            if not self._drain(state) and not state.overflowed:
                break
        state.state = _LIVE
        state.live.set()

    async def _sync_once(self, state: _StreamState) -> None:
        fill_from = state.offset if state.epoch else -1
        offset, epoch, raw = await self._redis.evalsha(
            self._sync_sha,
            3,
            *state.keys,
            self._run_id,
            secrets.token_hex(6),
            fill_from,
            state.epoch,
            state.size + 64,
        )
        offset, epoch = int(offset), _text(epoch)
        entries = self._entries(state, raw, epoch)
        if epoch == state.epoch and entries and entries[0].offset == state.offset + 1:
            for entry in entries:
                if entry.offset <= offset:
                    self._deliver(state, entry.offset, epoch, entry.frame.payload, entry.data, None)
        if epoch != state.epoch or state.offset != offset:
            if state.epoch and epoch == state.epoch:
                self._metrics.cluster["gap_unfilled"] += 1
                _log.warning("broker.gap", stream=state.stream.value, lost=offset - state.offset)
            known = bool(state.epoch)
            state.offset, state.epoch = offset, epoch
            if known and self._handler is not None:
                self._handler.reset(state.stream, offset, epoch)
            self._resolve(state, offset, 0)

    def _drain(self, state: _StreamState) -> bool:
        """Deliver what waited during a sync; True if a gap remains (sync again)."""
        pending, state.pending = state.pending, []
        for index, (offset, epoch, envelope, data, exclude) in enumerate(pending):
            if epoch == state.epoch and offset <= state.offset:
                continue
            if epoch == state.epoch and offset == state.offset + 1:
                self._deliver(state, offset, epoch, envelope, data, exclude)
                continue
            state.pending = pending[index:] + state.pending
            return True
        return False

    def _entries(self, state: _StreamState, raw: list[Any], epoch: str) -> list[Entry]:
        """History entries (``[id, [field, value, ...]]``) younger than the stream's age bound."""
        horizon = (self._clock.time() - state.age) * 1000
        entries: list[Entry] = []
        for _, fields in raw:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            if float(values.get(b"t", 0)) < horizon:
                entries.clear()  # older than the age bound: as if trimmed (keep only what follows)
                continue
            entry = self._entry(state, bytes(values.get(b"e", b"")), 0.0)
            if entry is not None and entry.epoch == epoch:
                entries.append(entry)
        return entries

    def _entry(self, state: _StreamState, envelope: bytes, at: float) -> Entry | None:
        try:
            doc = orjson.loads(envelope)
            offset, epoch, data = int(doc["offset"]), str(doc["epoch"]), doc["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self._metrics.cluster["bad_message"] += 1
            return None
        return Entry(offset, at, frame_for(state.stream, envelope, offset, data), data, epoch)

    # ------------------------------------------------------------------ connection, outage
    async def _connect(self) -> None:
        """Ping, load the scripts, open pub/sub, subscribe every tracked channel in one command,
        and resync every tracked stream; then leave degraded mode."""
        await self._redis.ping()
        info = await self._redis.info("server")
        self._run_id = str(info.get("run_id", ""))
        await self._load_scripts()
        await self._close_pubsub()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        tracked = [s for s in self._streams.values() if s.tracked]
        if tracked:
            await self._pubsub.subscribe(*(s.channel for s in tracked))
        else:
            await self._pubsub.connect()  # type: ignore[no-untyped-call]
        was_degraded = self.degraded
        for state in tracked:
            state.state = _SYNCING
            state.pending.clear()
        self.degraded = False
        if tracked:
            self._ensure_reader()
        for state in tracked:
            await self._sync(state)  # back to the cluster's epoch (reset announces it)
        if was_degraded and self._degraded_since is not None:
            _log.warning(
                "broker.redis_recovered",
                outage_seconds=round(time.monotonic() - self._degraded_since, 3),
                unshared_publications=self._unshared,
                detail="publications made on this node during the outage reached only its own clients",
            )
        self._degraded_since = None
        self._unshared = 0

    async def _load_scripts(self) -> None:
        self._publish_sha = await self._redis.script_load(PUBLISH_SCRIPT)
        self._sync_sha = await self._redis.script_load(SYNC_SCRIPT)
        self._history_sha = await self._redis.script_load(HISTORY_SCRIPT)

    def _enter_degraded(self, exc: BaseException, where: str) -> None:
        if self._degraded_since is not None:
            return  # already in this outage
        self.degraded = True
        self._degraded_since = time.monotonic()
        self._metrics.cluster["outages"] += 1
        _log.error("broker.redis_unavailable", where=where, error=f"{type(exc).__name__}: {exc}"[:200])
        epoch = "local-" + secrets.token_hex(4)
        for state in self._streams.values():
            self._local.rebase(state.stream, state.offset, epoch)
            if state.state != _OFF:
                state.state = _OFF if not state.tracked else _SYNCING
            state.live.set()  # nobody waits for a sync that cannot happen now
            self._resolve(state, -1, 0)
            if self._handler is not None:
                self._handler.reset(state.stream, state.offset, epoch)
        self._reconnect.set()

    async def _link_loop(self) -> None:
        """Reconnect with capped exponential backoff and jitter (nodes do not storm Redis)."""
        delay = BACKOFF_MIN
        while True:
            await self._reconnect.wait()
            if not self.degraded:
                self._reconnect.clear()
                delay = BACKOFF_MIN
                continue
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter, not crypto
            try:
                await self._connect()
            except (RedisError, OSError) as exc:
                self.degraded = True
                delay = min(delay * 2, BACKOFF_MAX)
                _log.info("broker.reconnect_failed", error=type(exc).__name__, retry_in=round(delay, 2))
                continue
            self._reconnect.clear()
            self._wake.set()
            delay = BACKOFF_MIN

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            while not self.degraded:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    self._on_message(message["channel"], message["data"])
        except (RedisError, OSError) as exc:
            self._enter_degraded(exc, "pubsub")

    async def _maintenance_loop(self) -> None:
        """Ping (a silent Redis is noticed even without traffic) and unsubscribe channels no local
        client has used for :data:`UNTRACK_AFTER` seconds."""
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            if self.degraded:
                continue
            try:
                await self._redis.ping()
                await self._untrack_idle()
            except (RedisError, OSError) as exc:
                self._enter_degraded(exc, "ping")

    async def _untrack_idle(self) -> None:
        now = time.monotonic()
        idle = []
        for state in self._streams.values():
            if state.state != _LIVE or self._interest(state.stream):
                state.idle_since = None
                continue
            if state.idle_since is None:
                state.idle_since = now
            elif now - state.idle_since >= UNTRACK_AFTER:
                idle.append(state)
        if idle and self._pubsub is not None:
            for state in idle:
                state.state, state.tracked, state.idle_since = _OFF, False, None
            await self._pubsub.unsubscribe(*(s.channel for s in idle))

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):  # the connection is being replaced
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
