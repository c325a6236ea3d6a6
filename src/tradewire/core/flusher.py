"""Coalescing of outbound stream frames.

Stream frames are not written when they are published: each connection collects them in a batch,
and the flusher writes every non-empty batch once, with one transport write per connection, in
the next loop iteration. A burst of messages published in one iteration thus costs one write
syscall per connection instead of one per message.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """Schedules one flush pass per loop iteration for the connections that have a batch."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def mark(self, conn: Flushable) -> None:
        """``conn`` has a batch to write (call once per batch)."""
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        dirty = self._dirty
        self._dirty = []
        self._scheduled = False
        for conn in dirty:
            conn.flush()
