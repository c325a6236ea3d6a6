"""uvicorn protocol classes that hold the ASGI route to tradewire's own limits.

Under plain uvicorn the ASGI route lets a client make the server hold memory that tradewire's
limits never see: a WebSocket message is inflated and buffered up to uvicorn's 16 MiB
``ws_max_size`` before the endpoint can check it against ``max_message_size``; pongs to a client's
pings are written whatever the socket's backlog; a closed connection whose peer stops reading keeps
its socket and send buffer forever (``transport.close()`` waits for the buffer to drain); and a TCP
connection that sends half a request head is never timed out. :func:`uvicorn_options` returns the
``uvicorn.Config`` keyword arguments that close all of these, built on the two classes below:

* :class:`TradewireWebSocketProtocol` — uvicorn's websockets-sansio protocol (the only uvicorn
  implementation that applies ``max_size`` to the frame header before reading the payload and to
  permessage-deflate output while inflating, and that backpressures ``send`` on
  ``pause_writing``), plus: pongs under the outbound bound (4008), UTF-8 failures closed 1007
  without a traceback, every close followed by ``transport.abort()`` after ``close_timeout``, and
  the ``tradewire.transport`` ASGI extension (:data:`tradewire.transport.asgi.EXTENSION`) through
  which the endpoint sees pings and pongs as traffic, sends keepalive pings and reads the real
  socket backlog.
* :class:`TradewireHttpProtocol` — uvicorn's httptools protocol plus a deadline for each request
  head (``handshake_timeout``, from the first byte of the connection or of the request) and a
  16 KiB bound on it (what picows allows for an upgrade request).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.protocol import State

from tradewire.protocol.codes import CloseCode
from tradewire.transport.asgi import EXTENSION

if TYPE_CHECKING:
    from tradewire.config import Settings

MAX_REQUEST_HEAD = 16 * 1024  # bytes of request line + headers; picows' fixed limit for an upgrade
_REJECT = {
    408: b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
}


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """The limits the protocol classes enforce (from :class:`~tradewire.config.Settings`)."""

    outbound_queue_bytes: int = 1024 * 1024  # socket backlog over which pongs are refused (4008)
    handshake_timeout: float = 10.0  # seconds for a request head to arrive complete
    close_timeout: float = 5.0  # seconds from a close to transport.abort(), whatever the peer does
    max_request_head: int = MAX_REQUEST_HEAD
    on_reject: Callable[[str], None] | None = None  # counts refused connections by reason


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class TradewireWebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets-sansio with bounded pongs, a hard close deadline and the tradewire extension."""

    limits: ClassVar[TransportLimits] = TransportLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.limits.close_timeout  # uvicorn's graceful close timer
        self.failed_code: int | None = None  # close code this protocol failed the connection with
        self._on_control: Callable[[], None] | None = None  # the endpoint's "client is alive"
        self._abort_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the extension's hooks
    def watch(self, on_control: Callable[[], None]) -> None:
        """Call ``on_control`` for every ping or pong the client sends (they count as traffic)."""
        self._on_control = on_control

    def buffered(self) -> int:
        """Bytes waiting in the socket's user-space send buffer."""
        return self.transport.get_write_buffer_size()

    def ping(self) -> None:
        """A keepalive ping from the endpoint's sweep (skipped while the peer is not reading)."""
        if self.conn.state is not State.OPEN or self.transport.is_closing():
            return
        if self.buffered() > self.limits.outbound_queue_bytes:
            return
        self.conn.send_ping(os.urandom(4))
        self.transport.write(b"".join(self.conn.data_to_send()))

    def abort(self) -> None:
        """Drop the socket and its buffers now."""
        if not self.disconnected:
            self.transport.abort()

    # ------------------------------------------------------------------ uvicorn overrides
    async def run_asgi(self) -> None:
        """Offer the extension to the endpoint; once it returns, the socket goes within the deadline.

        The extension entry (scope → protocol) and the endpoint's callback (protocol → its
        connection) are dropped then: without those cycles a closed connection is freed by
        reference counting at once, not by the garbage collector's next full pass."""
        extensions = self.scope.setdefault("extensions", {})
        extensions[EXTENSION] = {"hooks": self}
        try:
            await super().run_asgi()
        finally:
            extensions.pop(EXTENSION, None)
            self._on_control = None
            self._arm_abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        super().connection_lost(exc)

    def handle_ping(self) -> None:
        """Answer a ping only while the socket's backlog is under the outbound bound."""
        self._touch()
        if self.buffered() > self.limits.outbound_queue_bytes:
            self.conn.data_to_send()  # drop the pong websockets queued
            self._fail(CloseCode.SLOW_CONSUMER, "slow consumer")
            return
        super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        self._touch()
        super().handle_pong(event)

    def send_receive_event_to_app(self) -> None:
        """uvicorn closes 1007 on invalid UTF-8 too, but logs a traceback for it: check first."""
        if self.curr_msg_data_type == "text":
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            self.frames = [data]
            if not data.isascii() and not _is_utf8(data):
                self.frames = []
                self._fail(CloseCode.INVALID_DATA, "text message is not valid UTF-8")
                return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        """websockets failed the connection (1002, 1007, 1009): remember the code, arm the deadline."""
        super().handle_parser_exception()
        if self.conn.close_sent is not None:
            self.failed_code = int(self.conn.close_sent.code)
        self._arm_abort()

    # ------------------------------------------------------------------ helpers
    def _touch(self) -> None:
        if self._on_control is not None:
            self._on_control()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection from the protocol: close frame, disconnect event, hard deadline."""
        if self.close_sent or self.conn.state is not State.OPEN:
            return
        self.conn.fail(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.failed_code = code
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.close()
        self._arm_abort()

    def _arm_abort(self) -> None:
        if self._abort_timer is None and not self.disconnected:
            self._abort_timer = self.loop.call_later(self.limits.close_timeout, self.abort)


class TradewireHttpProtocol(HttpToolsProtocol):
    """httptools with a deadline and a size bound for every request head."""

    limits: ClassVar[TransportLimits] = TransportLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received since the current request head began
        self._in_head = True  # waiting for (the rest of) a request head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        """Hand the socket to the WebSocket protocol, then drop the parser: uvicorn does that in
        ``connection_lost``, which an upgraded connection never reaches here (the parser holds
        this protocol's callbacks: a cycle left to the garbage collector per WebSocket)."""
        super().handle_websocket_upgrade()
        self._stop_head()
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_request_head:
                self._refuse(431, "head_too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head()
        super().on_headers_complete()

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.handshake_timeout, self._head_timeout)

    def _stop_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "handshake_timeout")

    def _refuse(self, status: int, reason: str) -> None:
        self._stop_head()
        if self.limits.on_reject is not None:
            self.limits.on_reject(reason)
        self.transport.write(_REJECT[status])
        self.transport.close()


def protocol_classes(
    limits: TransportLimits,
) -> tuple[type[TradewireHttpProtocol], type[TradewireWebSocketProtocol]]:
    """The two protocol classes bound to ``limits`` (uvicorn instantiates classes, not objects)."""
    http = type("TradewireHttpProtocol", (TradewireHttpProtocol,), {"limits": limits})
    ws = type("TradewireWebSocketProtocol", (TradewireWebSocketProtocol,), {"limits": limits})
    return http, ws


def uvicorn_options(settings: Settings, on_reject: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``uvicorn.Config``/``uvicorn.run`` keyword arguments that bound the ASGI route by ``settings``.

    ``ws_max_size`` is ``max_message_size`` (checked on each frame header, and while inflating);
    compression is off (the picows engine has none, and inflating costs memory per connection);
    uvicorn's own keepalive pings are off because tradewire's sweep pings through the extension.
    """
    limits = TransportLimits(
        outbound_queue_bytes=settings.outbound_queue_bytes,
        handshake_timeout=settings.handshake_timeout,
        close_timeout=settings.close_timeout,
        on_reject=on_reject,
    )
    http, ws = protocol_classes(limits)
    return {
        "http": http,
        "ws": ws,
        "ws_max_size": settings.max_message_size,
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,
        "ws_ping_timeout": None,
        "proxy_headers": False,  # tradewire applies its own trusted_proxies rule
    }
