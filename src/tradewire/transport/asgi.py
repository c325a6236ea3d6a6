"""ASGI adapter: the same endpoint, mountable in any FastAPI/Starlette app.

``app.add_api_websocket_route("/ws", server.fastapi_endpoint)`` (FastAPI) or
``WebSocketRoute("/ws", server.fastapi_endpoint)`` (Starlette). The ASGI server does the
framing; this adapter gives the core the same non-blocking outbound contract as the picows engine:
a byte-bounded queue drained by one writer task per connection.

Every close has a deadline (``close_timeout``): if the peer has not gone by then — a client that
stopped reading leaves the writer blocked forever — the endpoint stops and returns, so the
connection is unregistered and its queue freed whatever the peer does.

ASGI itself cannot send pings, see pings or pongs, or drop a socket. Served with
:func:`tradewire.transport.uvicorn_protocols.uvicorn_options` (``tradewire serve`` does), the
uvicorn protocol offers the ``tradewire.transport`` extension (:data:`EXTENSION`) that can: pings
and pongs count as traffic, the keepalive sweep pings quiet clients, the outbound bound counts the
socket's backlog, and the deadline aborts the socket. Under any other ASGI server the endpoint
works without them (clients must then send heartbeats; see docs/PROTOCOL.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from tradewire.core.client_utils import Network, client_info, origin_allowed, reconnect_token
from tradewire.core.connection import Connection
from tradewire.core.frames import Frame
from tradewire.core.lifecycle import ConnectionLifecycle
from tradewire.protocol.codes import CloseCode

_log = structlog.get_logger("tradewire.transport.asgi")
_SEND_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)
EXTENSION = "tradewire.transport"  # scope["extensions"][EXTENSION]["hooks"] -> TransportHooks


class TransportHooks(Protocol):
    """What a cooperating ASGI server offers through the ``tradewire.transport`` extension."""

    failed_code: int | None  # set when the server failed the connection itself (1002, 1007, 1009, 4008)

    def watch(self, on_control: Callable[[], None]) -> None:
        """Call ``on_control`` for each ping or pong received."""
        ...

    def buffered(self) -> int:
        """Bytes waiting in the socket's send buffer."""
        ...

    def ping(self) -> None:
        """Send a protocol ping."""
        ...

    def abort(self) -> None:
        """Drop the socket now."""
        ...


def transport_hooks(scope: Mapping[str, Any]) -> TransportHooks | None:
    """The hooks of the ``tradewire.transport`` extension, if the ASGI server offers it."""
    entry = (scope.get("extensions") or {}).get(EXTENSION)
    hooks = entry.get("hooks") if isinstance(entry, dict) else None
    return hooks


def _closed_write(payload: bytes) -> None:
    """``AsgiOutbound.write`` after ``aclose``: its writer is gone, so a payload is dropped."""


class AsgiOutbound:
    """:class:`~tradewire.core.connection.Outbound` over a Starlette ``WebSocket``."""

    def __init__(
        self,
        websocket: WebSocket,
        hooks: TransportHooks | None = None,
        *,
        close_timeout: float = 5.0,
        on_expire: Callable[[], object] | None = None,
    ) -> None:
        self._ws = websocket
        self._hooks = hooks
        self._queue: deque[bytes] = deque()
        self._bytes = 0  # bytes queued or in ``send``: not yet handed to the ASGI server
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._drain())
        self.write: Callable[[bytes], None] = self._enqueue
        self._high_water = 64 * 1024
        self._paused = False
        self._on_pause: Callable[[], None] | None = None
        self._on_resume: Callable[[], None] | None = None
        self._close_timeout = close_timeout
        self._on_expire = on_expire  # stops the endpoint when there are no hooks to abort with
        self._deadline: asyncio.TimerHandle | None = None
        self.expired = False  # the close deadline passed with the peer still connected

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
        hooks = self._hooks
        return self._bytes if hooks is None else self._bytes + hooks.buffered()

    def close(self, code: int, reason: str) -> None:
        if self._close is not None:
            return
        self._close = (code, reason)
        self._deadline = asyncio.get_running_loop().call_later(self._close_timeout, self._expire)
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
        """A protocol ping through the extension; plain ASGI cannot send one (the server's own
        keepalive, if any, covers it)."""
        if self._hooks is not None:
            self._hooks.ping()

    def is_open(self) -> bool:
        return self._close is None and self._ws.client_state is WebSocketState.CONNECTED

    def _expire(self) -> None:
        """The close deadline passed and the endpoint is still running: drop the peer."""
        self._deadline = None
        self.expired = True
        _log.info("asgi.close_deadline", code=self._close[0] if self._close else None)
        if self._hooks is not None:
            self._hooks.abort()  # the ASGI server sees the socket go and sends websocket.disconnect
        elif self._on_expire is not None:
            self._on_expire()

    async def aclose(self, flush_timeout: float = 0.0) -> None:
        """Stop the writer task, first letting it flush for up to ``flush_timeout`` seconds."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        try:
            if flush_timeout > 0:
                await asyncio.wait([self._writer], timeout=flush_timeout)
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                _log.debug("asgi.writer_cancelled")
        finally:
            # Cycles through bound methods (self.write → self; self → the connection's pause and
            # resume → the connection → self): broken here, so the pair is freed on its last
            # reference. The connection is closed by now and writes nothing more.
            self.write = _closed_write
            self._on_pause = self._on_resume = None

    async def _drain(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    payload = self._queue[0]
                    # Counted until ``send`` returns: while the ASGI server waits for its socket
                    # to be writable, the frame is in neither buffer, yet not delivered.
                    await self._ws.send_text(payload.decode())
                    self._queue.popleft()
                    self._bytes -= len(payload)
                    if self._paused and self._bytes <= self._high_water // 4:
                        self._resume()
                self._resume()  # drained: everything queued was handed to the ASGI server
                if self._hooks is not None and self._hooks.buffered():
                    # uvloop sends what was written at the end of the loop iteration: look again
                    # after it, so that the connection learns its frames reached the kernel.
                    await asyncio.sleep(0)
                    if not self._queue:
                        self._resume()
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
        close_timeout: float = 5.0,
    ) -> None:
        self._lifecycle = lifecycle
        self._max_message_size = max_message_size
        self._allowed_origins = allowed_origins
        self._trusted_proxies = trusted_proxies
        self._close_timeout = close_timeout

    async def __call__(self, websocket: WebSocket) -> None:
        if not origin_allowed(websocket.headers.get("origin"), self._allowed_origins):
            self._lifecycle.reject("origin")
            await websocket.close(code=CloseCode.POLICY_VIOLATION)  # before accept: HTTP 403
            return
        await websocket.accept()
        task = asyncio.current_task()
        assert task is not None
        hooks = transport_hooks(websocket.scope)
        outbound = AsgiOutbound(websocket, hooks, close_timeout=self._close_timeout, on_expire=task.cancel)
        conn = await self._open(websocket, outbound)
        if conn is None:  # refused: the lifecycle already asked for a 1013/1001 close
            await outbound.aclose(flush_timeout=1.0)
            return
        if hooks is not None:
            hooks.watch(partial(self._lifecycle.touch, conn))
        try:
            await self._receive_loop(websocket, conn, hooks)
        except WebSocketDisconnect:
            _log.debug("asgi.disconnected", client_id=conn.client_id)
        except asyncio.CancelledError:
            if not outbound.expired or task.uncancel() > 0:
                raise
            _log.info("asgi.released_after_close_deadline", client_id=conn.client_id)
        finally:
            self._lifecycle.closed(conn)
            await outbound.aclose()

    async def _open(self, websocket: WebSocket, outbound: AsgiOutbound) -> Connection | None:
        peer = websocket.client.host if websocket.client else "unknown"
        info = client_info(peer, websocket.headers, websocket.url.path, self._trusted_proxies)
        token = reconnect_token(websocket.headers, websocket.url.query)
        if token is None:
            return self._lifecycle.open(outbound, info)
        return await self._lifecycle.open_resuming(outbound, info, token)

    async def _receive_loop(
        self, websocket: WebSocket, conn: Connection, hooks: TransportHooks | None
    ) -> None:
        lifecycle = self._lifecycle
        handle = lifecycle.router.handle
        while True:
            event = await websocket.receive()
            if event["type"] == "websocket.disconnect":
                if hooks is not None and hooks.failed_code is not None:
                    lifecycle.failed(conn, hooks.failed_code)
                return
            text = event.get("text")
            if text is None:
                conn.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
                continue
            data = text.encode()
            if len(data) > self._max_message_size:
                conn.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            elif not conn.closed:
                handle(conn, data)
