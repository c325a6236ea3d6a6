"""Encode once, fan out bytes (DESIGN §5.1).

``publish(stream, data)`` assigns the stream's next offset, encodes the ``data`` envelope once,
keeps the frame in the stream's bounded history, and queues the same :class:`Frame` object to
every matching connection. Nothing is awaited and nothing is written here: connections batch
their frames and the flusher writes each batch with one transport write in the next loop
iteration. Order per stream is the publish order; a client gets each offset at most once.
"""

from __future__ import annotations

from typing import Any

import orjson

from tradewire.clock import Clock
from tradewire.core.frames import Frame
from tradewire.metrics import ServerMetrics
from tradewire.protocol.messages import Stream
from tradewire.streams.catalog import CATALOG, StreamSpec
from tradewire.streams.history import StreamHistory
from tradewire.streams.subscriptions import Coverage, Subscription, SubscriptionManager, selection

HistoryLimits = dict[Stream, tuple[int, float]]


class BroadcastProvider:
    """Offsets, history, latest values and fan-out for every stream."""

    def __init__(
        self,
        subscriptions: SubscriptionManager,
        metrics: ServerMetrics,
        clock: Clock,
        history_limits: HistoryLimits | None = None,
    ) -> None:
        self._subscriptions = subscriptions
        self._metrics = metrics
        self._clock = clock
        limits = history_limits or {}
        self.histories: dict[Stream, StreamHistory] = {
            stream: StreamHistory(*limits.get(stream, (spec.history_size, spec.history_seconds)))
            for stream, spec in CATALOG.items()
        }
        self._latest: dict[Stream, dict[str, Frame]] = {
            s: {} for s, spec in CATALOG.items() if spec.latest_on_subscribe
        }

    def publish(self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None) -> int:
        """Publish one message; returns the number of connections it was queued to."""
        history = self.histories[stream]
        offset = history.next_offset()
        envelope = {
            "type": "data",
            "stream": stream.value,
            "data": data,
            "offset": offset,
            "epoch": history.epoch,
            "timestamp": self._clock.iso_now(),
        }
        symbol = data.get("symbol")
        spec = CATALOG[stream]
        key = (stream, symbol) if spec.conflatable and isinstance(symbol, str) else None
        frame = Frame(orjson.dumps(envelope), offset, key, stream.value)
        history.append(offset, frame, self._clock.monotonic(), data)
        latest = self._latest.get(stream)
        if latest is not None and isinstance(symbol, str):
            latest[symbol] = frame
        frame.wire  # noqa: B018 - build the wire form once, before the per-connection loop
        delivered = 0
        for sub in self._subscriptions.recipients(stream, symbol):
            flt = sub.filter
            if flt.checks and not flt.matches(data):
                continue
            conn = sub.conn
            if exclude_client is not None and conn.client_id == exclude_client:
                continue
            conn.queue_frame(frame)
            delivered += 1
        self._metrics.published[stream.value] += 1
        self._metrics.deliveries[stream.value] += delivered
        return delivered

    def position(self, stream: Stream) -> tuple[int, str]:
        """The stream's current (newest) offset and its epoch."""
        history = self.histories[stream]
        return history.offset, history.epoch

    def send_latest(self, sub: Subscription, floor: int = 0) -> int:
        """Queue the last message per matching symbol to a new subscriber; returns how many.

        Only messages above ``floor`` (what the connection may already hold, see
        :meth:`SubscriptionManager.coverage`): an older one would arrive after a newer offset.
        """
        latest = self._latest.get(sub.stream)
        if not latest:
            return 0
        symbols = sub.filter.symbols
        frames = [
            frame
            for symbol, frame in latest.items()
            if frame.offset > floor and (symbols is None or symbol in symbols)
        ]
        frames.sort(key=_offset)
        sub.conn.release_held(sub.stream.value)
        for frame in frames:
            sub.conn.defer_frame(frame)
        return len(frames)

    def recover(self, sub: Subscription, after_offset: int, epoch: str, prior: Coverage | None) -> bool:
        """Recovery for ``sub`` from the client's ``after_offset``, truthfully.

        True only if every matching message after ``after_offset`` reaches the client exactly
        once and in order: the part up to ``prior.floor`` already queued to this connection (its
        earlier subscription covered it, from at or before ``after_offset``, with the same
        selection), the rest replayed from history. False — nothing queued — when the epoch
        differs, the offset lies beyond the stream's position (a client from the future would
        otherwise drop every live message as a duplicate), history no longer reaches back, or a
        gap could only be filled out of order.
        """
        history = self.histories[sub.stream]
        if epoch != history.epoch or after_offset > history.offset:
            return False
        floor = 0
        if prior is not None and prior.floor > after_offset:
            if prior.start > after_offset or prior.selection != selection(sub.filter):
                return False
            floor = prior.floor
        return self.replay(sub, max(after_offset, floor), epoch)

    def replay(self, sub: Subscription, after_offset: int, epoch: str) -> bool:
        """Queue the stream's messages after ``after_offset`` that match ``sub``'s filter.

        False (nothing queued) when the epoch differs or history no longer reaches back.
        """
        history = self.histories[sub.stream]
        if epoch != history.epoch:
            return False
        entries = history.since(after_offset, self._clock.monotonic())
        if entries is None:
            return False
        symbols, flt, conn = sub.filter.symbols, sub.filter, sub.conn
        conn.release_held(sub.stream.value)
        replayed = 0
        for entry in entries:
            data = entry.data
            if (symbols is None or data.get("symbol") in symbols) and flt.matches(data):
                conn.defer_frame(entry.frame)
                replayed += len(entry.frame.payload)
        conn.allowance += replayed  # a backlog written at once must not count as a slow consumer
        return True

    def spec(self, stream: Stream) -> StreamSpec:
        return CATALOG[stream]


def _offset(frame: Frame) -> int:
    return frame.offset
