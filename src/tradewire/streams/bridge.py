"""Event-bus topics → streams (DESIGN §5.3), as a table rather than code branches.

The bridge subscribes to every topic (``*``) and looks each one up in :data:`TOPIC_MAP`; the
first matching pattern wins. Payloads are normalised per stream (a dict, with ``event`` naming
the topic so that e.g. price and order-book updates on ``market_data`` can be told apart).
Topics with no stream are ignored and counted in ``tradewire_bridge_unknown_topics``.
"""

from __future__ import annotations

from typing import Any, Final

import structlog

from tradewire.bus import topics
from tradewire.bus.event_bus import EventBus, topic_matches
from tradewire.metrics import ServerMetrics
from tradewire.protocol.messages import Stream
from tradewire.protocol.wire import to_wire
from tradewire.streams.broadcast import BroadcastProvider

TOPIC_MAP: Final[tuple[tuple[str, Stream], ...]] = (
    (topics.MARKET_PRICE_UPDATE, Stream.MARKET_DATA),
    (topics.MARKET_ORDERBOOK_UPDATE, Stream.MARKET_DATA),
    (topics.INDICATOR_UPDATED, Stream.INDICATORS),
    (topics.SIGNAL_GENERATED, Stream.SIGNALS),
    ("execution.*", Stream.EXECUTION_STATUS),
    (topics.SESSION_RESULT, Stream.EXECUTION_RESULT),
    (topics.STRATEGY_STATE_CHANGED, Stream.STATE_MACHINES),
    ("order.*", Stream.ORDERS),
    ("position.*", Stream.POSITIONS),
    ("health.*", Stream.HEALTH_CHECK),
)
MAX_UNKNOWN_TOPIC_LABELS = 100
MAX_CACHED_TOPICS = 10_000
BRIDGE_SUBSCRIBER = "event_bridge"

_log = structlog.get_logger("tradewire.bridge")


def stream_for(topic: str) -> Stream | None:
    for pattern, stream in TOPIC_MAP:
        if topic_matches(pattern, topic):
            return stream
    return None


def normalise(topic: str, payload: Any) -> dict[str, Any]:
    """The stream ``data`` for an event: a copy of the payload in the wire style (times as ISO
    strings, :mod:`tradewire.protocol.wire`) with ``event`` set to the topic."""
    data: dict[str, Any] = to_wire(payload) if isinstance(payload, dict) else {"value": payload}
    data.setdefault("event", topic)
    return data


class EventBridge:
    """Subscribes to the bus and publishes mapped events on their streams."""

    def __init__(self, bus: EventBus, broadcast: BroadcastProvider, metrics: ServerMetrics) -> None:
        self._bus = bus
        self._broadcast = broadcast
        self._metrics = metrics
        self._routes: dict[str, Stream | None] = {}  # cache of stream_for()

    def start(self) -> None:
        self._bus.subscribe("*", self.on_event, name=BRIDGE_SUBSCRIBER)

    def stop(self) -> None:
        self._bus.unsubscribe(BRIDGE_SUBSCRIBER)

    def on_event(self, topic: str, payload: dict[str, Any]) -> None:
        if topic in self._routes:
            stream = self._routes[topic]
        else:
            stream = stream_for(topic)
            if len(self._routes) < MAX_CACHED_TOPICS:
                self._routes[topic] = stream
        if stream is None:
            unknown = self._metrics.unknown_topics
            if topic in unknown or len(unknown) < MAX_UNKNOWN_TOPIC_LABELS:
                unknown[topic] += 1
            else:
                unknown["(other)"] += 1
            return
        self._broadcast.publish(stream, normalise(topic, payload))
