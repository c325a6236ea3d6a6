"""Injected time source: the server, limits and timers read time only through a :class:`Clock`.

``monotonic()`` drives timeouts and token buckets; ``iso_now()`` stamps messages. The system clock
caches the ISO string per millisecond because a busy server stamps tens of thousands of replies
per second and formatting a datetime costs more than the rest of a heartbeat reply.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for durations and deadlines."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch (wall clock)."""
        ...

    def iso_now(self) -> str:
        """Wall-clock time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-26T10:00:00.123Z``."""
        ...


def iso_from_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as ISO 8601 UTC with a ``Z`` suffix."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class SystemClock:
    """The real clock."""

    __slots__ = ("_cached_iso", "_cached_ms")

    def __init__(self) -> None:
        self._cached_ms = -1
        self._cached_iso = ""

    # The C functions themselves: the request path reads the clock on every message.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def iso_now(self) -> str:
        now_ms = time.time_ns() // 1_000_000
        if now_ms != self._cached_ms:
            self._cached_ms = now_ms
            self._cached_iso = iso_from_ms(now_ms)
        return self._cached_iso


class ManualClock:
    """A clock that moves only when told to: deterministic tests of limits and expiry."""

    __slots__ = ("_mono", "_wall")

    def __init__(self, wall: float = 1_800_000_000.0) -> None:
        self._mono = 0.0
        self._wall = wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += seconds

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def iso_now(self) -> str:
        return iso_from_ms(int(self._wall * 1000))
