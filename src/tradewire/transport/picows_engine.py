"""The default standalone WebSocket engine, on picows.

Four steps per frame, all inside picows' ``on_ws_frame`` callback: copy the payload out of the
receive buffer (a ``WSFrame`` must never outlive the callback), assemble fragments, then hand the
complete message to the lifecycle, which routes it; replies are written back synchronously.
Origin checks and path routing happen in the listener factory, before the upgrade (403/404).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import structlog
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from tradewire.core.client_utils import Network, client_info, origin_allowed, reconnect_token
from tradewire.core.connection import Connection
from tradewire.core.frames import Frame
from tradewire.core.lifecycle import ConnectionLifecycle
from tradewire.protocol.codes import CloseCode

_log = structlog.get_logger("tradewire.transport.picows")
CLOSE_TIMEOUT = 5.0
MAX_EARLY_MESSAGES = 64
# picows allocates this per connection up front (default 16 KiB) and grows it for bigger frames;
# client messages are small, so 4 KiB keeps idle connections cheap.
READ_BUFFER_INIT = 4096
_DATA_FRAMES = (WSMsgType.TEXT, WSMsgType.BINARY)


def _abort(transport: WSTransport) -> None:
    if not transport.is_disconnected:
        transport.disconnect(graceful=False)


class PicowsOutbound:
    """:class:`~tradewire.core.connection.Outbound` over a picows transport."""

    __slots__ = ("_raw", "_transport", "write")

    def __init__(self, transport: WSTransport) -> None:
        self._transport = transport
        self._raw = transport.underlying_transport
        self.write: Callable[[bytes], None] = partial(transport.send, WSMsgType.TEXT)

    def write_frame(self, frame: Frame) -> None:
        self._raw.write(frame.wire)

    def write_frames(self, frames: list[Frame]) -> None:
        raw = self._raw
        if len(frames) == 1:
            raw.write(frames[0].wire)
        else:
            raw.write(b"".join([frame.wire for frame in frames]))

    def buffered(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_flow_control(
        self, high_water: int, on_pause: Callable[[], None], on_resume: Callable[[], None]
    ) -> None:
        """picows reports backpressure to the listener (``pause_writing``), which calls the connection."""
        self._raw.set_write_buffer_limits(high=high_water)

    def close(self, code: int, reason: str) -> None:
        """Close frame, then a graceful disconnect that flushes what is queued before it.

        A client that has stopped reading never lets that flush finish, so the connection is
        aborted after ``CLOSE_TIMEOUT`` seconds whatever happens.
        """
        transport = self._transport
        if transport.is_disconnected:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(code, reason.encode())  # type: ignore[arg-type]
        transport.disconnect(graceful=True)
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, _abort, transport)

    def ping(self) -> None:
        self._transport.send_ping()

    def is_open(self) -> bool:
        return not self._transport.is_disconnected


class _Listener(WSListener):
    """One connection's picows callbacks."""

    __slots__ = ("_conn", "_early", "_engine", "_fragments", "_gone", "_handle", "_request", "_resuming")

    def __init__(self, engine: PicowsEngine, request: WSUpgradeRequest) -> None:
        self._engine = engine
        self._handle = engine.router.handle
        self._request = request
        self._conn: Connection | None = None
        self._fragments: bytearray | None = None
        self._early: list[bytes] | None = None  # messages received while a session is restored
        self._resuming: asyncio.Task[None] | None = None
        self._gone = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        engine = self._engine
        peer = transport.underlying_transport.get_extra_info("peername")
        path, _, query = self._request.path.decode("latin-1").partition("?")
        headers = self._request.headers
        info = client_info(str(peer[0]) if peer else "unknown", headers, path, engine.trusted_proxies)
        token = reconnect_token(headers, query)
        if token is None:
            self._conn = engine.lifecycle.open(PicowsOutbound(transport), info)
        else:
            self._early = []
            resume = engine.lifecycle.open_resuming(PicowsOutbound(transport), info, token)
            self._resuming = asyncio.get_running_loop().create_task(self._resume(resume))

    async def _resume(self, resume: Coroutine[Any, Any, Connection | None]) -> None:
        conn = await resume
        early, self._early = self._early or [], None
        if conn is None:
            return
        if self._gone:
            self._engine.lifecycle.closed(conn)
            return
        self._conn = conn
        for data in early:
            self._handle(conn, data)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        conn = self._conn
        if conn is None:
            self._hold(frame)
            return
        msg_type = frame.msg_type
        if msg_type in _DATA_FRAMES:
            if frame.fin:
                self._handle(conn, frame.get_payload_as_bytes())
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
        elif msg_type == WSMsgType.CONTINUATION:
            self._continue(conn, frame)
        elif msg_type == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        else:  # PING (auto-answered by picows) or PONG
            self._engine.lifecycle.touch(conn)

    def _hold(self, frame: WSFrame) -> None:
        """Keep messages that arrive while the session is being restored (bounded)."""
        early = self._early
        if (
            early is not None
            and frame.msg_type in _DATA_FRAMES
            and frame.fin
            and len(early) < MAX_EARLY_MESSAGES
        ):
            early.append(frame.get_payload_as_bytes())

    def _continue(self, conn: Connection, frame: WSFrame) -> None:
        fragments = self._fragments
        if fragments is None:
            conn.close(CloseCode.POLICY_VIOLATION, "continuation without a first frame")
            return
        fragments += frame.get_payload_as_memoryview()
        if len(fragments) > self._engine.max_message_size:
            self._fragments = None
            conn.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        if frame.fin:
            self._fragments = None
            self._handle(conn, bytes(fragments))

    def pause_writing(self) -> None:
        if self._conn is not None:
            self._conn.pause()

    def resume_writing(self) -> None:
        if self._conn is not None:
            self._conn.resume()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._gone = True
        if self._conn is not None:
            self._engine.lifecycle.closed(self._conn)
            self._conn = None


class PicowsEngine:
    """Serves the WebSocket endpoint on its own port."""

    def __init__(
        self,
        lifecycle: ConnectionLifecycle,
        *,
        path: str,
        max_message_size: int,
        allowed_origins: frozenset[str],
        trusted_proxies: tuple[Network, ...],
    ) -> None:
        self.lifecycle = lifecycle
        self.router = lifecycle.router
        self.path = path
        self.max_message_size = max_message_size
        self.allowed_origins = allowed_origins
        self.trusted_proxies = trusted_proxies
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Listen; ``reuse_port`` lets several processes share the port (SO_REUSEPORT)."""
        self._server = await ws_create_server(
            self._listener_factory(),
            host,
            port,
            max_frame_size=self.max_message_size,
            websocket_handshake_timeout=10,
            enable_auto_pong=True,
            backlog=4096,
            read_buffer_init_size=READ_BUFFER_INIT,
            reuse_port=reuse_port or None,
        )
        _log.info("transport.listening", host=host, port=self.port, path=self.path)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _listener_factory(
        self,
    ) -> Callable[[WSUpgradeRequest], WSListener | WSUpgradeResponseWithListener | None]:
        def factory(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
            target = request.path.decode("latin-1").split("?", 1)[0]
            if target != self.path:
                return None  # 404
            if not origin_allowed(request.headers.get("origin"), self.allowed_origins):
                self.lifecycle.reject("origin")
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(403, b"origin not allowed"), None
                )
            return _Listener(self, request)

        return factory
