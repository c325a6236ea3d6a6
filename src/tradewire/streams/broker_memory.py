"""The memory broker: one process's offsets, epochs, history and latest values (the default).

Everything happens inside ``publish``: the next offset, the envelope encoded once, the history
append, the latest value per symbol, and the handler's fan-out, before it returns — so a single
process keeps today's cost and ordering, and history reads never wait (``local_reads``). It also
serves the Redis broker as its node-local fallback while Redis is unreachable (``rebase`` starts
a stream over in a local epoch). See :mod:`tradewire.streams.broker` for the contract.
"""

from __future__ import annotations

from typing import Any

from tradewire.clock import Clock
from tradewire.protocol.messages import Stream
from tradewire.streams.broker import BrokerHandler, Interest
from tradewire.streams.catalog import CATALOG
from tradewire.streams.envelope import encode, frame_for
from tradewire.streams.history import Entry, StreamHistory

HistoryLimits = dict[Stream, tuple[int, float]]


class MemoryBroker:
    """Per-stream :class:`StreamHistory` and latest entries, in this process only."""

    local_reads = True

    def __init__(self, clock: Clock, history_limits: HistoryLimits | None = None) -> None:
        self._clock = clock
        self._limits = {
            stream: (history_limits or {}).get(stream, (spec.history_size, spec.history_seconds))
            for stream, spec in CATALOG.items()
        }
        self.histories: dict[Stream, StreamHistory] = {
            stream: StreamHistory(*limits) for stream, limits in self._limits.items()
        }
        self._latest: dict[Stream, dict[str, Entry]] = {
            s: {} for s, spec in CATALOG.items() if spec.latest_on_subscribe
        }
        self._handler: BrokerHandler | None = None

    def attach(self, handler: BrokerHandler, interest: Interest) -> None:
        self._handler = handler

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def publish(self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None) -> int:
        """Offset, encode once, history, latest value, fan-out; returns local recipients."""
        history = self.histories[stream]
        offset = history.next_offset()
        payload = encode(stream, data, offset, history.epoch, self._clock.iso_now())
        entry = history.append(
            offset, frame_for(stream, payload, offset, data), self._clock.monotonic(), data
        )
        latest = self._latest.get(stream)
        if latest is not None:
            symbol = data.get("symbol")
            if isinstance(symbol, str):
                latest[symbol] = entry
        handler = self._handler
        return handler.deliver(stream, entry, exclude_client) if handler is not None else 0

    async def publish_wait(
        self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None
    ) -> int:
        return self.publish(stream, data, exclude_client)

    def position(self, stream: Stream) -> tuple[int, str]:
        history = self.histories[stream]
        return history.offset, history.epoch

    async def ready(self, stream: Stream) -> None:
        return None

    async def caught_up(self, stream: Stream, offset: int, epoch: str) -> None:
        return None

    async def history(self, stream: Stream, after: int) -> tuple[list[Entry] | None, int, str]:
        offset, epoch = self.position(stream)
        return self.history_now(stream, after), offset, epoch

    async def latest(self, stream: Stream) -> dict[str, Entry]:
        return self.latest_now(stream)

    def history_now(self, stream: Stream, after: int) -> list[Entry] | None:
        return self.histories[stream].since(after, self._clock.monotonic())

    def latest_now(self, stream: Stream) -> dict[str, Entry]:
        return dict(self._latest.get(stream) or {})

    def rebase(self, stream: Stream, offset: int, epoch: str) -> None:
        """Start ``stream`` over in ``epoch`` after ``offset`` (history and latest values dropped)."""
        history = StreamHistory(*self._limits[stream], epoch=epoch)
        history.offset = offset
        self.histories[stream] = history
        latest = self._latest.get(stream)
        if latest is not None:
            latest.clear()

    def stats(self, stream: Stream) -> dict[str, Any]:
        return {"history": len(self.histories[stream])}

    def health(self) -> dict[str, Any]:
        return {"ready": True, "backend": "memory", "degraded": False}
