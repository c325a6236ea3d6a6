"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential bound) spreads a crowd of clients that
lost the same server over the whole window instead of bunching them at each doubling, which is
what a server restarting under load needs (see AWS's "Exponential Backoff and Jitter").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tradewire.protocol.codes import CloseCode

# Close codes after which the client must not reconnect on its own: 1000 is a deliberate end
# (also sent to a connection whose session another one took over), 1008 a client bug.
FINAL_CLOSE_CODES = frozenset({int(CloseCode.NORMAL), int(CloseCode.POLICY_VIOLATION)})
# After 4029 (rate-limit abuse) the server asks for at least a minute of silence.
MIN_DELAY_AFTER = {int(CloseCode.RATE_LIMIT_ABUSE): 60.0}


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(attempt)`` = uniform(0, min(cap, base · 2^attempt)) seconds."""

    base: float = 0.5
    cap: float = 30.0
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def delay(self, attempt: int, close_code: int | None = None) -> float:
        bound = min(self.cap, self.base * 2 ** min(attempt, 32))
        return max(self.uniform(0.0, bound), MIN_DELAY_AFTER.get(close_code or 0, 0.0))
