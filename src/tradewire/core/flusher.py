"""Coalescing of outbound stream frames.

The first stream frame for a connection in a loop iteration is written at once (a lone message
pays no extra latency or bookkeeping); any further frames for it in the same iteration are
collected in its batch, and the flusher writes every batch with one transport write in the next
pass. A burst of N messages published in one iteration thus costs two writes per connection
instead of N. ``passes`` counts flush passes: a connection compares it with the pass of its last
direct write to know whether this is its first frame of the iteration.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """Schedules one flush pass per loop iteration in which stream frames were queued."""

    __slots__ = ("_dirty", "_loop", "passes", "scheduled")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        self.scheduled = False
        self.passes = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def mark(self, conn: Flushable) -> None:
        """``conn`` has a batch to write (call once per batch)."""
        self._dirty.append(conn)
        if not self.scheduled:
            self.arm()

    def arm(self) -> None:
        """Make sure a pass runs at the end of this iteration (it also starts a new ``passes``)."""
        self.scheduled = True
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        dirty = self._dirty
        self._dirty = []
        self.scheduled = False
        self.passes += 1
        for conn in dirty:
            conn.flush()
