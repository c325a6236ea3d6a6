"""Server metrics: plain counters on the hot path, exposed through prometheus-client.

The request path of a heartbeat costs ~15 µs in total, and a prometheus ``Counter.inc()`` or
``Histogram.observe()`` takes a lock and costs ~0.5–1 µs each, so the hot path only bumps
integers and a bucket array here. A custom collector (prometheus-client's documented extension
point) turns them into metric families at scrape time, in a registry owned by the server so that
several servers in one process (tests) do not collide.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class LatencyHistogram:
    """Bucket counts for one label value (handler latency of one message type)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class ServerMetrics:
    """Counters updated by the core; read by ``get_stats()`` and the Prometheus collector."""

    def __init__(self) -> None:
        self.connections_current = 0
        self.connections_opened = 0
        self.messages_in = 0
        self.messages_out = 0
        self.rejected: Counter[str] = Counter()  # connection rejections by reason
        self.errors: Counter[str] = Counter()  # error envelopes by error_code
        self.closes: Counter[int] = Counter()  # server-initiated closes by close code
        self.latency: dict[str, LatencyHistogram] = {}
        # streams
        self.published: Counter[str] = Counter()  # stream messages by stream
        self.deliveries: Counter[str] = Counter()  # frames queued to connections, by stream
        self.flushes = 0  # transport writes of stream batches
        self.coalesced = 0  # frames that shared a write with an earlier one
        self.conflated = 0  # market data frames replaced by a newer one while backed up
        self.bus_dropped: Counter[str] = Counter()  # event-bus events dropped, by subscriber
        self.bus_failures: Counter[str] = Counter()  # event-bus handler exceptions, by subscriber
        self.unknown_topics: Counter[str] = Counter()  # bus topics with no stream, by topic
        self.reconnects: Counter[str] = Counter()  # reconnect attempts by result
        self.queue_bytes: Callable[[], list[int]] = list  # per-connection queued bytes, at scrape
        # The engine's health figures; the numeric ones are exported as tradewire_engine_<name>
        # gauges (e.g. collection_dropped_rows). None: no engine behind the gateway.
        self.engine: Callable[[], dict[str, Any]] | None = None
        # cluster (Redis broker, bus, jobs, limits): events by name, and whether Redis is away
        self.cluster: Counter[str] = Counter()
        self.cluster_degraded: Callable[[], bool] = bool

    def observe_latency(self, message_type: str, seconds: float) -> None:
        hist = self.latency.get(message_type)
        if hist is None:
            hist = self.latency[message_type] = LatencyHistogram()
        hist.observe(seconds)

    def registry(self) -> CollectorRegistry:
        """A fresh registry with these metrics and the process collector."""
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_Collector(self))
        ProcessCollector(registry=registry)
        return registry


class _Collector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield GaugeMetricFamily("tradewire_connections", "Open WebSocket connections", m.connections_current)
        yield CounterMetricFamily(
            "tradewire_connections_opened", "Connections accepted", m.connections_opened
        )
        rejected = CounterMetricFamily(
            "tradewire_connections_rejected", "Connections refused", labels=["reason"]
        )
        for reason, count in sorted(m.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily("tradewire_messages_in", "Client messages received", m.messages_in)
        yield CounterMetricFamily("tradewire_messages_out", "Frames queued to clients", m.messages_out)
        errors = CounterMetricFamily("tradewire_errors", "Error envelopes sent", labels=["code"])
        for code, count in sorted(m.errors.items()):
            errors.add_metric([code], count)
        yield errors
        closes = CounterMetricFamily("tradewire_closes", "Server-initiated closes", labels=["code"])
        for close_code, count in sorted(m.closes.items()):
            closes.add_metric([str(close_code)], count)
        yield closes
        yield from _stream_metrics(m)
        hist = HistogramMetricFamily(
            "tradewire_handler_seconds", "Handler latency by message type", labels=["type"]
        )
        for message_type, h in sorted(m.latency.items()):
            hist.add_metric([message_type], h.cumulative(), h.total)
        yield hist
        yield from _engine_metrics(m)


def _engine_metrics(m: ServerMetrics) -> Iterator[Metric]:
    if m.engine is None:
        return
    for name, value in sorted(m.engine().items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield GaugeMetricFamily(f"tradewire_engine_{name}", f"Engine health figure {name}", value)


def _labelled(name: str, doc: str, label: str, values: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([key], count)
    return family


def _stream_metrics(m: ServerMetrics) -> Iterator[Metric]:
    yield _labelled("tradewire_stream_published", "Stream messages published", "stream", m.published)
    yield _labelled(
        "tradewire_stream_deliveries", "Stream frames queued to connections", "stream", m.deliveries
    )
    yield CounterMetricFamily("tradewire_stream_flushes", "Transport writes of stream batches", m.flushes)
    yield CounterMetricFamily("tradewire_stream_coalesced", "Frames that shared a write", m.coalesced)
    yield CounterMetricFamily("tradewire_stream_conflated", "Market data frames conflated", m.conflated)
    yield _labelled("tradewire_bus_dropped", "Event-bus events dropped", "subscriber", m.bus_dropped)
    yield _labelled("tradewire_bus_failures", "Event-bus handler failures", "subscriber", m.bus_failures)
    yield _labelled(
        "tradewire_bridge_unknown_topics", "Bus topics without a stream", "topic", m.unknown_topics
    )
    yield _labelled("tradewire_reconnects", "Reconnect attempts by result", "result", m.reconnects)
    yield _labelled("tradewire_cluster_events", "Cluster events (Redis broker, jobs)", "event", m.cluster)
    yield GaugeMetricFamily(
        "tradewire_cluster_degraded",
        "1 while Redis is unreachable (local delivery only)",
        int(m.cluster_degraded()),
    )
    sizes = m.queue_bytes()
    queued = GaugeMetricFamily("tradewire_connection_queue_bytes", "Outbound bytes queued", labels=["stat"])
    queued.add_metric(["max"], max(sizes, default=0))
    queued.add_metric(["sum"], sum(sizes))
    yield queued
