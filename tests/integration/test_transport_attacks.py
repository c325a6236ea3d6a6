"""Attacks on the transport, each against both endpoints over real sockets: compression bombs,
oversized frames, ping floods, readers that stop reading, slowloris, connection floods from one
address and anonymous squatters. The expected answer is a documented close (or a dropped socket
before the upgrade), server memory bounded by tradewire's own limits, and the connection gone —
unregistered and its socket closed — within ``close_timeout`` of that close.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable
from typing import Any

import psutil

from tests.helpers import (
    TIMEOUT,
    Running,
    open_client,
    request,
    run_both,
    run_server,
    serve_uvicorn,
    uvicorn_port,
    wait_closed,
    wait_for,
)
from tests.rawws import CLOSE, PING, PONG, TEXT, RawWebSocket, encode_frame, open_tcp
from tradewire import Stream, WebSocketAPIServer
from tradewire.transport.uvicorn_protocols import TradewireWebSocketProtocol

MiB = 1024 * 1024
BOMB_SIZE = 16 * MiB
CLOSE_TIMEOUT = 0.5  # short deadlines so each test shows "gone within the deadline"
# RSS may move by a few MiB for unrelated reasons (allocator, test client buffers); every bug here
# grew it by hundreds of MiB, so this margin still fails on each of them.
RSS_MARGIN = 40 * MiB


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def deflate_bomb() -> bytes:
    """A permessage-deflate payload (RFC 7692 §7.2.1: raw deflate, tail removed) that inflates to a
    16 MiB heartbeat: ``{"type":"heartbeat","pad":"<16 MiB of spaces>"}``."""
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b'{"type":"heartbeat","pad":"')
    chunk = b" " * MiB
    for _ in range(BOMB_SIZE // MiB):
        body += compressor.compress(chunk)
    body += compressor.compress(b'"}') + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def ws_connections(r: Running) -> int:
    """Sockets the server still holds for WebSocket clients of this endpoint."""
    if r.http is None:
        return len(r.server.connection_manager)
    return sum(isinstance(p, TradewireWebSocketProtocol) for p in r.http.server_state.connections)


async def authed_raw(r: Running, *, rcvbuf: int | None = None) -> RawWebSocket:
    ws = await RawWebSocket.connect(r.url, rcvbuf=rcvbuf)
    await ws.recv_text()
    await ws.send(TEXT, json.dumps({"type": "auth", "token": r.token(), "id": "a"}).encode())
    assert json.loads(await ws.recv_text())["status"] == "authenticated"
    return ws


# ---------------------------------------------------------------------- memory before limits


async def test_compression_bomb_is_refused_before_inflating(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """20 parallel deflate bombs (16 MiB each when inflated, ~16 KB on the wire) close 1002 —
    no extension was negotiated, so RSV1 is a framing error — and the server inflates nothing."""
    bomb = deflate_bomb()
    assert len(bomb) < 64 * 1024
    async with run_server(transport, settings_factory()) as r:
        offer = {"Sec-WebSocket-Extensions": "permessage-deflate"}
        clients = [await RawWebSocket.connect(r.url, offer) for _ in range(20)]
        try:
            before = rss()
            for ws in clients:
                assert b"permessage-deflate" not in ws.response_head.lower()
                await ws.recv_text()
                await ws.send(TEXT, bomb, rsv=4)
            codes = await asyncio.gather(*(ws.expect_close() for ws in clients))
            assert {frame.close_code for frame in codes} == {1002}
            assert rss() - before < RSS_MARGIN
        finally:
            for ws in clients:
                await ws.aclose()
        await wait_for(lambda: len(r.server.connection_manager) == 0, what="bomb connections released")


async def test_compression_enabled_by_an_embedder_still_bounds_inflation(
    settings_factory: Callable[..., Any],
) -> None:
    """ASGI route with permessage-deflate switched back on: inflation stops at max_message_size
    (websockets-sansio inflates with ``max_length``), so each bomb closes 1009 after 64 KiB."""
    bomb = deflate_bomb()
    server = WebSocketAPIServer(settings=settings_factory())
    from fastapi import FastAPI

    app = FastAPI()
    app.add_api_websocket_route("/ws", server.fastapi_endpoint)
    options = {**server.uvicorn_options(), "ws_per_message_deflate": True}
    async with serve_uvicorn(app, **options) as http:
        await server.startup_embedded()
        try:
            url = f"ws://127.0.0.1:{uvicorn_port(http)}/ws"
            offer = {"Sec-WebSocket-Extensions": "permessage-deflate"}
            clients = [await RawWebSocket.connect(url, offer) for _ in range(20)]
            before = rss()
            for ws in clients:
                assert b"permessage-deflate" in ws.response_head.lower()
                await ws.recv_text()
                await ws.send(TEXT, bomb, rsv=4)
            codes = await asyncio.gather(*(ws.expect_close() for ws in clients))
            assert {frame.close_code for frame in codes} == {1009}
            assert rss() - before < RSS_MARGIN
            for ws in clients:
                await ws.aclose()
        finally:
            await server.stop()


async def test_oversized_frame_is_refused_on_its_header(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A frame header announcing 15 MiB closes 1009 before any of the payload is read: the client
    sends the header and 1 KiB only, and the close arrives anyway."""
    async with run_server(transport, settings_factory()) as r:
        ws = await RawWebSocket.connect(r.url)
        try:
            await ws.recv_text()
            header = encode_frame(TEXT, b" " * (15 * MiB))[:14]  # FIN|TEXT, 127, 8-byte length, mask
            await ws.send_raw(header + b" " * 1024)
            assert (await ws.expect_close()).close_code == 1009
        finally:
            await ws.aclose()
        await wait_for(lambda: r.server.get_stats()["closes"].get("1009") == 1, what="1009 counted")


async def test_pings_that_are_never_read_close_4008(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A client that floods pings and never reads the pongs hits the outbound bound (4008); the
    socket is dropped within close_timeout and the server holds no more than the bound."""
    settings = settings_factory(outbound_queue_bytes=64 * 1024, close_timeout=CLOSE_TIMEOUT)
    async with run_server(transport, settings) as r:
        ws = await RawWebSocket.connect(r.url, rcvbuf=4096)
        await ws.recv_text()
        chunk = b"".join(encode_frame(PING, b"p" * 125) for _ in range(500))  # 500 pings, ~65 KB
        before = rss()
        try:
            for _ in range(800):  # at most 400,000 pings
                if r.server.get_stats()["closes"].get("4008"):
                    break
                ws.writer.write(chunk)
                try:
                    await asyncio.wait_for(ws.writer.drain(), 1.0)
                except (TimeoutError, ConnectionError):
                    break
            await wait_for(lambda: r.server.get_stats()["closes"].get("4008") == 1, what="4008")
            await wait_for(lambda: ws_connections(r) == 0, TIMEOUT, "socket dropped")
            assert len(r.server.connection_manager) == 0
            assert rss() - before < RSS_MARGIN
        finally:
            await ws.aclose()


async def test_fast_senders_do_not_grow_read_buffers(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """10 clients each push 8 MB of (unsolicited, unanswered) pongs as fast as TCP allows: the
    server's per-connection read buffers stay small. picows' buffer doubles whenever a read fills it
    and never shrinks, so without the capped SO_RCVBUF it grew with the kernel's autotuned window
    (+4.8 MiB per connection measured)."""
    settings = settings_factory(auth_timeout=0, heartbeat_interval=60)
    async with run_server(transport, settings) as r:
        clients = [await RawWebSocket.connect(r.url) for _ in range(10)]
        chunk = b"".join(encode_frame(PONG, b"p" * 125) for _ in range(2000))  # ~262 KB
        before = rss()

        async def push(ws: RawWebSocket) -> None:
            await ws.recv_text()
            for _ in range(32):  # 8 MB
                ws.writer.write(chunk)
                await ws.writer.drain()
            await ws.send(TEXT, b'{"type":"heartbeat","id":"done"}')  # answered once all was read
            assert json.loads(await ws.recv_text(timeout=TIMEOUT * 4))["id"] == "done"

        try:
            await asyncio.gather(*(push(ws) for ws in clients))
            assert rss() - before < 16 * MiB
        finally:
            for ws in clients:
                await ws.aclose()


# ---------------------------------------------------------------------- every close has a deadline


async def test_non_reading_subscriber_is_released_after_4008(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """Subscribed, tiny receive buffer, never reading: 4008, then within close_timeout the
    connection is unregistered, its subscription gone and its socket closed, and publishing more
    costs it nothing."""
    settings = settings_factory(
        outbound_queue_bytes=64 * 1024,
        close_timeout=CLOSE_TIMEOUT,
        stream_history_size=10,  # the stream's own history must not be what grows
    )
    async with run_server(transport, settings) as r:
        ws = await authed_raw(r, rcvbuf=4096)
        try:
            await ws.send(TEXT, json.dumps({"type": "subscribe", "stream": "signals", "id": "s"}).encode())
            assert json.loads(await ws.recv_text())["status"] == "subscribed"
            server = r.server
            before = rss()
            for n in range(2000):  # 2000 × 20 KB at most; the close comes after a few MB
                await server.broadcast_to_subscribers("signals", {"n": n, "pad": "x" * 20_000})
                await asyncio.sleep(0)
                if server.get_stats()["closes"].get("4008"):
                    break
            assert server.get_stats()["closes"].get("4008") == 1
            await wait_for(
                lambda: len(server.connection_manager) == 0, CLOSE_TIMEOUT + TIMEOUT, "unregistered"
            )
            await wait_for(lambda: ws_connections(r) == 0, TIMEOUT, "socket dropped")
            assert server.subscription_manager.count(Stream.SIGNALS) == 0
            for n in range(500):
                await server.broadcast_to_subscribers("signals", {"n": n, "pad": "x" * 20_000})
            await asyncio.sleep(0)
            assert rss() - before < RSS_MARGIN
        finally:
            await ws.aclose()


async def test_client_that_never_completes_the_close_handshake_is_dropped(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """Server closes (idle timeout 4000); the client neither echoes nor reads: socket gone at the deadline."""
    settings = settings_factory(heartbeat_interval=0.2, ping_interval=30, close_timeout=CLOSE_TIMEOUT)
    async with run_server(transport, settings) as r:
        ws = await RawWebSocket.connect(r.url, rcvbuf=4096)
        try:
            await wait_for(lambda: r.server.get_stats()["closes"].get("4000") == 1, what="4000")
            await wait_for(lambda: ws_connections(r) == 0, CLOSE_TIMEOUT + TIMEOUT, "socket dropped")
            await ws.wait_eof()
        finally:
            await ws.aclose()


# ---------------------------------------------------------------------- slowloris and floods


async def test_partial_upgrade_requests_are_dropped_at_the_handshake_timeout(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """Slowloris on both ports: 30 connections sending half an upgrade request, and 10 sending
    nothing, are all dropped after handshake_timeout (the HTTP port answers 408 first)."""
    async with run_server(transport, settings_factory(handshake_timeout=0.5)) as r:
        partial = [await open_tcp(r.port) for _ in range(30)]
        silent = [await open_tcp(r.port) for _ in range(10)]
        for _, writer in partial:
            writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def dropped(reader: asyncio.StreamReader) -> bytes:
            return await asyncio.wait_for(reader.read(), TIMEOUT)  # until EOF

        answers = await asyncio.gather(*(dropped(reader) for reader, _ in partial + silent))
        assert loop.time() - started >= 0.4  # not before the deadline...
        if transport == "asgi":  # ...and the HTTP port says why
            assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers)
            assert r.server.get_stats()["connections"]["rejected"]["handshake_timeout"] == 40
        else:
            assert set(answers) == {b""}
        for _, writer in partial + silent:
            writer.close()


async def test_endless_request_head_is_cut_at_16_kib(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A request head that never ends is refused once it passes 16 KiB (431 on the HTTP port)."""
    async with run_server(transport, settings_factory()) as r:
        reader, writer = await open_tcp(r.port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for n in range(200):  # 200 × 1 KiB: well past the bound
            writer.write(b"X-Pad-%d: %s\r\n" % (n, b"p" * 1000))
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except ConnectionError:
                break
            if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]  # answered: stop
                break
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        if transport == "asgi":
            assert answer.startswith(b"HTTP/1.1 431")
        else:
            assert answer == b""


async def test_one_address_cannot_hold_every_slot(settings_factory: Callable[..., Any]) -> None:
    """max_connections_per_address counts both endpoints together: the 4th connection from
    127.0.0.1 — on either port — gets 1013 and no welcome; closing one frees a slot."""
    settings = settings_factory(max_connections=50, max_connections_per_address=3)
    async with run_both(settings) as (picows, asgi):
        first, _ = await open_client(picows)
        second, _ = await open_client(asgi)
        third, _ = await open_client(picows)
        async with first, second, third:
            for r in (asgi, picows):
                refused = await r.connect()
                assert await wait_closed(refused) == 1013
                assert refused.close_reason == "too many connections from this address"
            stats = picows.server.get_stats()
            assert stats["connections"]["rejected"]["address_limit"] == 2
            assert stats["connections"]["current"] == 3
            await second.close()
            await wait_for(lambda: len(picows.server.connection_manager) == 2, what="slot freed")
            fourth, welcome = await open_client(asgi)
            async with fourth:
                assert welcome["status"] == "connected"


async def test_anonymous_connections_are_closed_at_the_auth_timeout(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """An anonymous client that keeps heartbeating is closed 4003 after auth_timeout; an
    authenticated one, and one whose session was restored with its authentication, stay."""
    async with run_server(transport, settings_factory(auth_timeout=0.3)) as r:
        squatter, _ = await open_client(r, ping_interval=None)
        user, welcome = await open_client(r, ping_interval=None)
        assert (await request(user, {"type": "auth", "token": r.token()}))["status"] == "authenticated"
        await user.close()
        restored, again = await open_client(
            r, ping_interval=None, additional_headers={"X-Reconnect-Token": welcome["reconnect_token"]}
        )
        member, _ = await open_client(r, ping_interval=None)
        assert (await request(member, {"type": "auth", "token": r.token("bob")}))["status"] == "authenticated"
        async with squatter, restored, member:
            assert again["reconnected"] and again["authenticated"]
            for n in range(10):  # 1 s of heartbeats: more than three times the deadline
                for ws in (restored, member):
                    assert (await request(ws, {"type": "heartbeat", "id": n}))["id"] == n
                if squatter.close_code is None:
                    await squatter.send(json.dumps({"type": "heartbeat"}))
                await asyncio.sleep(0.1)
            assert await wait_closed(squatter) == 4003
        assert r.server.get_stats()["closes"]["4003"] == 1


async def test_welcome_is_not_sent_over_the_address_limit(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A refused connection gets its close frame first: no welcome is sent to it."""
    async with run_server(transport, settings_factory(max_connections_per_address=1)) as r:
        held, _ = await open_client(r)
        async with held:
            ws = await RawWebSocket.connect(r.url)
            try:
                frame = await ws.recv()
                assert frame.opcode == CLOSE and frame.close_code == 1013
            finally:
                await ws.aclose()
