"""A subscription as an async iterator of stream messages, deduplicated by offset.

The client keeps, per stream, the last offset and epoch it accepted. On a reconnect the server
replays what it believes was not delivered, and a few messages may arrive twice (a server-side
close cannot know what the socket had already passed on); :meth:`Subscription.accept` drops every
offset it has already accepted in the same epoch, so the consumer sees each offset once and in
order. A new epoch (the server lost its history, e.g. restarted) resets the position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One ``{type:"data"}`` frame."""

    stream: str
    data: dict[str, Any]
    offset: int
    epoch: str
    timestamp: str


_END: Final = object()


class Subscription:
    """Messages of one stream: ``async for message in subscription``.

    The queue is bounded (``max_queue``): when the consumer falls behind, the client stops
    reading the socket, and the server's slow-consumer policy applies (4008 and a reconnect
    that recovers without a gap). ``gaps`` counts the times the server could not recover
    (``recovered: false``): state derived from this stream should then be refetched.
    """

    def __init__(
        self,
        stream: str,
        params: dict[str, Any],
        max_queue: int,
        unsubscribe: Callable[[str], Awaitable[None]],
    ) -> None:
        self.stream = stream
        self.params = params  # the filter, re-sent on every resubscribe
        self.last_offset: int | None = None  # last offset accepted (recovery starts after it)
        self.epoch: str | None = None
        self.gaps = 0  # recoveries the server refused: messages may be missing
        self.duplicates = 0  # replayed offsets dropped
        self.active = True
        self._queue: asyncio.Queue[object] = asyncio.Queue(max_queue)
        self._unsubscribe = unsubscribe

    def recover_point(self) -> dict[str, Any] | None:
        """``recover`` of a resubscribe: after our own last offset, in our epoch."""
        if self.last_offset is None or self.epoch is None:
            return None
        return {"offset": self.last_offset, "epoch": self.epoch}

    def subscribed(self, reply: dict[str, Any]) -> None:
        """Note a ``subscribed`` reply (or a restored subscription of a welcome)."""
        if reply.get("recovered") is False:
            self.gaps += 1
        epoch = reply.get("epoch")
        if isinstance(epoch, str) and epoch != self.epoch and reply.get("recovered") is not True:
            # Nothing of the old epoch will come back: offsets start again in the new one.
            self.epoch = epoch
            self.last_offset = None

    def accept(self, frame: dict[str, Any]) -> StreamMessage | None:
        """The frame as a message, or None if this offset was already accepted."""
        offset, epoch = frame["offset"], frame["epoch"]
        if epoch == self.epoch and self.last_offset is not None and offset <= self.last_offset:
            self.duplicates += 1
            return None
        self.epoch, self.last_offset = epoch, offset
        return StreamMessage(self.stream, frame["data"], offset, epoch, frame["timestamp"])

    async def put(self, message: StreamMessage) -> None:
        await self._queue.put(message)

    def end(self) -> None:
        """No more messages: iteration stops once the queue is drained."""
        self.active = False
        try:
            self._queue.put_nowait(_END)
        except asyncio.QueueFull:
            self._queue.get_nowait()  # drop the oldest so the end is seen (the client is closing)
            self._queue.put_nowait(_END)

    async def get(self, timeout: float | None = None) -> StreamMessage:
        """The next message; :class:`StopAsyncIteration` after the end."""
        async with asyncio.timeout(timeout):
            item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # later calls end too
            raise StopAsyncIteration
        assert isinstance(item, StreamMessage)
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StreamMessage:
        return await self.get()

    async def unsubscribe(self) -> None:
        """Stop the stream on the server and end this iterator."""
        await self._unsubscribe(self.stream)
