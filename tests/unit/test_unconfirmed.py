"""What a connection counts as possibly undelivered, against a model of a FIFO send buffer.

The reconnect replay is computed from :meth:`Connection.unsent_offsets`; it must never leave out
a stream frame whose bytes are still in the transport's buffer (that would be a gap after a
dropped link), whatever mix of stream frames, replies and partial drains came before.
"""

from __future__ import annotations

import asyncio
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_core import MemoryOutbound, make_conn
from tradewire import ManualClock
from tradewire.core.frames import Frame, text_frame
from tradewire.metrics import ServerMetrics

STREAM = "market_data"


class FifoOutbound(MemoryOutbound):
    """A send buffer that holds the wire bytes of what was written, oldest first, and lets the
    test drain any number of them (a kernel taking part of the buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.held: deque[list[int]] = deque()  # [offset or 0 for a reply, bytes still held]

    def write(self, payload: bytes) -> None:  # a reply
        self.frames.append({"reply": len(payload)})
        self.held.append([0, len(text_frame(payload))])

    def write_frames(self, frames: list[Frame]) -> None:
        self.writes += 1
        for frame in frames:
            self.frames.append({"offset": frame.offset})
            self.held.append([frame.offset, len(frame.wire)])

    def buffered(self) -> int:
        return sum(size for _, size in self.held)

    def drain(self, size: int) -> None:
        while size and self.held:
            taken = min(size, self.held[0][1])
            self.held[0][1] -= taken
            size -= taken
            if not self.held[0][1]:
                self.held.popleft()

    def oldest_held_offset(self) -> int | None:
        return next((offset for offset, _ in self.held if offset), None)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("data"), st.integers(1, 400)),  # a stream frame of this payload size
        st.tuples(st.just("reply"), st.integers(1, 400)),
        st.tuples(st.just("drain"), st.integers(1, 2000)),
        st.tuples(st.just("tick"), st.just(0)),  # the next loop iteration: flush pass
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_every_frame_still_in_the_buffer_is_counted_unsent(ops: list[tuple[str, int]]) -> None:
    async def run() -> None:
        out = FifoOutbound()
        conn, _ = make_conn(ManualClock(), ServerMetrics(), out, queue_limit=1 << 30)
        offset = 0
        for kind, size in ops:
            writes = out.writes
            if kind == "data":
                offset += 1
                conn.queue_frame(Frame(b"x" * size, offset, None, STREAM))
            elif kind == "reply":
                conn.send(b"r" * size)
            elif kind == "drain":
                out.drain(size)
            else:
                await asyncio.sleep(0)
            oldest = out.oldest_held_offset()
            unsent = conn.unsent_offsets().get(STREAM)
            if oldest is not None:
                assert unsent is not None and unsent <= oldest, (oldest, unsent)
            assert conn._unconfirmed_bytes == sum(size for _, size in conn.unconfirmed)
            if out.writes > writes and len(conn.unconfirmed) > 1:
                # bounded: after a write, all but the oldest kept batch fit in the buffer
                assert conn._unconfirmed_bytes - conn.unconfirmed[0][1] < out.buffered()

    asyncio.run(run())
