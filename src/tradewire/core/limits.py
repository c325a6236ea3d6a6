"""Rate limits: sustained rate with bursts (DESIGN §3.7), not a fixed window.

:class:`RateLimiter` is the per-message check (GCRA: one comparison and one addition per call);
:class:`TokenBucket` serves the rarer checks that spend other amounts. Time is passed in by the
caller (a monotonic reading), so both are pure and testable.
"""

from __future__ import annotations


class RateLimiter:
    """Generic cell rate algorithm: ``rate`` per second sustained, ``burst`` at once.

    :meth:`MessageRouter.handle` inlines :meth:`allow` (same three lines) for every message.
    """

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float, burst: int) -> None:
        self.interval = 1.0 / rate
        self.tolerance = self.interval * (burst - 1)  # how far ahead of now the schedule may run
        self.tat = 0.0  # theoretical arrival time of the next conforming message

    def allow(self, now: float) -> bool:
        tat = self.tat if self.tat > now else now
        if tat - now > self.tolerance:
            return False
        self.tat = tat + self.interval
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until the next message would be allowed."""
        return max(0.0, self.tat - self.tolerance - now)


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second."""

    __slots__ = ("_stamp", "_tokens", "capacity", "rate")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if available."""
        tokens = min(self._tokens + (now - self._stamp) * self.rate, self.capacity)
        self._stamp = now
        if tokens >= cost:
            self._tokens = tokens - cost
            return True
        self._tokens = tokens
        return False

    def available(self, now: float, cost: float = 1.0) -> bool:
        """Whether ``take(now, cost)`` would succeed (nothing is spent)."""
        return min(self._tokens + (now - self._stamp) * self.rate, self.capacity) >= cost

    def refund(self, cost: float = 1.0) -> None:
        """Give back ``cost`` tokens taken for an attempt that turned out not to count."""
        self._tokens = min(self._tokens + cost, self.capacity)

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens will be available (as of the last ``take``)."""
        missing = cost - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate
