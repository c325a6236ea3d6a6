"""The broker contract: offsets, epochs, history and delivery of every stream (centrifuge's
``broker.go``), implemented by :mod:`~tradewire.streams.broker_memory` (one process) and
:mod:`~tradewire.streams.broker_redis` (a cluster of nodes sharing one Redis).

The streams layer (:class:`~tradewire.streams.broadcast.BroadcastProvider`) talks only to this
contract. It is the broker's :class:`BrokerHandler`: the broker calls ``deliver`` for every
publication this node must fan out to its own connections.

Contract:

- ``publish(stream, data)`` appends the message to the stream's history and assigns it the next
  offset **atomically, per stream, across every node** of the backend; offsets grow by one and
  start at 1 in each epoch. Every node that tracks the stream then gets ``deliver`` for it once,
  in offset order. The memory broker does all of this before ``publish`` returns (and returns how
  many local connections got it); the Redis broker queues it (batched, pipelined, bounded) and
  returns None: delivery comes back through Redis, on every node alike.
- ``position(stream)`` is this node's view: the newest ``(offset, epoch)`` it has delivered.
  Every publication at or below it has been handed to ``deliver``; every later one will be (or
  the epoch changes, announced by ``reset``). Synchronous: coverage bookkeeping relies on it.
- ``history(stream, after)`` returns the entries after ``after`` in the current epoch, oldest first,
  or None when history no longer reaches back; it may run ahead of ``position``. ``latest`` returns
  the newest entry per symbol of streams with latest values. Both are awaitable; a broker with
  ``local_reads`` also answers them synchronously (``history_now``/``latest_now``), which keeps
  ``subscribe`` a synchronous handler in one process.
- ``reset(stream, offset, epoch)`` tells the handler the node's view jumped (a new epoch after a
  Redis restart or outage, or a gap that could not be filled): coverage older than that is void.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tradewire.protocol.messages import Stream
from tradewire.streams.history import Entry

Interest = Callable[[Stream], bool]  # whether this node still has subscribers on a stream


class BrokerHandler(Protocol):
    """What a broker calls back (the streams layer)."""

    def deliver(self, stream: Stream, entry: Entry, exclude_client: str | None) -> int:
        """Fan ``entry`` out to this node's subscribers; returns how many got it. Never awaits."""
        ...

    def reset(self, stream: Stream, offset: int, epoch: str) -> None:
        """The node's position jumped to ``(offset, epoch)`` without delivering what lay between."""
        ...


class Broker(Protocol):
    """Publish, history and per-node delivery of streams (see the module docstring)."""

    local_reads: bool  # history_now/latest_now work (no I/O): subscribe can stay synchronous

    def attach(self, handler: BrokerHandler, interest: Interest) -> None:
        """Set the handler (once, before ``start``) and the test of local interest in a stream."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None) -> int | None:
        """Publish one message (see the contract); never blocks or awaits."""
        ...

    async def publish_wait(
        self, stream: Stream, data: dict[str, Any], exclude_client: str | None = None
    ) -> int:
        """Publish and wait until this node has delivered it (or cannot); local recipients."""
        ...

    def position(self, stream: Stream) -> tuple[int, str]: ...

    async def ready(self, stream: Stream) -> None:
        """Track ``stream`` on this node and wait (bounded) until ``position`` is meaningful."""
        ...

    async def caught_up(self, stream: Stream, offset: int, epoch: str) -> None:
        """Wait (bounded) until this node delivered ``offset`` of ``epoch``, or moved on."""
        ...

    async def history(self, stream: Stream, after: int) -> tuple[list[Entry] | None, int, str]:
        """Entries after ``after`` (None: history does not reach back), with the stream's newest
        offset and epoch at the time of the read."""
        ...

    async def latest(self, stream: Stream) -> dict[str, Entry]:
        """The newest entry per symbol (streams with ``latest_on_subscribe``), current epoch only."""
        ...

    def history_now(self, stream: Stream, after: int) -> list[Entry] | None:
        """``history`` without waiting (only when ``local_reads``)."""
        ...

    def latest_now(self, stream: Stream) -> dict[str, Entry]:
        """``latest`` without waiting (only when ``local_reads``)."""
        ...

    def stats(self, stream: Stream) -> dict[str, Any]:
        """For ``get_stats``: at least ``history`` (entries kept, where known)."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"ready": bool, "backend": str, "degraded": bool, ...}``."""
        ...
