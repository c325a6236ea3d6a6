"""The leader lease: one node of the cluster runs the market-data feeds and the live strategies.

``SET key node NX PX ttl`` takes the lease; its holder renews it every ``ttl/3`` with a
compare-and-renew script (only the holder can extend or release it). When the holder dies its
lease expires and the next node to try takes over (within ``ttl`` plus one retry interval).
While Redis is unreachable the holder keeps leading (its clients still get market data) and the
others keep following — nobody can take a lease then; when Redis is back the holder renews or,
if the key was lost, takes it again with ``NX``. Two leaders can therefore overlap only around a
Redis failover, and only until the next renewal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

_log = structlog.get_logger("tradewire.cluster")

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease:
    """Campaign for, hold and hand over one named lease."""

    def __init__(
        self,
        redis: aioredis.Redis,
        key: str,
        node_id: str,
        ttl: float,
        on_change: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._redis = redis
        self.key = key
        self.node_id = node_id
        self.ttl = ttl
        self._on_change = on_change
        self.leading = False
        self._renew: Any = redis.register_script(RENEW)
        self._release: Any = redis.register_script(RELEASE)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._attempt()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.leading:
            try:
                await self._release(keys=[self.key], args=[self.node_id])  # the next node need not wait
            except (RedisError, OSError) as exc:
                _log.warning("cluster.lease_release_failed", error=type(exc).__name__)
            await self._set(False)

    async def holder(self) -> str | None:
        value = await self._redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self._attempt()

    async def _attempt(self) -> None:
        ttl_ms = int(self.ttl * 1000)
        try:
            if self.leading:
                held = bool(await self._renew(keys=[self.key], args=[self.node_id, ttl_ms]))
                if not held:  # expired (e.g. Redis restarted): take it again if free
                    held = bool(await self._redis.set(self.key, self.node_id, nx=True, px=ttl_ms))
            else:
                held = bool(await self._redis.set(self.key, self.node_id, nx=True, px=ttl_ms))
        except (RedisError, OSError) as exc:
            _log.debug("cluster.lease_unreachable", error=type(exc).__name__, leading=self.leading)
            return  # keep the current role until Redis answers again
        if held != self.leading:
            await self._set(held)

    async def _set(self, leading: bool) -> None:
        self.leading = leading
        _log.warning("cluster.leadership", node_id=self.node_id, leading=leading, key=self.key)
        await self._on_change(leading)
