"""Faults around the transport: a real ``tradewire serve`` stopped by SIGTERM in the middle of
traffic, and thousands of clients that vanish (TCP reset) while frames are being written to them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import SECRET, TIMEOUT, Running, open_client, recv_json, request, run_server, wait_for
from tests.rawws import TEXT, RawWebSocket
from tradewire import Level, Stream
from tradewire.auth.tokens import AuthHandler

CLI = [sys.executable, "-m", "tradewire.cli"]
MiB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_ready(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
    """Read the server's JSON log until ``server.ready`` (keep every line for later checks)."""
    assert proc.stderr is not None
    async with asyncio.timeout(TIMEOUT * 4):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise AssertionError("server exited before it was ready:\n" + "".join(lines))
            lines.append(line)
            if '"server.ready"' in line:
                return


class _Client:
    """An authenticated, subscribed client that heartbeats until the server closes it."""

    def __init__(self, ws: ClientConnection, token: str) -> None:
        self.ws = ws
        self.reconnect_token = token
        self.close_code: int | None = None

    async def run(self) -> None:
        n = 0
        try:
            while True:
                await self.ws.send(json.dumps({"type": "heartbeat", "id": n}))
                n += 1
                try:
                    async with asyncio.timeout(0.05):  # read whatever arrives for 50 ms
                        while True:
                            await self.ws.recv()
                except TimeoutError:
                    continue
        except ConnectionClosed:
            self.close_code = self.ws.close_code


async def _start_client(url: str, token: str) -> _Client:
    ws = await connect(url, open_timeout=TIMEOUT, ping_interval=None)
    welcome = await recv_json(ws)
    assert (await request(ws, {"type": "auth", "token": token, "id": "a"}))["status"] == "authenticated"
    reply = await request(ws, {"type": "subscribe", "stream": "market_data", "id": "s"})
    while reply.get("id") != "s":  # market data may already be flowing
        reply = await recv_json(ws)
    assert reply["status"] == "subscribed"
    return _Client(ws, welcome["reconnect_token"])


@pytest.mark.redis
async def test_sigterm_during_traffic_closes_1001_and_saves_sessions(
    tmp_path: Path, redis_url: str, redis_prefix: str, settings_factory: Callable[..., Any]
) -> None:
    """``tradewire serve`` with live market data and heartbeating clients on both ports gets SIGTERM:
    every client receives 1001, the process exits 0 without a traceback, and every session is in
    Redis — a new server restores each one from its last reconnect token."""
    ws_port, http_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    env.update(
        TRADEWIRE_DATA_DIR=str(tmp_path),
        TRADEWIRE_JWT_SECRET=SECRET,
        TRADEWIRE_REDIS_URL=redis_url,
        TRADEWIRE_REDIS_PREFIX=redis_prefix,
        TRADEWIRE_SYNTHETIC_INTERVAL="0.01",
    )
    command = [
        *CLI,
        "serve",
        "--ws-port",
        str(ws_port),
        "--http-port",
        str(http_port),
        "--log-format",
        "json",
    ]
    proc = await asyncio.create_subprocess_exec(*command, env=env, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    try:
        await _wait_ready(proc, lines)
        token = AuthHandler.from_settings(settings_factory()).mint("alice", Level.TRADER)[0]
        urls = [f"ws://127.0.0.1:{ws_port}/ws", f"ws://127.0.0.1:{http_port}/ws"]
        clients = [await _start_client(url, token) for url in urls for _ in range(2)]
        tasks = [asyncio.create_task(client.run()) for client in clients]
        await asyncio.sleep(0.5)  # traffic in both directions
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT * 2)
        assert proc.stderr is not None
        lines += (await asyncio.wait_for(proc.stderr.read(), TIMEOUT * 2)).decode().splitlines(keepends=True)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert [client.close_code for client in clients] == [1001] * 4
    log = "".join(lines)
    assert "Traceback" not in log
    assert '"server.stopped"' in log
    settings = settings_factory(redis_url=redis_url, redis_prefix=redis_prefix)
    async with run_server("picows", settings) as r:
        for client in clients:
            ws, welcome = await open_client(
                r, additional_headers={"X-Reconnect-Token": client.reconnect_token}
            )
            async with ws:
                assert welcome["reconnected"] and welcome["authenticated"], welcome
                assert [sub["stream"] for sub in welcome["subscriptions"]] == ["market_data"]


def _reset(ws: RawWebSocket) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0): no close frame, no FIN."""
    sock = ws.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.writer.transport.abort()


async def _subscribed(r: Running, token: bytes) -> RawWebSocket:
    ws = await RawWebSocket.connect(r.url, rcvbuf=8192)
    await ws.recv_text()
    await ws.send(TEXT, token)
    await ws.recv_text()
    await ws.send(TEXT, b'{"type":"subscribe","stream":"signals","id":"s"}')
    assert json.loads(await ws.recv_text())["status"] == "subscribed"
    return ws


async def test_thousands_of_abrupt_disconnects_mid_send(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """1,200 subscribed clients (6 rounds of 200) reset their TCP connection while stream frames
    are being written to them: afterwards no connection, subscription or address count is left,
    the server answers heartbeats, and memory did not grow from round to round."""
    settings = settings_factory(
        max_connections=1000,
        max_connections_per_address=1000,
        max_connections_per_user=1000,
        stream_history_size=100,
        max_saved_sessions=100,
    )
    async with run_server(transport, settings) as r:
        server = r.server
        auth = json.dumps({"type": "auth", "token": r.token(level=Level.TRADER)}).encode()
        publishing = True

        async def publish() -> None:
            n = 0
            while publishing:
                await server.broadcast_to_subscribers("signals", {"n": n, "pad": "x" * 2000})
                n += 1
                await asyncio.sleep(0.001)

        publisher = asyncio.create_task(publish())
        samples: list[int] = []
        try:
            for _ in range(6):
                clients = await asyncio.gather(*(_subscribed(r, auth) for _ in range(200)))
                await asyncio.sleep(0.05)  # frames in flight to every client
                for ws in clients:
                    _reset(ws)
                await wait_for(lambda: len(server.connection_manager) == 0, TIMEOUT * 2, "all unregistered")
                samples.append(psutil.Process().memory_info().rss)
        finally:
            publishing = False
            await publisher
        assert server.subscription_manager.count(Stream.SIGNALS) == 0
        assert server.connection_manager.address_connections("127.0.0.1") == 0
        assert server.get_stats()["connections"]["opened"] == 1200
        assert samples[-1] - samples[1] < 30 * MiB, [s // MiB for s in samples]
        ws, _ = await open_client(r)
        async with ws:
            assert (await request(ws, {"type": "heartbeat", "id": "alive"}))["id"] == "alive"
