"""The gateway's cluster parts, built from settings when ``TRADEWIRE_REDIS_URL`` is set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tradewire.cluster.bus import ClusterEventBus
from tradewire.cluster.limits import ClusterLimits
from tradewire.cluster.link import ClusterLink, new_node_id
from tradewire.config import Settings
from tradewire.core.connection import Connection
from tradewire.core.connection_manager import ConnectionManager
from tradewire.metrics import ServerMetrics
from tradewire.streams.bridge import BRIDGE_SUBSCRIBER


@dataclass(slots=True)
class ClusterNode:
    """This node's link, cross-node event bus and cluster-wide limits."""

    node_id: str
    link: ClusterLink
    bus: ClusterEventBus
    limits: ClusterLimits

    @classmethod
    def build(
        cls,
        settings: Settings,
        metrics: ServerMetrics,
        connections: ConnectionManager,
        refuse: Callable[[Connection], None],
    ) -> ClusterNode:
        node_id = settings.node_id or new_node_id()
        link = ClusterLink(settings.redis_url, settings.redis_prefix, node_id, metrics)
        bus = ClusterEventBus(link, metrics, frozenset({BRIDGE_SUBSCRIBER}))
        limits = ClusterLimits(
            link.redis,
            settings.redis_prefix,
            node_id,
            connections,
            metrics,
            ttl=max(3.0, settings.cluster_lease_seconds * 2),
            user_rate_per_minute=settings.user_rate_limit_per_minute,
            refuse=refuse,
        )
        return cls(node_id, link, bus, limits)

    async def start(self) -> None:
        await self.link.start()
        await self.limits.start()

    async def stop(self) -> None:
        await self.limits.stop()
        await self.link.stop()
