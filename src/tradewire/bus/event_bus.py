"""The event-bus contract, implemented by :mod:`tradewire.bus.event_bus_memory` (and, for a
cluster, a Redis implementation later).

Contract:

- ``publish(topic, payload)`` is synchronous and never blocks on a subscriber: it appends the event
  to each matching subscriber's bounded queue and returns.
- Each subscriber has its own queue and its own task; events reach a subscriber in publish order.
- A full queue drops the new event for that subscriber only, counted in
  ``tradewire_bus_dropped{subscriber}`` and logged; other subscribers are unaffected.
- A handler that raises is logged and counted (``tradewire_bus_failures``); the event is not
  retried (a retry could duplicate side effects) and the subscriber goes on with the next event.
- Patterns: an exact topic, a prefix ending in ``.*`` (``execution.*``), or ``*`` for all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class EventBus(Protocol):
    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Deliver to every matching subscriber's queue; never blocks."""
        ...

    def subscribe(self, pattern: str, handler: EventHandler, *, name: str, queue_size: int = 10_000) -> None:
        """Register ``handler`` for topics matching ``pattern`` under a unique ``name``."""
        ...

    def unsubscribe(self, name: str) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def topic_matches(pattern: str, topic: str) -> bool:
    if pattern in ("*", topic):
        return True
    return pattern.endswith(".*") and topic.startswith(pattern[:-1])
