"""Cluster-wide limits: connections per user, and (optionally) messages per user, on all nodes.

**Connections per user.** Each authenticated connection is a member ``<node>|<client id>`` of the
user's sorted set, scored by its expiry; the node that holds it renews the score every
``ttl/3``, so the members of a node that died drop out within ``ttl``. Binding runs one Lua script
(drop expired members, refuse if the user already has ``max`` live ones, else add): atomic, so two
nodes binding the user's last slot at once cannot both win. The check runs right after the local
bind (``auth`` stays a synchronous handler): a refused connection loses its authentication within
one Redis round trip and gets an unsolicited ``connection_limit_exceeded`` error, as if its
``auth`` had been refused. While Redis is unreachable the check fails open (counted).

**Messages per user** (``user_rate_limit_per_minute`` > 0). No Redis round trip per message: each
node counts a connection's inbound messages (``Connection.received``) and every second adds each
user's new messages to the key of the current minute (``INCRBY``); when the total passes the
limit, every connection of that user on that node is limited until the minute ends — by moving its
rate limiter's schedule forward, so the router's existing check rejects with
``rate_limit_exceeded`` and a truthful ``retry_after``, at no cost per message. Approximate: a
user may exceed the limit by what its connections send within one sync interval (on every node),
and fixed windows allow up to twice the limit across a minute boundary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from tradewire.core.connection import Connection
from tradewire.core.connection_manager import ConnectionManager
from tradewire.metrics import ServerMetrics

_log = structlog.get_logger("tradewire.cluster")

BIND = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
RATE_SYNC_INTERVAL = 1.0  # s between per-user message count syncs
WINDOW = 60  # s: the per-user message limit is per minute


class ClusterLimits:
    """Counts a user's connections and messages across nodes (see the module docstring)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        node_id: str,
        connections: ConnectionManager,
        metrics: ServerMetrics,
        *,
        ttl: float,
        user_rate_per_minute: float,
        refuse: Callable[[Connection], None],
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node = node_id
        self._connections = connections
        self._metrics = metrics
        self._ttl = ttl
        self._rate = user_rate_per_minute
        self._refuse = refuse
        self._bind: Any = redis.register_script(BIND)
        self._reported: dict[str, int] = {}  # client id → messages already counted
        self._limited: dict[str, float] = {}  # user → monotonic time the limit ends
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        connections.on_bound = self.bound
        connections.on_unbound = self.unbound

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._renew_loop())]
        if self._rate > 0:
            self._loops.append(loop.create_task(self._rate_loop()))

    async def stop(self) -> None:
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}user:{{{user_id}}}:connections"

    def _member(self, conn: Connection) -> str:
        return f"{self._node}|{conn.client_id}"

    # ------------------------------------------------------------------ connections
    def bound(self, conn: Connection, user_id: str) -> None:
        until = self._limited.get(user_id)
        if until is not None:
            self._limit(conn, until)
        self._spawn(self._check(conn, user_id))

    def unbound(self, conn: Connection, user_id: str) -> None:
        self._reported.pop(conn.client_id, None)
        self._spawn(self._forget(user_id, self._member(conn)))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, conn: Connection, user_id: str) -> None:
        now = time.time()
        try:
            allowed = await self._bind(
                keys=[self._key(user_id)],
                args=[
                    self._member(conn),
                    int(now * 1000),
                    int((now + self._ttl) * 1000),
                    self._connections.max_per_user,
                    int(self._ttl * 1000),
                ],
            )
        except (RedisError, OSError) as exc:
            self._metrics.cluster["limit_check_failed"] += 1
            _log.warning("cluster.limit_unchecked", user_id=user_id, error=type(exc).__name__)
            return  # fail open: the local limit still holds
        principal = conn.principal
        if not allowed and not conn.closed and principal is not None and principal.user_id == user_id:
            self._metrics.cluster["connection_limit_refused"] += 1
            self._refuse(conn)

    async def _forget(self, user_id: str, member: str) -> None:
        try:
            await self._redis.zrem(self._key(user_id), member)
        except (RedisError, OSError) as exc:  # the member expires by itself within ttl
            _log.info("cluster.limit_forget_failed", user_id=user_id, error=type(exc).__name__)

    async def _renew_loop(self) -> None:
        """Keep this node's members alive (and put them back after a Redis restart)."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            expiry = int((time.time() + self._ttl) * 1000)
            pipe = self._redis.pipeline(transaction=False)
            count = 0
            for conn in self._connections:
                principal = conn.principal
                if principal is not None:
                    key = self._key(principal.user_id)
                    pipe.zadd(key, {self._member(conn): expiry})
                    pipe.pexpire(key, int(self._ttl * 1000))
                    count += 1
            if not count:
                continue
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                _log.info("cluster.limit_renew_failed", error=type(exc).__name__)

    # ------------------------------------------------------------------ messages per user
    async def _rate_loop(self) -> None:
        while True:
            await asyncio.sleep(RATE_SYNC_INTERVAL)
            try:
                await self._sync_rates()
            except (RedisError, OSError) as exc:
                self._metrics.cluster["rate_sync_failed"] += 1
                _log.info("cluster.rate_sync_failed", error=type(exc).__name__)

    async def _sync_rates(self) -> None:
        deltas: dict[str, int] = {}
        for conn in self._connections:
            principal = conn.principal
            if principal is None:
                continue
            seen = self._reported.get(conn.client_id, 0)
            if conn.received > seen:
                deltas[principal.user_id] = deltas.get(principal.user_id, 0) + conn.received - seen
            self._reported[conn.client_id] = conn.received
        if not deltas:
            return
        now = time.time()
        window = int(now // WINDOW)
        pipe = self._redis.pipeline(transaction=False)
        for user_id, delta in deltas.items():
            key = f"{self._prefix}user:{{{user_id}}}:messages:{window}"
            pipe.incrby(key, delta)
            pipe.expire(key, WINDOW * 2)
        results = await pipe.execute()
        remaining = (window + 1) * WINDOW - now
        for user_id, total in zip(deltas, results[::2], strict=True):
            if int(total) > self._rate:
                self._limited[user_id] = time.monotonic() + remaining
                self._metrics.cluster["user_rate_limited"] += 1
                for conn in self._connections:
                    if conn.principal is not None and conn.principal.user_id == user_id:
                        self._limit(conn, self._limited[user_id])
        now_mono = time.monotonic()
        self._limited = {user: until for user, until in self._limited.items() if until > now_mono}

    @staticmethod
    def _limit(conn: Connection, until: float) -> None:
        """Reject ``conn``'s messages until ``until`` (monotonic) through its own rate limiter."""
        rate = conn.rate
        rate.tat = max(rate.tat, until + rate.tolerance)
