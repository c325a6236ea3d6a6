"""Encode once, fan out bytes (DESIGN §5.1), over a :class:`~tradewire.streams.broker.Broker`.

``publish(stream, data)`` hands the message to the broker, which assigns the stream's next offset,
encodes the envelope once, keeps it in the stream's history and calls :meth:`deliver` on every
node that tracks the stream (in one process: before ``publish`` returns). ``deliver`` queues the
same :class:`Frame` object to every matching local connection. Nothing is awaited and nothing is
written here: connections batch their frames and the flusher writes each batch with one transport
write in the next loop iteration. Order per stream is the offset order; a client gets each offset
at most once.

Recovery (``recover`` / ``replay``) queues history above what the connection may already hold.
With a broker whose history is local (memory) it runs inline. With a remote history (Redis) the
subscribe path first :meth:`fetch`\\ es what it needs — and while it waits, the publications this
node delivers on that stream are *held* (kept in a list per stream, once per publication, not per
connection), so that history and held publications together cover everything up to the node's
position when the subscription is finally registered: no gap and no duplicate at the seam
(centrifuge's recovery merge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tradewire.clock import Clock
from tradewire.metrics import ServerMetrics
from tradewire.protocol.messages import Stream
from tradewire.streams.broker import Broker
from tradewire.streams.catalog import CATALOG, StreamSpec
from tradewire.streams.history import Entry
from tradewire.streams.subscriptions import Coverage, Subscription, SubscriptionManager, selection


@dataclass(slots=True)
class Fetched:
    """What a subscribe or reconnect read from a remote history, plus what was held meanwhile."""

    stream: Stream
    history: list[Entry] | None = None  # entries after the asked offset (None: not reaching back)
    epoch: str = ""  # epoch of ``history``
    latest: dict[str, Entry] | None = None
    held: list[Entry] = field(default_factory=list)  # delivered on this node since the fetch began
    read: bool = False  # history and latest values were read
    valid: bool = True  # False once the node's view of the stream was reset after the read


class BroadcastProvider:
    """Fan-out of every stream on this node, and recovery from the broker's history."""

    def __init__(
        self,
        subscriptions: SubscriptionManager,
        metrics: ServerMetrics,
        clock: Clock,
        broker: Broker,
    ) -> None:
        self._subscriptions = subscriptions
        self._metrics = metrics
        self._clock = clock
        self.broker = broker
        self._holds: dict[Stream, list[Fetched]] = {}  # fetches in progress, by stream
        broker.attach(self, self._interested)

    def publish(self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None) -> int:
        """Publish one message; returns the local connections it was queued to (0 when the broker
        delivers later, through Redis)."""
        return self.broker.publish(stream, data, exclude_client) or 0

    def deliver(self, stream: Stream, entry: Entry, exclude_client: str | None) -> int:
        """Queue ``entry``'s frame to every matching local connection (the broker's callback)."""
        if self._holds:
            for fetched in self._holds.get(stream, ()):
                fetched.held.append(entry)
        frame = entry.frame
        data = entry.data
        frame.wire  # noqa: B018 - build the wire form once, before the per-connection loop
        delivered = 0
        for sub in self._subscriptions.recipients(stream, data.get("symbol")):
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

    def reset(self, stream: Stream, offset: int, epoch: str) -> None:
        """The node's view jumped: coverage from before is void, fetches in flight are stale."""
        self._subscriptions.rebase(stream, offset)
        for fetched in self._holds.get(stream, ()):
            if fetched.read:
                fetched.valid = False  # its history belongs to the old view
            else:
                fetched.held.clear()  # its history will be read in the new view

    def position(self, stream: Stream) -> tuple[int, str]:
        """The stream's current (newest delivered on this node) offset and its epoch."""
        return self.broker.position(stream)

    def _interested(self, stream: Stream) -> bool:
        return self._subscriptions.count(stream) > 0 or stream in self._holds

    # ------------------------------------------------------------------ local history (memory)
    def send_latest(self, sub: Subscription, floor: int = 0) -> int:
        """Queue the last message per matching symbol to a new subscriber; returns how many.

        Only messages above ``floor`` (what the connection may already hold, see
        :meth:`SubscriptionManager.coverage`): an older one would arrive after a newer offset.
        """
        return self._queue_latest(
            sub, self.broker.latest_now(sub.stream), floor, self.position(sub.stream)[0]
        )

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
        position, current = self.position(sub.stream)
        floor = _recovery_floor(sub, after_offset, epoch, position, current, prior)
        if floor is None:
            return False
        return self.replay(sub, floor, epoch)

    def replay(self, sub: Subscription, after_offset: int, epoch: str) -> bool:
        """Queue the stream's messages after ``after_offset`` that match ``sub``'s filter.

        False (nothing queued) when the epoch differs or history no longer reaches back.
        """
        position, current = self.position(sub.stream)
        if epoch != current:
            return False
        if after_offset >= position:
            return True  # nothing missed (no read: a remote history is not readable inline)
        entries = self.broker.history_now(sub.stream, after_offset)
        if entries is None:
            return False
        _queue_entries(sub, entries, after_offset, position)
        return True

    # ------------------------------------------------------------------ remote history (Redis)
    async def fetch(self, stream: Stream, after: int | None, latest: bool) -> Fetched:
        """Read what a subscription needs (history after ``after``, latest values) while holding
        this node's deliveries on ``stream``; end with :meth:`release` (always)."""
        fetched = Fetched(stream)
        self._holds.setdefault(stream, []).append(fetched)
        await self.broker.ready(stream)
        fetched.read = True
        if after is not None:
            entries, newest, epoch = await self.broker.history(stream, after)
            fetched.history, fetched.epoch = entries, epoch
            await self.broker.caught_up(stream, newest, epoch)  # a client from a faster node
        if latest:
            fetched.latest = await self.broker.latest(stream)
        return fetched

    def release(self, fetched: Fetched) -> None:
        holds = self._holds.get(fetched.stream)
        if holds is not None and fetched in holds:
            holds.remove(fetched)
            if not holds:
                del self._holds[fetched.stream]

    def recover_fetched(
        self, sub: Subscription, fetched: Fetched, after_offset: int, epoch: str, prior: Coverage | None
    ) -> bool:
        """:meth:`recover` from a :meth:`fetch`: history, then what was held, up to the position."""
        position, current = self.position(sub.stream)
        floor = _recovery_floor(sub, after_offset, epoch, position, current, prior)
        if floor is None or not fetched.valid or fetched.history is None or fetched.epoch != current:
            return False
        entries = fetched.history
        newest = entries[-1].offset if entries else after_offset
        if newest < position:  # history was read before the node delivered these: held has them
            extra = [e for e in fetched.held if e.offset > newest]
            if not extra or extra[0].offset != newest + 1 or extra[-1].offset < position:
                return False  # a gap at the seam: never claim it as recovered
            entries = entries + extra
        _queue_entries(sub, entries, floor, position)
        return True

    def send_latest_fetched(self, sub: Subscription, fetched: Fetched, floor: int) -> int:
        """:meth:`send_latest` from a :meth:`fetch` (held publications are newer: they win)."""
        position, current = self.position(sub.stream)
        if not fetched.valid or fetched.latest is None:
            return 0
        latest = {symbol: entry for symbol, entry in fetched.latest.items() if entry.epoch == current}
        for entry in fetched.held:
            symbol = entry.data.get("symbol")
            if isinstance(symbol, str):
                latest[symbol] = entry
        return self._queue_latest(sub, latest, floor, position)

    def _queue_latest(self, sub: Subscription, latest: dict[str, Entry], floor: int, position: int) -> int:
        if not latest:
            return 0
        symbols = sub.filter.symbols
        frames = sorted(
            (
                entry.frame
                for symbol, entry in latest.items()
                if floor < entry.offset <= position and (symbols is None or symbol in symbols)
            ),
            key=_frame_offset,
        )
        sub.conn.release_held(sub.stream.value)
        for frame in frames:
            sub.conn.defer_frame(frame)
        return len(frames)

    def stats(self, stream: Stream) -> dict[str, Any]:
        offset, epoch = self.position(stream)
        return {"offset": offset, "epoch": epoch, **self.broker.stats(stream)}

    def spec(self, stream: Stream) -> StreamSpec:
        return CATALOG[stream]


def _recovery_floor(
    sub: Subscription, after: int, epoch: str, position: int, current: str, prior: Coverage | None
) -> int | None:
    """Above which offset recovery must replay, or None when it cannot be truthful (see
    :meth:`BroadcastProvider.recover`)."""
    if epoch != current or after > position:
        return None
    if prior is not None and prior.floor > after:
        if prior.start > after or prior.selection != selection(sub.filter):
            return None
        return prior.floor
    return after


def _queue_entries(sub: Subscription, entries: list[Entry], above: int, upto: int) -> None:
    """Defer the entries in ``(above, upto]`` that match ``sub`` (after its held frames)."""
    symbols, flt, conn = sub.filter.symbols, sub.filter, sub.conn
    conn.release_held(sub.stream.value)
    replayed = 0
    for entry in entries:
        if entry.offset <= above:
            continue
        if entry.offset > upto:
            break
        data = entry.data
        if (symbols is None or data.get("symbol") in symbols) and flt.matches(data):
            conn.defer_frame(entry.frame)
            replayed += len(entry.frame.payload)
    conn.allowance += replayed  # a backlog written at once must not count as a slow consumer


def _frame_offset(frame: Any) -> int:
    return int(frame.offset)
