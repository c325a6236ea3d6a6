"""The event bus across nodes: the in-process bus, plus the topics other nodes need.

Events published on this node go to its own subscribers (the in-process contract of
:mod:`tradewire.bus.event_bus`); those whose topic matches :data:`SHARED_TOPICS` also go to every
other node through Redis, where they reach that node's subscribers **except** the origin-only
ones (the event bridge): so market data from the node that runs the feeds reaches paper sessions
everywhere, and each event is published onto the streams exactly once, by the node where it
happened (the streams carry it to every node's clients). Remote delivery is at most once: events
sent while Redis is unreachable are dropped and counted.
"""

from __future__ import annotations

from typing import Any, Final

from tradewire.bus.event_bus import EventHandler, topic_matches
from tradewire.bus.event_bus_memory import InMemoryEventBus
from tradewire.cluster.link import ClusterLink
from tradewire.metrics import ServerMetrics

SHARED_TOPICS: Final = ("market.*",)  # what other nodes' engines consume (paper sessions)


class ClusterEventBus:
    """Local bus for local events; a second local bus for events from other nodes."""

    def __init__(self, link: ClusterLink, metrics: ServerMetrics, origin_only: frozenset[str]) -> None:
        self.link = link  # shared with the cluster engine (jobs, lease) on this node
        self.metrics = metrics
        self._link = link
        self._local = InMemoryEventBus(metrics)
        self._remote = InMemoryEventBus(metrics)  # without the origin-only subscribers
        self._origin_only = origin_only
        self._channel = f"{link.prefix}bus"
        self._shared: dict[str, bool] = {}
        link.on(self._channel, self._on_remote)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self._local.publish(topic, payload)
        shared = self._shared.get(topic)
        if shared is None:
            shared = self._shared[topic] = any(topic_matches(p, topic) for p in SHARED_TOPICS)
        if shared:
            self._link.send(self._channel, {"node": self._link.node_id, "topic": topic, "payload": payload})

    def subscribe(self, pattern: str, handler: EventHandler, *, name: str, queue_size: int = 10_000) -> None:
        self._local.subscribe(pattern, handler, name=name, queue_size=queue_size)
        if name not in self._origin_only:
            self._remote.subscribe(pattern, handler, name=name, queue_size=queue_size)

    def unsubscribe(self, name: str) -> None:
        self._local.unsubscribe(name)
        self._remote.unsubscribe(name)

    async def start(self) -> None:
        await self._local.start()
        await self._remote.start()

    async def stop(self) -> None:
        await self._local.stop()
        await self._remote.stop()

    def _on_remote(self, message: dict[str, Any]) -> None:
        topic, payload = message.get("topic"), message.get("payload")
        if (
            message.get("node") == self._link.node_id
            or not isinstance(topic, str)
            or not isinstance(payload, dict)
        ):
            return
        self._remote.publish(topic, payload)
