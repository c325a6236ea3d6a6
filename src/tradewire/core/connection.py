"""One client connection, independent of the transport that carries it.

A transport adapter (picows engine, ASGI endpoint) implements :class:`Outbound` and feeds inbound
messages to the router; everything else — limits, authentication state, the outbound bound —
lives here, so the whole protocol is testable without a socket.

Outbound contract: nothing here blocks or awaits. Direct replies (``send``) go to the transport's
write buffer at once; stream frames (``queue_frame``) are batched and written by the
:class:`~tradewire.core.flusher.Flusher` once per loop iteration. If the bytes waiting in user
space exceed the connection's bound, the connection is closed with 4008 (slow consumer) instead
of growing without limit. While the transport is paused (its buffer is above the high-water
mark), conflatable frames (market data) are held back, keeping only the newest per symbol.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from tradewire.auth.tokens import Principal
from tradewire.core.client_utils import ClientInfo
from tradewire.core.flusher import Flusher
from tradewire.core.frames import Frame
from tradewire.core.limits import RateLimiter
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import CloseCode

HIGH_WATER = 64 * 1024  # bytes queued before a transport reports backpressure


class Outbound(Protocol):
    """What the core needs from a transport."""

    # Queue one text frame (UTF-8 JSON) for sending, without blocking. An attribute rather than
    # a method so a transport can hand over its fastest callable (picows: a partial of send).
    write: Callable[[bytes], None]

    def write_frames(self, frames: list[Frame]) -> None:
        """Queue several encoded stream frames, in order, with one write if the transport can."""
        ...

    def write_frame(self, frame: Frame) -> None:
        """Queue one encoded stream frame."""
        ...

    def buffered(self) -> int:
        """Bytes queued in user space and not yet handed to the kernel."""
        ...

    def set_flow_control(
        self, high_water: int, on_pause: Callable[[], None], on_resume: Callable[[], None]
    ) -> None:
        """Call ``on_pause`` when more than ``high_water`` bytes are queued, ``on_resume`` once drained."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and disconnect; idempotent."""
        ...

    def ping(self) -> None:
        """Send a protocol-level ping if the transport can (no-op otherwise)."""
        ...

    def is_open(self) -> bool:
        """Whether frames written now may reach the peer: connected, and no close frame sent yet."""
        ...


class Connection:
    """State of one connected client."""

    __slots__ = (
        "_buffered",
        "_flusher",
        "_metrics",
        "_outbound",
        "_pass",
        "_queue_limit",
        "_unconfirmed_bytes",
        "_write",
        "allowance",
        "batch",
        "client_id",
        "close_code",
        "closed",
        "conflated",
        "expiry_timers",
        "held",
        "inflight",
        "info",
        "last_seen",
        "opened_at",
        "paused",
        "pending",
        "pinged_at",
        "principal",
        "rate",
        "received",
        "reconnect_hash",
        "strikes",
        "tasks",
        "unconfirmed",
    )

    def __init__(
        self,
        client_id: str,
        info: ClientInfo,
        outbound: Outbound,
        metrics: ServerMetrics,
        *,
        flusher: Flusher,
        queue_limit: int,
        rate: RateLimiter,
        strikes: RateLimiter,
        now: float,
    ) -> None:
        self.client_id = client_id
        self.info = info
        self._outbound = outbound
        self._write = outbound.write
        self._buffered = outbound.buffered
        self._metrics = metrics
        self._flusher = flusher
        self._queue_limit = queue_limit  # bytes allowed in the transport's user-space buffer
        self.rate = rate  # message budget (DESIGN §3.7)
        self.received = 0  # inbound messages (the cluster's per-user rate limit sums them per user)
        self.strikes = strikes  # budget of rate-limit violations before 4029
        self.opened_at = now
        self.last_seen = now  # monotonic time of the last inbound frame (any kind)
        self.pinged_at = 0.0  # monotonic time of the last server ping
        self.principal: Principal | None = None
        self.reconnect_hash: str | None = None  # digest of the token in this connection's welcome
        self.closed = False
        self.close_code: int | None = None
        self.inflight = 0  # async handlers running for this connection
        self.pending: deque[Any] = deque()  # async requests waiting for an inflight slot
        self.tasks: set[asyncio.Task[None]] = set()
        self.expiry_timers: list[asyncio.TimerHandle] = []
        self.batch: list[Frame] = []  # stream frames waiting for this iteration's flush
        self.held: dict[object, Frame] = {}  # conflated frames held while paused, by key
        self.paused = False  # the transport's buffer is above its high-water mark
        self.conflated = 0  # frames replaced by a newer one for the same key
        # Stream batches that may still sit in the transport's user-space buffer, with their
        # payload bytes: on close they count as possibly undelivered (replayed on reconnect: at
        # least once, never a gap). Trimmed to what the buffer can hold (see _backlogged).
        self.unconfirmed: deque[tuple[list[Frame], int]] = deque()
        self._unconfirmed_bytes = 0
        self.allowance = 0  # extra bytes the bound tolerates (a reconnect replay), until drained
        self._pass = -1  # flusher pass of the last direct stream write
        # The bound is checked only while paused (cheaper per send); pausing starts early enough.
        outbound.set_flow_control(min(HIGH_WATER, queue_limit // 2), self.pause, self.resume)

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
        self._write(payload)
        self._metrics.messages_out += 1
        if self.paused and self._buffered() > self._queue_limit + self.allowance:
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def queue_frame(self, frame: Frame) -> None:
        """Deliver a stream frame: written at once if it is this connection's first in the loop
        iteration, else added to the batch the flusher writes in one go (or, while paused and
        conflatable, held with only the newest per key).

        On a closed connection the frame is kept (never written) so that the session saved for
        reconnect knows it was not delivered.
        """
        if self.closed:
            self.batch.append(frame)
            return
        if self.paused and frame.key is not None:
            if frame.key in self.held:
                self.conflated += 1
                self._metrics.conflated += 1
            self.held[frame.key] = frame
            return
        batch = self.batch
        if batch:
            batch.append(frame)
            return
        flusher = self._flusher
        if self._pass == flusher.passes:  # already wrote in this iteration: coalesce the rest
            batch.append(frame)
            flusher.mark(self)
            return
        self._pass = flusher.passes
        if not flusher.scheduled:
            flusher.arm()
        self._outbound.write_frame(frame)
        self._metrics.messages_out += 1
        if self._buffered():
            self._backlogged([frame])
        elif self.unconfirmed:
            self._confirm_all()  # everything so far went to the kernel

    def defer_frame(self, frame: Frame) -> None:
        """Queue a stream frame for the next flush pass, never now: frames that must follow a
        reply still to be written (recovery and latest values after ``subscribed``, replay after
        the welcome)."""
        batch = self.batch
        batch.append(frame)
        if len(batch) == 1 and not self.closed:
            self._flusher.mark(self)

    def flush(self) -> None:
        """Write the batch with one transport write; enforce the outbound bound."""
        batch = self.batch
        if not batch or self.closed:
            return
        self.batch = []
        self._outbound.write_frames(batch)
        metrics = self._metrics
        metrics.messages_out += len(batch)
        metrics.flushes += 1
        metrics.coalesced += len(batch) - 1
        if self._buffered():
            self._backlogged(batch)
        elif self.unconfirmed:
            self._confirm_all()

    def _backlogged(self, frames: list[Frame]) -> None:
        """``frames`` wait in the transport's buffer: track them (a close may lose them) and
        enforce the outbound bound.

        The buffer is FIFO and holds the newest ``buffered()`` bytes written, so a batch followed
        by at least that many payload bytes has left it (frame headers and replies only make the
        buffer hold more): it is dropped here. That keeps ``unconfirmed`` to what the buffer can
        hold even on a transport that never reports empty between writes (the ASGI route's own
        queue, uvloop's end-of-iteration write batching)."""
        size = 0
        for frame in frames:
            size += len(frame.payload)
        unconfirmed = self.unconfirmed
        unconfirmed.append((frames, size))
        total = self._unconfirmed_bytes + size
        buffered = self._buffered()
        while len(unconfirmed) > 1 and total - unconfirmed[0][1] >= buffered:
            total -= unconfirmed.popleft()[1]
        self._unconfirmed_bytes = total
        if buffered > self._queue_limit + self.allowance:
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")

    def _confirm_all(self) -> None:
        self.unconfirmed.clear()
        self._unconfirmed_bytes = 0

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """The transport drained below its low-water mark: release held frames in offset order."""
        self.paused = False
        self.allowance = 0
        if not self._buffered():
            self._confirm_all()
        if self.held and not self.closed:
            held = sorted(self.held.values(), key=_offset)
            self.held.clear()
            was_empty = not self.batch
            self.batch.extend(held)
            if was_empty:
                self._flusher.mark(self)

    def release_held(self, stream: str) -> None:
        """Move ``stream``'s conflated frames into the batch now, before replayed or latest
        frames of that stream are queued behind them (they are older: released later, they would
        arrive out of offset order)."""
        held = self.held
        if not held:
            return
        frames = sorted((f for f in held.values() if f.stream == stream), key=_offset)
        if not frames:
            return
        for frame in frames:
            del held[frame.key]
        was_empty = not self.batch
        self.batch.extend(frames)
        if was_empty and not self.closed:
            self._flusher.mark(self)

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
        """The transport is gone (peer closed, network error): stop all work for it.

        Unsent stream frames stay in ``batch``/``held`` until :meth:`release` so that the
        session saved for reconnect knows which offsets never left the server.
        """
        self.closed = True
        self.cancel_timers()
        for task in self.tasks:
            task.cancel()
        self.pending.clear()

    def unsent_offsets(self) -> dict[str, int]:
        """Per stream, the lowest offset that may not have reached the client: frames still in the
        batch or held, and frames written while the transport's own buffer was not empty."""
        lowest: dict[str, int] = {}
        pending = [frame for batch, _ in self.unconfirmed for frame in batch]
        for frame in (*pending, *self.batch, *self.held.values()):
            if frame.stream is not None and frame.offset < lowest.get(frame.stream, frame.offset + 1):
                lowest[frame.stream] = frame.offset
        return lowest

    def release(self) -> None:
        self.batch.clear()
        self.held.clear()
        self._confirm_all()

    def cancel_timers(self) -> None:
        for timer in self.expiry_timers:
            timer.cancel()
        self.expiry_timers.clear()

    def queued_bytes(self) -> int:
        return self._outbound.buffered()

    def transport_open(self) -> bool:
        """Whether frames written now may still reach the peer (False once the transport itself
        has sent a close frame, e.g. for a framing error it detected)."""
        return self._outbound.is_open()


def _offset(frame: Frame) -> int:
    return frame.offset
