"""RFC 6455 conformance of both endpoints, as raw frames over a real socket.

The Autobahn testsuite cannot run here (it needs Docker or Python 2), so this is our own table of
its kinds of cases: framing (RSV bits, opcodes, masking, control frame rules), fragmentation,
UTF-8, close frames both ways, sizes. Every case runs against the picows engine and the ASGI route
under uvicorn (as ``tradewire serve`` configures it); PROTOCOL.md promises they behave the same.
Each frame the server sends back must itself be valid: close codes from the wire set, reasons
UTF-8 and short enough.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import Running, run_server
from tests.rawws import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawFrame,
    RawWebSocket,
    close_payload,
    encode_frame,
)
from tradewire.protocol.codes import valid_close_code

MAX_MESSAGE = 4096


def hb(request_id: int | str) -> bytes:
    return json.dumps({"type": "heartbeat", "id": request_id}).encode()


@dataclass(frozen=True)
class Case:
    """Frames to send (opcode, payload, options) and what the server must answer."""

    name: str
    frames: list[tuple[int, bytes, dict[str, Any]]]
    reply: int | str | None = None  # a heartbeat reply with this id, connection left open
    pong: bytes | None = None  # a pong with this payload first
    close: int | None = None  # the server fails the connection with this code
    echo: tuple[int | None] | None = None  # the server echoes the client's close (code or None)


def f(opcode: int, payload: bytes = b"", **options: Any) -> tuple[int, bytes, dict[str, Any]]:
    return opcode, payload, options


INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]

CASES = [
    # data frames and fragmentation (RFC 6455 §5.4)
    Case("text message", [f(TEXT, hb(1))], reply=1),
    Case(
        "fragmented text message",
        [f(TEXT, b'{"type":"hea', fin=False), f(CONT, b'rtbeat","i', fin=False), f(CONT, b'd":2}')],
        reply=2,
    ),
    Case(
        "empty fragments",
        [f(TEXT, b"", fin=False), f(CONT, hb(3), fin=False), f(CONT, b"")],
        reply=3,
    ),
    Case(
        "ping between fragments",
        [f(TEXT, b'{"type":"heartbeat",', fin=False), f(PING, b"mid"), f(CONT, b'"id":4}')],
        pong=b"mid",
        reply=4,
    ),
    Case(
        "utf-8 character split across fragments",
        [f(TEXT, b'{"type":"heartbeat","id":"caf\xc3', fin=False), f(CONT, b'\xa9"}')],
        reply="café",
    ),
    Case(
        "new text frame inside a fragmented message",
        [f(TEXT, b'{"a":', fin=False), f(TEXT, hb(5))],
        close=1002,
    ),
    Case(
        "binary frame inside a fragmented message",
        [f(TEXT, b'{"a":', fin=False), f(BINARY, b"x")],
        close=1002,
    ),
    Case("continuation without a first frame", [f(CONT, hb(6))], close=1002),
    Case("final continuation without a first frame", [f(CONT, b"", fin=True)], close=1002),
    # UTF-8 (§8.1)
    Case("invalid utf-8 in a text frame", [f(TEXT, b'{"type":"heartbeat","id":"a\xffb"}')], close=1007),
    Case(
        "invalid utf-8 in an ignored field",
        [f(TEXT, b'{"type":"heartbeat","pad":"\xc0\xaf","id":7}')],
        close=1007,
    ),
    Case("utf-8 surrogate encoded", [f(TEXT, b'{"type":"heartbeat","id":"\xed\xa0\x80"}')], close=1007),
    Case("truncated utf-8 at the end", [f(TEXT, b'{"type":"heartbeat","id":"\xe2\x82')], close=1007),
    Case(
        "invalid utf-8 across fragments",
        [f(TEXT, b'{"type":"heartbeat","id":"\xe2', fin=False), f(CONT, b'\x28\xa1"}')],
        close=1007,
    ),
    # binary frames: the protocol is JSON text (close 1003, "unsupported data")
    Case("binary frame", [f(BINARY, hb(8))], close=1003),
    Case("fragmented binary message", [f(BINARY, b"{", fin=False), f(CONT, b"}")], close=1003),
    # reserved bits and opcodes (§5.2)
    Case("rsv1 without an extension", [f(TEXT, hb(9), rsv=4)], close=1002),
    Case("rsv2", [f(TEXT, hb(9), rsv=2)], close=1002),
    Case("rsv3", [f(TEXT, hb(9), rsv=1)], close=1002),
    Case("rsv on a ping", [f(PING, b"x", rsv=4)], close=1002),
    Case("rsv on a continuation", [f(TEXT, b"{", fin=False), f(CONT, b"}", rsv=2)], close=1002),
    Case("reserved data opcode 3", [f(3, b"")], close=1002),
    Case("reserved control opcode 0xB", [f(0xB, b"")], close=1002),
    Case("unmasked client frame", [f(TEXT, hb(10), mask=False)], close=1002),
    # control frames (§5.5)
    Case("ping", [f(PING, b"hello")], pong=b"hello"),
    Case("empty ping", [f(PING, b""), f(TEXT, hb(11))], pong=b"", reply=11),
    Case("ping with a 125-byte payload", [f(PING, b"p" * 125)], pong=b"p" * 125),
    Case("ping with a 126-byte payload", [f(PING, b"p" * 126)], close=1002),
    Case("fragmented ping", [f(PING, b"p", fin=False)], close=1002),
    Case("unsolicited pong", [f(PONG, b"x"), f(TEXT, hb(12))], reply=12),
    # close frames (§5.5.1, §7.4)
    Case("close 1000 with a reason", [f(CLOSE, close_payload(1000, b"bye"))], echo=(1000,)),
    Case("empty close", [f(CLOSE)], echo=(None,)),
    Case("close with a 1-byte payload", [f(CLOSE, b"\x03")], close=1002),
    Case("close reason not utf-8", [f(CLOSE, close_payload(1000, b"\xff\xfe"))], close=1007),
    Case("close reason 123 bytes", [f(CLOSE, close_payload(1000, b"r" * 123))], echo=(1000,)),
    Case("close frame of 126 bytes", [f(CLOSE, close_payload(1000, b"r" * 124))], close=1002),
    Case("text after close", [f(CLOSE, close_payload(1000)), f(TEXT, hb(13))], echo=(1000,)),
    *[
        Case(f"close code {code}", [f(CLOSE, close_payload(code))], close=1002)
        for code in INVALID_CLOSE_CODES
    ],
    *[
        Case(f"close code {code} echoed", [f(CLOSE, close_payload(code))], echo=(code,))
        for code in VALID_CLOSE_CODES
    ],
    # sizes
    Case("text frame over max_message_size", [f(TEXT, b" " * (MAX_MESSAGE + 1))], close=1009),
    Case(
        "fragmented message over max_message_size",
        [f(TEXT, b" " * 3000, fin=False), f(CONT, b" " * 3000)],
        close=1009,
    ),
    Case(
        "message of exactly max_message_size",
        [f(TEXT, hb(14)[:-1] + b" " * (MAX_MESSAGE - len(hb(14))) + b"}")],
        reply=14,
    ),
]


@pytest.fixture
async def server(transport: str, settings_factory: Callable[..., Any]) -> AsyncIterator[Running]:
    async with run_server(transport, settings_factory(max_message_size=MAX_MESSAGE)) as running:
        yield running


def check_close_frame(frame: RawFrame) -> None:
    """A close frame the server sends is itself valid (RFC 6455 §5.5.1, §7.4)."""
    assert len(frame.payload) <= 125
    if frame.payload:
        assert len(frame.payload) >= 2
        assert frame.close_code is not None and valid_close_code(frame.close_code), frame.close_code
        frame.payload[2:].decode()


async def run_case(ws: RawWebSocket, case: Case) -> None:
    # One write: the server gets every frame of the case before it can answer (a frame sent after
    # the server closed the socket would only meet a TCP reset).
    await ws.send_raw(
        b"".join(encode_frame(opcode, payload, **options) for opcode, payload, options in case.frames)
    )
    if case.pong is not None:
        frame = await ws.recv()
        assert (frame.opcode, frame.payload) == (PONG, case.pong)
    if case.reply is not None:
        reply = json.loads(await ws.recv_text())
        assert (reply["status"], reply["id"]) == ("pong", case.reply)
        await ws.send(TEXT, hb("still-open"))
        assert json.loads(await ws.recv_text())["id"] == "still-open"
    if case.close is not None or case.echo is not None:
        frame = await ws.expect_close()
        check_close_frame(frame)
        expected = case.close if case.close is not None else case.echo[0]  # type: ignore[index]
        assert frame.close_code == expected, (case.name, frame.close_code, frame.payload)
        if case.close is not None:
            with contextlib.suppress(ConnectionError):  # picows may already have dropped the socket
                await ws.send(CLOSE, close_payload(case.close))  # complete the closing handshake
        await ws.wait_eof()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_rfc6455_case(server: Running, case: Case) -> None:
    """The endpoint answers each RFC 6455 case as the RFC requires (same answer on both endpoints)."""
    ws = await RawWebSocket.connect(server.url)
    try:
        assert json.loads(await ws.recv_text())["status"] == "connected"
        await run_case(ws, case)
    finally:
        await ws.aclose()
    if case.close is not None:
        assert server.server.get_stats()["closes"].get(str(case.close), 0) >= 1


async def test_server_closes_are_valid_frames(transport: str, settings_factory: Callable[..., Any]) -> None:
    """A server-initiated close (here 4000, idle) carries a registered code and a short UTF-8 reason."""
    async with run_server(transport, settings_factory(heartbeat_interval=0.1, ping_interval=30)) as r:
        ws = await RawWebSocket.connect(r.url)
        try:
            await ws.recv_text()
            frame = await ws.expect_close()
            check_close_frame(frame)
            assert frame.close_code == 4000
            with contextlib.suppress(ConnectionError):
                await ws.send(CLOSE, close_payload(4000))
            await ws.wait_eof()
        finally:
            await ws.aclose()


async def test_no_extension_is_negotiated(server: Running) -> None:
    """A client offering permessage-deflate gets no extension: compressed frames (RSV1) are then errors."""
    ws = await RawWebSocket.connect(
        server.url, {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    )
    try:
        assert b"sec-websocket-extensions" not in ws.response_head.lower()
    finally:
        await ws.aclose()
