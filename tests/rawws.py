"""A tiny raw WebSocket client for conformance and attack tests: frames built byte by byte.

Real WebSocket libraries refuse to send malformed frames (RSV bits, bad close codes, unmasked
frames, invalid UTF-8), so the tests that check how the server handles them write the frames
themselves over a plain TCP socket (RFC 6455 §5.2: header, extended length, masking key, masked
payload). The server's frames are parsed back, unmasked, with their close code and reason.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.helpers import TIMEOUT

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame as received from the server."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (None for an empty one)."""
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
) -> bytes:
    """A client frame: ``rsv`` is the 3-bit RSV field (4 = RSV1); clients must mask (§5.3)."""
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if length < 4096 else _mask(payload, key)
    return bytes(head) + key + masked


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR-mask a long payload quickly (int arithmetic over the whole buffer)."""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


async def open_tcp(
    port: int, *, rcvbuf: int | None = None, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to 127.0.0.1:``port`` (tests talk to loopback only)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=limit)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawWebSocket:
    """One client connection speaking raw frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response_head = b""

    @classmethod
    async def connect(
        cls,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        limit: int = 2**22,
        rcvbuf: int | None = None,
    ) -> RawWebSocket:
        """Open a TCP connection to ``url`` (ws://127.0.0.1:PORT/PATH) and complete the upgrade.

        ``rcvbuf`` shrinks the socket's receive buffer, for clients that stop reading.
        """
        parts = urlsplit(url)
        reader, writer = await open_tcp(parts.port or 80, rcvbuf=rcvbuf, limit=limit)
        ws = cls(reader, writer)
        await ws.handshake(parts.path or "/", parts.netloc, headers or {})
        return ws

    async def handshake(self, path: str, host: str, headers: dict[str, str]) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.response_head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status = self.response_head.split(b"\r\n", 1)[0]
        assert b" 101 " in status, status

    async def send(self, opcode: int, payload: bytes = b"", **options: bool | int) -> None:
        self.writer.write(encode_frame(opcode, payload, **options))  # type: ignore[arg-type]
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = TIMEOUT) -> RawFrame:
        """The next frame from the server (raises EOFError if the connection ends first)."""
        async with asyncio.timeout(timeout):
            try:
                head = await self.reader.readexactly(2)
            except asyncio.IncompleteReadError as exc:
                raise EOFError("connection closed") from exc
            length = head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            assert not head[1] & 0x80, "server frames must not be masked"
            payload = await self.reader.readexactly(length)
        return RawFrame(bool(head[0] & 0x80), (head[0] >> 4) & 7, head[0] & 0x0F, payload)

    async def recv_text(self, timeout: float = TIMEOUT) -> bytes:
        """The next text message, skipping control frames other than close."""
        while True:
            frame = await self.recv(timeout)
            if frame.opcode == TEXT:
                return frame.payload
            if frame.opcode == CLOSE:
                raise AssertionError(f"closed with {frame.close_code} while waiting for text")

    async def expect_close(self, timeout: float = TIMEOUT) -> RawFrame:
        """Read until the server's close frame (data frames before it are skipped)."""
        while True:
            try:
                frame = await self.recv(timeout)
            except EOFError:
                raise AssertionError("connection ended without a close frame") from None
            if frame.opcode == CLOSE:
                return frame

    async def wait_eof(self, timeout: float = TIMEOUT) -> None:
        """Wait until the server drops the TCP connection."""
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                continue

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)
        except (ConnectionError, TimeoutError):
            return
