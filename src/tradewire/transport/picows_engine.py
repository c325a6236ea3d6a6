"""The default standalone WebSocket engine, on picows.

Four steps per frame, all inside picows' ``on_ws_frame`` callback: copy the payload out of the
receive buffer (a ``WSFrame`` must never outlive the callback), check it against RFC 6455,
assemble fragments, then hand the complete message to the lifecycle, which routes it; replies are
written back synchronously. Origin checks and path routing happen in the listener factory, before
the upgrade (403/404).

What picows checks itself (and answers with its own close frame): opcodes, masking, control
frame length and fragmentation, frame size (``max_frame_size``, 1009), close codes below 3000 and
close reasons that are not UTF-8. What this module adds, because picows leaves it to the
application: reserved bits (1002), fragmentation order (1002), UTF-8 of text messages (1007),
binary frames (1003), close codes picows lets through (0, 1006, 5000 and up: 1002), and pings —
auto-pong is off so that a ping counts as traffic and its pong stays under the outbound bound
(4008 for a client that never reads them).

The hot path is one complete text frame: the checks it adds are three bit reads and
``bytes.isascii()`` (no allocation); only non-ASCII text pays for a full UTF-8 decode.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from enum import Enum
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
from tradewire.protocol.codes import CloseCode, valid_close_code

_log = structlog.get_logger("tradewire.transport.picows")
# picows allocates this per connection up front (default 16 KiB) and grows it for bigger frames;
# client messages are small, so 4 KiB keeps idle connections cheap.
READ_BUFFER_INIT = 4096
# picows reads into a per-connection buffer that doubles whenever a read fills it and never shrinks,
# so a client that sends fast grows it up to the kernel's receive buffer (Linux autotunes that up to
# tcp_rmem[2], 32 MiB here): measured +4.8 MiB per connection for a 10 MB burst of pings. Capping
# SO_RCVBUF caps each read, hence the buffer (a few hundred KiB at most); clients send small
# messages, so the inbound window this leaves is plenty.
RECEIVE_BUFFER = 64 * 1024
MAX_CLOSE_REASON = 123  # bytes: a close frame's payload is at most 125 (RFC 6455 §5.5)
_TEXT, _BINARY, _CONT = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
_PING, _PONG, _CLOSE = WSMsgType.PING, WSMsgType.PONG, WSMsgType.CLOSE
# A frame held while a session is restored: (type, fin, any reserved bit, payload copy).
_Held = tuple[WSMsgType, bool, bool, bytes]


def _abort(transport: WSTransport) -> None:
    if not transport.is_disconnected:
        transport.disconnect(graceful=False)


def _code_value(code: object) -> int:
    """A close code picows reports: a ``WSCloseCode`` member, or a plain int outside the enum."""
    return int(code.value) if isinstance(code, Enum) else int(code)  # type: ignore[call-overload]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _close_reason(reason: str) -> bytes:
    """``reason`` as UTF-8, cut to fit a close frame without splitting a character."""
    return reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore").encode()


def _peer_close_status(payload: bytes) -> tuple[CloseCode | None, int | None]:
    """For a client's close frame: (close code to fail with, or None; code to echo, or None)."""
    if not payload:
        return None, None  # no status: echo an empty close frame, as received
    if len(payload) < 2 or not valid_close_code(int.from_bytes(payload[:2], "big")):
        return CloseCode.PROTOCOL_ERROR, None
    if not _is_utf8(payload[2:]):
        return CloseCode.INVALID_DATA, None
    return None, int.from_bytes(payload[:2], "big")


class PicowsOutbound:
    """:class:`~tradewire.core.connection.Outbound` over a picows transport."""

    __slots__ = ("_close_timeout", "_raw", "_transport", "write")

    def __init__(self, transport: WSTransport, close_timeout: float) -> None:
        self._transport = transport
        self._raw = transport.underlying_transport
        self._close_timeout = close_timeout
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
        aborted ``close_timeout`` seconds later whatever happens.
        """
        transport = self._transport
        if transport.is_disconnected:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(code, _close_reason(reason))  # type: ignore[arg-type]
        transport.disconnect(graceful=True)
        asyncio.get_running_loop().call_later(self._close_timeout, _abort, transport)

    def ping(self) -> None:
        self._transport.send_ping()

    def is_open(self) -> bool:
        transport = self._transport
        return not (transport.is_disconnected or transport.is_close_frame_sent)


class _Listener(WSListener):
    """One connection's picows callbacks."""

    __slots__ = (
        "_conn",
        "_early",
        "_engine",
        "_fragments",
        "_gone",
        "_handle",
        "_request",
        "_resuming",
        "_transport",
    )

    def __init__(self, engine: PicowsEngine, request: WSUpgradeRequest) -> None:
        self._engine = engine
        self._handle = engine.router.handle
        self._request = request
        self._transport: WSTransport | None = None
        self._conn: Connection | None = None
        self._fragments: bytearray | None = None  # the text message being reassembled
        self._early: list[_Held] | None = None  # frames received while a session is restored
        self._resuming: asyncio.Task[None] | None = None
        self._gone = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        engine = self._engine
        self._transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:  # see RECEIVE_BUFFER: bounds picows' read buffer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, engine.receive_buffer)
        peer = transport.underlying_transport.get_extra_info("peername")
        path, _, query = self._request.path.decode("latin-1").partition("?")
        headers = self._request.headers
        info = client_info(str(peer[0]) if peer else "unknown", headers, path, engine.trusted_proxies)
        token = reconnect_token(headers, query)
        outbound = PicowsOutbound(transport, engine.close_timeout)
        if token is None:
            self._conn = engine.lifecycle.open(outbound, info)
        else:
            # Frames already read are held; the rest waits in the socket (TCP backpressure) until
            # the session is restored, so a client cannot make the server buffer while it waits.
            self._early = []
            transport.underlying_transport.pause_reading()
            resume = engine.lifecycle.open_resuming(outbound, info, token)
            self._resuming = asyncio.get_running_loop().create_task(self._resume(resume))

    async def _resume(self, resume: Coroutine[Any, Any, Connection | None]) -> None:
        try:
            conn = await resume
        finally:
            transport = self._transport
            if transport is not None and not transport.is_disconnected:
                transport.underlying_transport.resume_reading()
        early, self._early = self._early or [], None
        if conn is None:
            return
        if self._gone:
            self._engine.lifecycle.closed(conn)
            return
        self._conn = conn
        for held in early:
            if conn.closed:
                break
            self._frame(conn, *held)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        conn = self._conn
        if (
            conn is not None
            and frame.msg_type == _TEXT
            and frame.fin
            and self._fragments is None
            and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
        ):  # the hot path: one complete text frame
            data = frame.get_payload_as_bytes()
            if data.isascii():
                self._handle(conn, data)
            else:
                self._text(conn, data)
            return
        held = (
            frame.msg_type,
            frame.fin,
            bool(frame.rsv1 or frame.rsv2 or frame.rsv3),
            frame.get_payload_as_bytes(),
        )
        if conn is not None:
            self._frame(conn, *held)
        elif self._early is not None:
            self._early.append(held)

    def _frame(self, conn: Connection, msg_type: WSMsgType, fin: bool, rsv: bool, payload: bytes) -> None:
        """Every frame but a plain complete text frame: control frames, fragments, violations."""
        if rsv:
            conn.close(CloseCode.PROTOCOL_ERROR, "reserved bits set without a negotiated extension")
        elif msg_type == _PING:
            self._ping(conn, payload)
        elif msg_type == _PONG:
            self._engine.lifecycle.touch(conn)
        elif msg_type == _CLOSE:
            self._peer_close(conn, payload)
        elif self._fragments is not None:
            self._continue(conn, msg_type, fin, payload)
        elif msg_type == _TEXT:
            if fin:
                self._text(conn, payload)
            else:
                self._fragments = bytearray(payload)
        elif msg_type == _BINARY:
            conn.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
        else:
            conn.close(CloseCode.PROTOCOL_ERROR, "continuation frame without a first frame")

    def _text(self, conn: Connection, data: bytes) -> None:
        """A complete text message that is not pure ASCII: route it if it is valid UTF-8."""
        if data.isascii() or _is_utf8(data):
            self._handle(conn, data)
        else:
            conn.close(CloseCode.INVALID_DATA, "text message is not valid UTF-8")

    def _continue(self, conn: Connection, msg_type: WSMsgType, fin: bool, payload: bytes) -> None:
        fragments = self._fragments
        assert fragments is not None
        if msg_type != _CONT:
            self._fragments = None
            conn.close(CloseCode.PROTOCOL_ERROR, "new data frame inside a fragmented message")
            return
        fragments += payload
        if len(fragments) > self._engine.max_message_size:
            self._fragments = None
            conn.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
        elif fin:
            self._fragments = None
            self._text(conn, bytes(fragments))

    def _ping(self, conn: Connection, payload: bytes) -> None:
        """A ping is traffic; its pong counts against the outbound bound like any other frame."""
        self._engine.lifecycle.touch(conn)
        transport = self._transport
        if conn.closed or transport is None:
            return
        if transport.underlying_transport.get_write_buffer_size() > self._engine.outbound_limit:
            conn.close(CloseCode.SLOW_CONSUMER, "slow consumer")
        else:
            transport.send_pong(payload)

    def _peer_close(self, conn: Connection, payload: bytes) -> None:
        """The client closes: echo a valid close frame (never an invalid code), then disconnect."""
        transport = self._transport
        assert transport is not None
        error, code = _peer_close_status(payload)
        if error is not None:
            conn.close(error, "invalid close frame")
            return
        conn.mark_closed()
        if not transport.is_close_frame_sent:
            if code is None:
                transport.send(WSMsgType.CLOSE, b"")
            else:
                transport.send_close(code)  # type: ignore[arg-type]
        transport.disconnect(graceful=True)
        asyncio.get_running_loop().call_later(self._engine.close_timeout, _abort, transport)

    def pause_writing(self) -> None:
        if self._conn is not None:
            self._conn.pause()

    def resume_writing(self) -> None:
        if self._conn is not None:
            self._conn.resume()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._gone = True
        conn = self._conn
        if conn is not None:
            handshake = transport.close_handshake
            if handshake is not None and handshake.sent is not None and not handshake.recv_then_sent:
                # picows failed the connection itself (a framing error it detects): count it.
                self._engine.lifecycle.failed(conn, _code_value(handshake.sent.code))
            self._engine.lifecycle.closed(conn)
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
        handshake_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.lifecycle = lifecycle
        self.router = lifecycle.router
        self.path = path
        self.max_message_size = max_message_size
        self.handshake_timeout = handshake_timeout  # TCP accept → complete upgrade request
        self.close_timeout = close_timeout  # close → socket aborted, whatever the peer does
        self.outbound_limit = lifecycle.limits.outbound_queue_bytes
        self.receive_buffer = max(RECEIVE_BUFFER, max_message_size)
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
            websocket_handshake_timeout=self.handshake_timeout,
            enable_auto_pong=False,  # pings are answered in _Listener._ping: traffic, and bounded
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
