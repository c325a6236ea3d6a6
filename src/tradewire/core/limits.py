"""Token buckets: sustained rate with bursts (DESIGN §3.7), not a fixed window."""

from __future__ import annotations


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; one token per message.

    Time is passed in by the caller (a monotonic reading), so the bucket is pure and testable.
    """

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

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens will be available (as of the last ``take``)."""
        missing = cost - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate
