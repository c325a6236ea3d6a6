"""The embedded engine as one node of a cluster (composition around :class:`EmbeddedEngine`).

- **Leader lease** (:class:`~tradewire.cluster.lease.LeaderLease`): only the leader runs the
  market-data feeds and feeds the live strategies, and only its strategy events reach the streams;
  when it dies another node takes over (its state machines start from ``monitoring``: live state is
  not replicated). Market data reaches every node's paper sessions through the cluster bus.
- **Strategies**: writes (upsert, activate, deactivate) go to the shared database on the node that
  got them, which then tells every node to reload; ``get_strategy_status`` answers from the
  leader's snapshot (published to Redis every second), so every node reports the live machines.
- **Sessions**: :class:`~tradewire.cluster.jobs.ClusterSessions`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError

from tradewire.bus.event_bus import EventBus
from tradewire.cluster.bus import ClusterEventBus
from tradewire.cluster.jobs import ClusterSessions
from tradewire.cluster.lease import LeaderLease
from tradewire.config import Settings
from tradewire.controller import (
    Caller,
    CollectionService,
    SessionService,
    StrategyService,
    SymbolDirectory,
)
from tradewire.engine.controller import EmbeddedEngine
from tradewire.errors import ConfigError, StrategyNotFound
from tradewire.metrics import ServerMetrics

_log = structlog.get_logger("tradewire.cluster")
STATUS_INTERVAL = 1.0  # s between the leader's strategy status snapshots


class ClusterStrategies:
    """The node's strategy manager, with writes announced to the cluster and live status from the
    leader."""

    def __init__(self, engine: ClusterEngine) -> None:
        self._engine = engine
        self._inner = engine.inner.strategies
        self.snapshot: list[dict[str, Any]] | None = None  # the leader's status (followers)

    def strategies(self, caller: Caller) -> list[dict[str, Any]]:
        return self._inner.strategies(caller)

    def validate(self, raw: object) -> dict[str, Any]:
        return self._inner.validate(raw)

    async def upsert(self, caller: Caller, raw: object) -> tuple[str, int]:
        result = await self._inner.upsert(caller, raw)
        self._engine.announce_strategies()
        return result

    async def activate(self, caller: Caller, name: str, symbol: str) -> dict[str, Any]:
        result = await self._inner.activate(caller, name, symbol)
        self._engine.announce_strategies()
        return result

    async def deactivate(self, caller: Caller, name: str, symbol: str) -> dict[str, Any]:
        result = await self._inner.deactivate(caller, name, symbol)
        self._engine.announce_strategies()
        return result

    def status(self, name: str | None = None, symbol: str | None = None) -> list[dict[str, Any]]:
        local = self._inner.status(name, symbol)  # StrategyNotFound for unknown names
        if self._engine.leading or self.snapshot is None:
            return local
        return [
            item
            for item in self.snapshot
            if (name is None or item.get("strategy_name") == name)
            and (symbol is None or item.get("symbol") == symbol)
        ]


class ClusterEngine:
    """A :class:`~tradewire.controller.Controller` for one cluster node (module docstring)."""

    def __init__(
        self, inner: EmbeddedEngine, settings: Settings, metrics: ServerMetrics | None = None
    ) -> None:
        self.inner = inner
        self.settings = settings
        self._metrics = metrics or ServerMetrics()
        self._strategies = ClusterStrategies(self)
        self._sessions = ClusterSessions(
            inner.sessions,
            inner.database,
            inner._publish,
            ttl=settings.cluster_lease_seconds,
            max_per_user=settings.max_sessions_per_user,
            max_total=settings.max_sessions_total,
            prepare=self._current_strategies,
        )
        self._lease: LeaderLease | None = None
        self._tasks: list[asyncio.Task[None]] = []
        inner.leading = lambda: self.leading

    @property
    def leading(self) -> bool:
        return self._lease is not None and self._lease.leading

    @property
    def strategies(self) -> StrategyService:
        return self._strategies

    @property
    def sessions(self) -> SessionService | None:
        return self._sessions

    @property
    def collections(self) -> CollectionService | None:
        """Collections record on the node that started them (the feed reaches it through the
        cluster bus); status and stop work on that node (docs/CLUSTER.md)."""
        return self.inner.collections

    @property
    def symbols(self) -> SymbolDirectory | None:
        return self.inner.symbols

    async def start(self, bus: EventBus) -> None:
        if not isinstance(bus, ClusterEventBus):
            raise ConfigError("cluster mode needs the cluster event bus (TRADEWIRE_REDIS_URL)")
        link = bus.link
        self._metrics = bus.metrics
        settings = self.settings
        self._link = link
        self._sessions.attach(link, self._metrics)
        link.on(f"{link.prefix}cluster", self._on_cluster)
        await self.inner.start(bus)
        self._lease = LeaderLease(
            link.redis, f"{link.prefix}leader", link.node_id, settings.cluster_lease_seconds, self._leadership
        )
        await self._lease.start()
        await self._sessions.start()
        self._tasks = [asyncio.get_running_loop().create_task(self._status_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._sessions.stop()
        if self._lease is not None:
            await self._lease.stop()
        await self.inner.stop()

    def health(self) -> dict[str, Any]:
        node = self._link.node_id if hasattr(self, "_link") else None
        return {**self.inner.health(), **self._sessions.health(), "node_id": node, "leader": self.leading}

    def queries(self) -> dict[str, Any]:
        return self.inner.queries()

    async def _leadership(self, leading: bool) -> None:
        if leading:
            self.inner.start_feeds()
        else:
            await self.inner.stop_feeds()

    def announce_strategies(self) -> None:
        self._link.send(
            f"{self._link.prefix}cluster", {"event": "strategies_changed", "node": self._link.node_id}
        )

    def _on_cluster(self, message: dict[str, Any]) -> None:
        if message.get("event") == "strategies_changed" and message.get("node") != self._link.node_id:
            asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        """Another node changed strategies in the database: load them again (the leader's live
        machines restart from ``monitoring``)."""
        await self.inner.strategies.load(self.settings.synthetic_symbols or None)
        _log.info("cluster.strategies_reloaded", leader=self.leading)

    async def _current_strategies(self, names: list[str]) -> None:
        """Reload if the database holds a newer version of a strategy a session will run (its
        change notice may still be on its way)."""
        stored = {row.name: row.version for row in await self.inner.database.latest_strategies()}
        for name in names:
            try:
                _, version = self.inner.strategies.document(name)
            except StrategyNotFound:
                version = None
            if name in stored and stored[name] != version:
                await self._reload()
                return

    async def _status_loop(self) -> None:
        key = f"{self._link.prefix}strategies:status"
        redis = self._link.redis
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            try:
                if self.leading:
                    payload = orjson.dumps(self.inner.strategies.status())
                    await redis.set(key, payload, px=int(STATUS_INTERVAL * 5000))
                else:
                    raw = await redis.get(key)
                    self._strategies.snapshot = orjson.loads(raw) if raw else None
            except (RedisError, OSError) as exc:
                _log.debug("cluster.status_unavailable", error=type(exc).__name__)
