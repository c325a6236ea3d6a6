"""One client connection, independent of the transport that carries it.

A transport adapter (picows engine, ASGI endpoint) implements :class:`Outbound` and feeds inbound
messages to the router; everything else — limits, authentication state, the outbound bound —
lives here, so the whole protocol is testable without a socket.

Outbound contract: ``send()`` never blocks and never awaits. Frames go to the transport's write
buffer at once; if the bytes waiting in user space exceed the connection's bound, the connection
is closed with 4008 (slow consumer) instead of growing without limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

from tradewire.auth.tokens import Principal
from tradewire.core.client_utils import ClientInfo
from tradewire.core.limits import TokenBucket
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import CloseCode


class Outbound(Protocol):
    """What the core needs from a transport."""

    def write(self, payload: bytes) -> None:
        """Queue one text frame (UTF-8 JSON) for sending, without blocking."""
        ...

    def buffered(self) -> int:
        """Bytes queued in user space and not yet handed to the kernel."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and disconnect; idempotent."""
        ...

    def ping(self) -> None:
        """Send a protocol-level ping if the transport can (no-op otherwise)."""
        ...


class Connection:
    """State of one connected client."""

    __slots__ = (
        "_metrics",
        "_outbound",
        "_queue_limit",
        "client_id",
        "close_code",
        "closed",
        "expiry_timers",
        "inflight",
        "info",
        "last_seen",
        "opened_at",
        "pending",
        "pinged_at",
        "principal",
        "rate",
        "strikes",
        "tasks",
    )

    def __init__(
        self,
        client_id: str,
        info: ClientInfo,
        outbound: Outbound,
        metrics: ServerMetrics,
        *,
        queue_limit: int,
        rate: TokenBucket,
        strikes: TokenBucket,
        now: float,
    ) -> None:
        self.client_id = client_id
        self.info = info
        self._outbound = outbound
        self._metrics = metrics
        self._queue_limit = queue_limit  # bytes allowed in the transport's user-space buffer
        self.rate = rate  # message budget (DESIGN §3.7)
        self.strikes = strikes  # budget of rate-limit violations before 4029
        self.opened_at = now
        self.last_seen = now  # monotonic time of the last inbound frame (any kind)
        self.pinged_at = 0.0  # monotonic time of the last server ping
        self.principal: Principal | None = None
        self.closed = False
        self.close_code: int | None = None
        self.inflight = 0  # async handlers running for this connection
        self.pending: deque[Any] = deque()  # async requests waiting for an inflight slot
        self.tasks: set[asyncio.Task[None]] = set()
        self.expiry_timers: list[asyncio.TimerHandle] = []

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    @property
    def user_id(self) -> str | None:
        return self.principal.user_id if self.principal is not None else None

    def send(self, payload: bytes) -> bool:
        """Queue one encoded frame; False if closed or if this send overflowed the bound."""
        if self.closed:
            return False
        outbound = self._outbound
        outbound.write(payload)
        self._metrics.messages_out += 1
        if outbound.buffered() > self._queue_limit:
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def close(self, code: CloseCode, reason: str) -> None:
        """Close from the server side with a registered code; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.close_code = int(code)
        self._metrics.closes[int(code)] += 1
        self.cancel_timers()
        self._outbound.close(int(code), reason)

    def ping(self, now: float) -> None:
        self.pinged_at = now
        self._outbound.ping()

    def mark_closed(self) -> None:
        """The transport is gone (peer closed, network error): stop all work for it."""
        self.closed = True
        self.cancel_timers()
        for task in self.tasks:
            task.cancel()
        self.pending.clear()

    def cancel_timers(self) -> None:
        for timer in self.expiry_timers:
            timer.cancel()
        self.expiry_timers.clear()

    def queued_bytes(self) -> int:
        return self._outbound.buffered()
