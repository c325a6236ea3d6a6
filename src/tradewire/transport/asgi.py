"""ASGI adapter: the same endpoint, mountable in any FastAPI/Starlette app.

``app.add_api_websocket_route("/ws", server.fastapi_endpoint)`` (FastAPI) or
``WebSocketRoute("/ws", server.fastapi_endpoint)`` (Starlette). The ASGI server does the
framing; this adapter gives the core the same non-blocking outbound contract as the picows engine:
a byte-bounded queue drained by one writer task per connection. ASGI has no way to send protocol
pings, so keepalive pings are left to the ASGI server (uvicorn pings by itself); the idle timeout
still applies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from tradewire.core.client_utils import Network, client_info, origin_allowed, reconnect_token
from tradewire.core.connection import Connection
from tradewire.core.frames import Frame
from tradewire.core.lifecycle import ConnectionLifecycle
from tradewire.protocol.codes import CloseCode

_log = structlog.get_logger("tradewire.transport.asgi")
_SEND_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)


class AsgiOutbound:
    """:class:`~tradewire.core.connection.Outbound` over a Starlette ``WebSocket``."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._queue: deque[bytes] = deque()
        self._bytes = 0  # bytes queued and not yet handed to the ASGI server
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._drain())
        self.write: Callable[[bytes], None] = self._enqueue
        self._high_water = 64 * 1024
        self._paused = False
        self._on_pause: Callable[[], None] | None = None
        self._on_resume: Callable[[], None] | None = None

    def set_flow_control(
        self, high_water: int, on_pause: Callable[[], None], on_resume: Callable[[], None]
    ) -> None:
        self._high_water = high_water
        self._on_pause = on_pause
        self._on_resume = on_resume

    def _enqueue(self, payload: bytes) -> None:
        if self._close is not None:
            return
        self._queue.append(payload)
        self._bytes += len(payload)
        self._wake.set()
        if self._bytes > self._high_water and not self._paused and self._on_pause is not None:
            self._paused = True
            self._on_pause()

    def write_frame(self, frame: Frame) -> None:
        self._enqueue(frame.payload)

    def write_frames(self, frames: list[Frame]) -> None:
        for frame in frames:
            self._enqueue(frame.payload)

    def buffered(self) -> int:
        return self._bytes

    def close(self, code: int, reason: str) -> None:
        if self._close is not None:
            return
        self._close = (code, reason)
        if code == CloseCode.SLOW_CONSUMER:
            # The writer is stuck behind a client that does not read: drop what is queued and
            # send the close frame from a fresh task, after what the ASGI server already holds.
            self._queue.clear()
            self._bytes = 0
            self._writer.cancel()
            self._writer = asyncio.get_running_loop().create_task(self._send_close())
        else:
            self._wake.set()

    def ping(self) -> None:
        """ASGI cannot send protocol pings; the ASGI server's own keepalive covers it."""

    def is_open(self) -> bool:
        return self._close is None and self._ws.client_state is WebSocketState.CONNECTED

    async def aclose(self, flush_timeout: float = 0.0) -> None:
        """Stop the writer task, first letting it flush for up to ``flush_timeout`` seconds."""
        if flush_timeout > 0:
            await asyncio.wait([self._writer], timeout=flush_timeout)
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            _log.debug("asgi.writer_cancelled")

    async def _drain(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    payload = self._queue.popleft()
                    self._bytes -= len(payload)
                    await self._ws.send_text(payload.decode())
                    if self._paused and self._bytes <= self._high_water // 4:
                        self._resume()
                self._resume()  # drained: everything queued was handed to the ASGI server
                if self._close is not None:
                    await self._send_close()
                    return
        except _SEND_ERRORS as exc:
            # The peer vanished mid-send; the receive loop sees the disconnect and cleans up.
            _log.debug("asgi.writer_stopped", error=type(exc).__name__)

    def _resume(self) -> None:
        self._paused = False
        if self._on_resume is not None:
            self._on_resume()

    async def _send_close(self) -> None:
        assert self._close is not None
        try:
            await self._ws.close(code=self._close[0], reason=self._close[1])
        except _SEND_ERRORS as exc:
            _log.debug("asgi.close_failed", error=type(exc).__name__)


class AsgiEndpoint:
    """A callable ASGI WebSocket endpoint bound to a lifecycle."""

    def __init__(
        self,
        lifecycle: ConnectionLifecycle,
        *,
        max_message_size: int,
        allowed_origins: frozenset[str],
        trusted_proxies: tuple[Network, ...],
    ) -> None:
        self._lifecycle = lifecycle
        self._max_message_size = max_message_size
        self._allowed_origins = allowed_origins
        self._trusted_proxies = trusted_proxies

    async def __call__(self, websocket: WebSocket) -> None:
        if not origin_allowed(websocket.headers.get("origin"), self._allowed_origins):
            self._lifecycle.reject("origin")
            await websocket.close(code=CloseCode.POLICY_VIOLATION)  # before accept: HTTP 403
            return
        await websocket.accept()
        peer = websocket.client.host if websocket.client else "unknown"
        info = client_info(peer, websocket.headers, websocket.url.path, self._trusted_proxies)
        outbound = AsgiOutbound(websocket)
        token = reconnect_token(websocket.headers, websocket.url.query)
        if token is None:
            conn = self._lifecycle.open(outbound, info)
        else:
            conn = await self._lifecycle.open_resuming(outbound, info, token)
        if conn is None:  # at capacity: the lifecycle already asked for a 1013 close
            await outbound.aclose(flush_timeout=1.0)
            return
        try:
            await self._receive_loop(websocket, conn)
        except WebSocketDisconnect:
            _log.debug("asgi.disconnected", client_id=conn.client_id)
        finally:
            self._lifecycle.closed(conn)
            await outbound.aclose()

    async def _receive_loop(self, websocket: WebSocket, conn: Connection) -> None:
        while True:
            event = await websocket.receive()
            if event["type"] == "websocket.disconnect":
                return
            data = event.get("bytes") or (event.get("text") or "").encode()
            if len(data) > self._max_message_size:
                conn.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            elif not conn.closed:
                self._lifecycle.router.handle(conn, data)
