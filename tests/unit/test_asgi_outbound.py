"""The ASGI adapter's outbound queue: bounded, non-blocking, closes 4008 behind a stuck send."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from starlette.websockets import WebSocket

from tests.unit.test_core import make_conn
from tradewire import ManualClock
from tradewire.core.frames import Frame
from tradewire.metrics import ServerMetrics
from tradewire.transport.asgi import AsgiOutbound


class StuckWebSocket:
    """A peer that accepts the first frame and then never lets another send complete."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed_with: int | None = None
        self.release = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        if len(self.sent) > 1:
            await self.release.wait()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code


async def test_queue_over_bound_closes_4008_without_blocking_the_sender() -> None:
    peer = StuckWebSocket()
    outbound = AsgiOutbound(cast(WebSocket, peer))
    clock, metrics = ManualClock(), ServerMetrics()
    conn, _ = make_conn(clock, metrics, outbound, queue_limit=10_000)
    payload = b'{"pad":"' + b"x" * 1000 + b'"}'
    sent: list[Any] = []
    for _ in range(30):
        sent.append(conn.send(payload))  # returns at once even though the peer is stuck
        await asyncio.sleep(0)
    assert conn.close_code == 4008
    assert False in sent
    assert metrics.closes[4008] == 1
    for _ in range(5):
        await asyncio.sleep(0)
    assert peer.closed_with == 4008
    assert outbound.buffered() == 0
    conn.queue_frame(Frame(b"{}", 1))
    await outbound.aclose()


async def test_frames_are_sent_in_order() -> None:
    peer = StuckWebSocket()
    peer.release.set()
    outbound = AsgiOutbound(cast(WebSocket, peer))
    outbound.write_frames([Frame(b'{"n":1}', 1), Frame(b'{"n":2}', 2)])
    outbound.write(b'{"n":3}')
    for _ in range(5):
        await asyncio.sleep(0)
    assert peer.sent == ['{"n":1}', '{"n":2}', '{"n":3}']
    outbound.close(1000, "bye")
    for _ in range(3):
        await asyncio.sleep(0)
    assert peer.closed_with == 1000
    await outbound.aclose()


class WaitingWebSocket:
    """A peer whose send waits until released, as uvicorn's ``send`` waits for its socket to be
    writable again after a pause."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.writable = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.writable.wait()
        self.sent.append(text)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        return None


async def test_a_frame_waiting_in_send_still_counts_as_buffered() -> None:
    """While the ASGI server holds a frame in ``send`` (socket paused), the frame is neither in
    our queue nor in the socket's buffer: it must still count as buffered, or the connection
    drops its batch from ``unconfirmed`` and a close then would not replay it (a gap)."""
    peer = WaitingWebSocket()
    outbound = AsgiOutbound(cast(WebSocket, peer))
    conn, _ = make_conn(ManualClock(), ServerMetrics(), outbound, queue_limit=1 << 20)
    first = b'{"type":"data","stream":"market_data","offset":1}'
    conn.queue_frame(Frame(first, 1, None, "market_data"))
    for _ in range(3):
        await asyncio.sleep(0)  # flushed; the writer took it and waits in send
    assert peer.sent == []
    assert outbound.buffered() == len(first)
    conn.queue_frame(Frame(b'{"type":"data","stream":"market_data","offset":2}', 2, None, "market_data"))
    await asyncio.sleep(0)  # flushed behind it
    assert conn.unsent_offsets() == {"market_data": 1}  # a close now must replay from 1
    peer.writable.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(peer.sent) == 2
    assert outbound.buffered() == 0
    await outbound.aclose()
