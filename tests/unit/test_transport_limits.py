"""Transport limits without sockets: admission (per address, shutdown), the auth deadline, the
sweep's hand-back of transport-failed connections, close-frame rules and the ASGI close deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from starlette.websockets import WebSocket

from tests.helpers import make_settings
from tests.unit.test_asgi_outbound import StuckWebSocket
from tests.unit.test_core import MemoryOutbound
from tradewire import Level, ManualClock, WebSocketAPIServer
from tradewire.core.client_utils import ClientInfo
from tradewire.core.connection import Connection
from tradewire.protocol.codes import CloseCode, valid_close_code
from tradewire.transport.asgi import AsgiOutbound, transport_hooks
from tradewire.transport.picows_engine import _close_reason, _peer_close_status


class FailingOutbound(MemoryOutbound):
    """An outbound whose transport can fail the connection by itself (as picows does)."""

    def __init__(self) -> None:
        super().__init__()
        self.transport_closed = False

    def is_open(self) -> bool:
        return not self.transport_closed and self.closed_with is None


def info(address: str = "198.51.100.7") -> ClientInfo:
    return ClientInfo(address, "", None, "/ws")


@pytest.fixture
def server(tmp_path: Path) -> WebSocketAPIServer:
    settings = make_settings(
        tmp_path, auth_timeout=10, max_connections_per_address=2, heartbeat_interval=1000
    )
    return WebSocketAPIServer(settings=settings, clock=ManualClock())


def open_conn(server: WebSocketAPIServer, outbound: Any = None, address: str = "198.51.100.7") -> Connection:
    conn = server.connection_lifecycle.open(outbound or MemoryOutbound(), info(address))
    assert conn is not None
    return conn


def authenticate(server: WebSocketAPIServer, conn: Connection, user: str = "alice") -> None:
    token = server.auth_handler.mint(user, Level.TRADER)[0]
    server.connection_manager.bind_user(conn, server.auth_handler.verify(token))


def test_anonymous_connection_is_closed_at_the_auth_deadline(server: WebSocketAPIServer) -> None:
    clock = cast(ManualClock, server.clock)
    anonymous, authed = open_conn(server), open_conn(server)
    authenticate(server, authed)
    clock.advance(9.9)
    server.connection_lifecycle.sweep()
    assert not anonymous.closed
    clock.advance(0.2)
    server.connection_lifecycle.sweep()
    assert anonymous.close_code == CloseCode.AUTH_TIMEOUT
    assert not authed.closed
    assert server.metrics.closes[4003] == 1


def test_auth_deadline_does_not_apply_after_a_token_expires(server: WebSocketAPIServer) -> None:
    """Authenticated once, then privileges dropped (token expiry): 4001's grace applies, not 4003."""
    clock = cast(ManualClock, server.clock)
    conn = open_conn(server)
    authenticate(server, conn)
    server.connection_lifecycle.sweep()
    server.connection_manager.drop_user(conn)
    clock.advance(60)
    server.connection_lifecycle.sweep()
    assert conn.close_code != CloseCode.AUTH_TIMEOUT


def test_zero_auth_timeout_disables_the_deadline(tmp_path: Path) -> None:
    server = WebSocketAPIServer(settings=make_settings(tmp_path, auth_timeout=0), clock=ManualClock())
    conn = open_conn(server)
    cast(ManualClock, server.clock).advance(50)
    server.connection_lifecycle.sweep()
    assert not conn.closed


def test_per_address_limit_refuses_with_1013_and_frees_slots(server: WebSocketAPIServer) -> None:
    first, _second = open_conn(server), open_conn(server)
    refused = MemoryOutbound()
    assert server.connection_lifecycle.open(refused, info()) is None
    assert refused.closed_with == (1013, "too many connections from this address")
    assert refused.frames == []  # no welcome
    assert open_conn(server, address="198.51.100.8") is not None  # another address is not affected
    server.connection_lifecycle.closed(first)
    assert server.connection_manager.address_connections("198.51.100.7") == 1
    assert open_conn(server) is not None
    assert server.metrics.rejected["address_limit"] == 1


async def test_connections_arriving_during_shutdown_get_1001(server: WebSocketAPIServer) -> None:
    await server.connection_lifecycle.shutdown(timeout=0)
    refused = MemoryOutbound()
    assert server.connection_lifecycle.open(refused, info()) is None
    assert refused.closed_with == (1001, "server shutting down")
    server.connection_lifecycle.admit()
    assert open_conn(server) is not None


def test_sweep_arms_the_close_deadline_of_a_transport_failed_connection(server: WebSocketAPIServer) -> None:
    """picows answered a framing error with its own close frame: the sweep closes the connection
    (which arms the transport's abort deadline) instead of waiting for the idle timeout."""
    outbound = FailingOutbound()
    conn = open_conn(server, outbound)
    outbound.transport_closed = True
    server.connection_lifecycle.sweep()
    assert conn.close_code == CloseCode.PROTOCOL_ERROR
    assert outbound.closed_with is not None


def test_failed_counts_a_transport_close_once(server: WebSocketAPIServer) -> None:
    conn = open_conn(server)
    server.connection_lifecycle.failed(conn, 1009)
    server.connection_lifecycle.failed(conn, 1009)
    assert (conn.closed, conn.close_code, server.metrics.closes[1009]) == (True, 1009, 1)
    closed_by_server = open_conn(server, address="198.51.100.9")
    closed_by_server.close(CloseCode.IDLE_TIMEOUT, "idle")
    server.connection_lifecycle.failed(closed_by_server, 1002)
    assert closed_by_server.close_code == 4000


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_valid_close_codes(code: int) -> None:
    assert valid_close_code(code)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_codes(code: int) -> None:
    assert not valid_close_code(code)


def test_every_close_code_the_server_sends_is_valid_on_the_wire() -> None:
    assert all(valid_close_code(int(code)) for code in CloseCode)


def test_peer_close_status() -> None:
    assert _peer_close_status(b"") == (None, None)
    assert _peer_close_status(b"\x03") == (CloseCode.PROTOCOL_ERROR, None)
    assert _peer_close_status((1005).to_bytes(2, "big")) == (CloseCode.PROTOCOL_ERROR, None)
    assert _peer_close_status((1000).to_bytes(2, "big") + b"\xff") == (CloseCode.INVALID_DATA, None)
    assert _peer_close_status((4321).to_bytes(2, "big") + "é".encode()) == (None, 4321)


def test_close_reason_fits_a_close_frame_without_splitting_characters() -> None:
    reason = _close_reason("é" * 100)  # 200 bytes of UTF-8
    assert len(reason) <= 123
    assert reason.decode() == "é" * 61


async def test_asgi_close_deadline_stops_the_endpoint_behind_a_stuck_peer() -> None:
    """Without the extension, a close whose frame cannot be sent calls ``on_expire`` at the deadline."""
    peer = StuckWebSocket()
    expired = asyncio.Event()
    outbound = AsgiOutbound(cast(WebSocket, peer), close_timeout=0.05, on_expire=expired.set)
    outbound.write(b"{}")
    outbound.write(b"{}")  # the second send never completes
    await asyncio.sleep(0)
    outbound.close(1000, "bye")
    await asyncio.wait_for(expired.wait(), 1.0)
    assert outbound.expired
    await outbound.aclose()


def test_transport_hooks_only_from_the_extension() -> None:
    assert transport_hooks({"type": "websocket"}) is None
    assert transport_hooks({"extensions": {"websocket.http.response": {}}}) is None
    hooks = object()
    assert transport_hooks({"extensions": {"tradewire.transport": {"hooks": hooks}}}) is hooks
