"""Server memory under the transport attacks of issue 9, against a real ``tradewire serve``.

usage: ``python bench/attacks.py [--only NAME ...] [--pythonpath DIR]``

Starts ``tradewire serve`` (loopback, dev mode, reference engine with a fast synthetic feed so the
streams are busy) and measures its RSS (psutil) around each attack, on both ports where it applies:

* ``bomb``: 20 parallel permessage-deflate messages inflating to 16 MiB each (~16 KB on the wire);
* ``big``: one uncompressed 15 MiB text message;
* ``pings``: 400,000 pings from a client that never reads the pongs (4 KiB receive buffer);
* ``reader``: a client subscribed to four busy streams that never reads, watched for 40 s;
* ``slowloris``: 300 half-sent upgrade requests, counted after 15 s.

Prints one line per attack and port: RSS before, peak and after, the close code the client saw and
what the server still holds. ``--pythonpath DIR`` runs the server from another source tree (e.g. an
export of an older commit) to compare. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
from _harness import BENCH_SECRET, free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rawws import PING, TEXT, RawWebSocket, encode_frame, open_tcp  # noqa: E402

MiB = 1024 * 1024
HOST = "127.0.0.1"


def bomb_payload() -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b'{"type":"heartbeat","pad":"')
    for _ in range(16):
        body += compressor.compress(b" " * MiB)
    body += compressor.compress(b'"}') + compressor.flush(zlib.Z_SYNC_FLUSH)
    return body[:-4]


def token(user: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode(
        {"sub": user, "level": "trader", "iat": now, "exp": now + 3600}, BENCH_SECRET, algorithm="HS256"
    )


class Watch:
    """Samples the server's RSS every 20 ms while an attack runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.rss()
        self.peak = self.before
        self._task = asyncio.get_running_loop().create_task(self._sample())

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            await asyncio.sleep(0.02)

    async def done(self) -> tuple[float, float, float]:
        self._task.cancel()
        after = self.rss()
        self.peak = max(self.peak, after)
        return self.before / MiB, self.peak / MiB, after / MiB


async def attack_bomb(url: str) -> str:
    bomb = bomb_payload()
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate"}
    clients = [await RawWebSocket.connect(url, offer) for _ in range(20)]
    for ws in clients:
        await ws.recv_text()
        await ws.send(TEXT, bomb, rsv=4)
    codes = await asyncio.gather(*(ws.expect_close(timeout=20) for ws in clients), return_exceptions=True)
    for ws in clients:
        await ws.aclose()
    return "closes " + ",".join(sorted({str(getattr(c, "close_code", type(c).__name__)) for c in codes}))


async def attack_big(url: str) -> str:
    ws = await RawWebSocket.connect(url)
    await ws.recv_text()
    try:
        await ws.send_raw(encode_frame(TEXT, b'{"type":"heartbeat","pad":"' + b" " * (15 * MiB) + b'"}'))
    except ConnectionError as exc:
        return f"client write failed: {type(exc).__name__}"
    code = (await ws.expect_close(timeout=20)).close_code
    await ws.aclose()
    return f"close {code}"


async def attack_pings(url: str) -> str:
    ws = await RawWebSocket.connect(url, rcvbuf=4096)
    await ws.recv_text()
    chunk = b"".join(encode_frame(PING, b"p" * 32) for _ in range(1000))
    sent = 0
    for _ in range(400):
        ws.writer.write(chunk)
        try:
            await asyncio.wait_for(ws.writer.drain(), 5)
        except (TimeoutError, ConnectionError) as exc:
            return f"server stopped reading after {sent} pings ({type(exc).__name__})"
        sent += 1000
    await asyncio.sleep(2)
    await ws.aclose()
    return f"{sent} pings sent, connection still accepted them"


async def attack_reader(url: str, http_port: int) -> str:
    ws = await RawWebSocket.connect(url, rcvbuf=4096)
    await ws.recv_text()
    await ws.send(TEXT, json.dumps({"type": "auth", "token": token("reader")}).encode())
    for stream in ("market_data", "indicators", "signals", "state_machines"):
        await ws.send(TEXT, json.dumps({"type": "subscribe", "stream": stream}).encode())
    await asyncio.sleep(40)
    stats = await http_stats(http_port)
    await ws.aclose()
    return f"after 40 s: registered {stats['connections']['current']}"


async def attack_slowloris(port: int) -> str:
    conns = [await open_tcp(port) for _ in range(300)]
    for _, writer in conns:
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
    await asyncio.sleep(15)
    open_count = 0
    for reader, writer in conns:
        try:
            data = await asyncio.wait_for(reader.read(1024), 0.01)
        except TimeoutError:
            open_count += 1
        else:
            open_count += 0 if data == b"" or data.startswith(b"HTTP/1.1 408") else 1
        writer.close()
    return f"{open_count} of 300 still open after 15 s"


async def http_stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET /stats HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    body = (await reader.read()).split(b"\r\n\r\n", 1)[1]
    writer.close()
    return json.loads(body)  # type: ignore[no-any-return]


async def run(args: argparse.Namespace, pid: int, ws_port: int, http_port: int) -> None:
    urls = {"ws": f"ws://{HOST}:{ws_port}/ws", "http": f"ws://{HOST}:{http_port}/ws"}
    attacks: dict[str, Callable[[str, str], Awaitable[str]]] = {
        "bomb": lambda port, url: attack_bomb(url),
        "big": lambda port, url: attack_big(url),
        "pings": lambda port, url: attack_pings(url),
        "reader": lambda port, url: attack_reader(url, http_port),
        "slowloris": lambda port, url: attack_slowloris(ws_port if port == "ws" else http_port),
    }
    await asyncio.sleep(15)  # warm-up: histories fill, the engine settles
    print(f"{'attack':<10} {'port':<5} {'RSS MiB before':>15} {'peak':>8} {'after':>8}  outcome", flush=True)
    for name, attack in attacks.items():
        if args.only and name not in args.only:
            continue
        for port in ("ws", "http"):
            closes_before = (await http_stats(http_port))["closes"]
            watch = Watch(pid)
            try:
                outcome = await asyncio.wait_for(attack(port, urls[port]), 120)
            except (OSError, TimeoutError, AssertionError, EOFError) as exc:
                outcome = f"client error: {type(exc).__name__}: {exc}"
            await asyncio.sleep(6)  # past close_timeout: what is still held
            before, peak, after = await watch.done()
            stats = await http_stats(http_port)
            closes = {
                k: v - closes_before.get(k, 0)
                for k, v in stats["closes"].items()
                if v != closes_before.get(k)
            }
            held = f"server closes {closes or '-'}, registered {stats['connections']['current']}"
            row = f"{name:<10} {port:<5} {before:>15.1f} {peak:>8.1f} {after:>8.1f}"
            print(f"{row}  {outcome}; {held}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--pythonpath", default=None, help="source tree of the server (default: installed)")
    args = parser.parse_args()
    ws_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as workdir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
        env.update(
            TRADEWIRE_JWT_SECRET=BENCH_SECRET,
            TRADEWIRE_DATA_DIR=workdir,
            TRADEWIRE_WS_PORT=str(ws_port),
            TRADEWIRE_HTTP_PORT=str(http_port),
            TRADEWIRE_SYNTHETIC_INTERVAL="0.002",
            TRADEWIRE_LOG_LEVEL="error",
        )
        if args.pythonpath:
            env["PYTHONPATH"] = args.pythonpath
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradewire.cli", "serve"], env=env, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(3)
            asyncio.run(asyncio.wait_for(run(args, proc.pid, ws_port, http_port), 1200))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
