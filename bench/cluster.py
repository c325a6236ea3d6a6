"""Cluster benchmark: one node vs ``--workers 2`` on this machine, through one Redis (not in CI).

usage: ``python bench/cluster.py [--n 1000] [--rate 20] [--seconds 5] [--flood-seconds 5]
[--modes 1node,2workers] [--redis-url redis://127.0.0.1:6379/0]``

For each mode a ``tradewire serve`` (no engine) runs against Redis; N subscriber connections (this
process, uvloop + websockets) subscribe to ``market_data``; a publisher node in this process (a
``WebSocketAPIServer`` on the same Redis, no listening port) publishes messages carrying
``time.time_ns()``. Reported: deliveries/s in a flood phase (publishing as fast as the publisher
node goes for ``--flood-seconds``) and p50/p99 publish → receive latency at ``--rate`` messages/s.
Every message crosses Redis (publisher node → Redis → serving node(s) → client), so the latency is
the Redis hop plus delivery; compare with ``bench/fanout.py``'s in-process p99 for the hop alone.
The load generator shares the machine: on 2 cores the clients, not the servers, usually limit
deliveries/s — read the server CPU column, and re-run on an idle machine (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
    return total


def worker_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return kids or [parent]


def start_server(
    mode: str, redis_url: str, prefix: str, data_dir: str
) -> tuple[subprocess.Popen[bytes], int]:
    ws_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    env.update(
        TRADEWIRE_REDIS_URL=redis_url,
        TRADEWIRE_REDIS_PREFIX=prefix,
        TRADEWIRE_JWT_SECRET=SECRET,
        TRADEWIRE_DATA_DIR=data_dir,
        TRADEWIRE_WS_PORT=str(ws_port),
        TRADEWIRE_HTTP_PORT=str(http_port),
        TRADEWIRE_ENGINE="false",
        TRADEWIRE_LOG_LEVEL="warning",
        TRADEWIRE_MAX_CONNECTIONS="20000",
        TRADEWIRE_MAX_CONNECTIONS_PER_USER="20000",
        TRADEWIRE_WORKERS="2" if mode == "2workers" else "1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradewire.cli", "serve"], env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", http_port), timeout=0.5):
                time.sleep(1.0 if mode == "2workers" else 0.2)  # the second worker starts after the first
                return proc, ws_port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


async def subscriber(url: str, token: str, ready: asyncio.Event, counts: list[int], lat: list[float]) -> None:
    async with connect(url, max_queue=None, open_timeout=60) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "stream": "market_data"}))
        await ws.recv()
        counts[1] += 1
        if counts[1] == counts[2]:
            ready.set()
        async for raw in ws:
            counts[0] += 1
            if counts[3]:
                sent = json.loads(raw)["data"]["t"]
                lat.append((time.time_ns() - sent) / 1e6)


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from tradewire import Settings, WebSocketAPIServer

    prefix = f"bench-cluster:{uuid.uuid4().hex[:8]}:"
    data_dir = tempfile.mkdtemp(prefix="tw-bench-")
    proc, port = start_server(mode, args.redis_url, prefix, data_dir)
    settings = Settings(
        jwt_secret=SECRET, redis_url=args.redis_url, redis_prefix=prefix, data_dir=Path(data_dir), ws_port=0
    )
    publisher = WebSocketAPIServer(settings=settings)
    await publisher.startup_embedded()
    token = publisher.auth_handler.mint("bench", __import__("tradewire").Level.TRADER, 3600)[0]
    counts, lat, ready = [0, 0, args.n, 0], [], asyncio.Event()
    url = f"ws://127.0.0.1:{port}/ws"
    clients = [asyncio.create_task(subscriber(url, token, ready, counts, lat)) for _ in range(args.n)]
    try:
        await asyncio.wait_for(ready.wait(), 120)
        pids = worker_pids(proc.pid)
        pad = "x" * 100
        # flood
        cpu0, t0, c0 = cpu_seconds(pids), time.monotonic(), counts[0]
        end = t0 + args.flood_seconds
        seq = 0
        while time.monotonic() < end:
            for _ in range(10):
                seq += 1
                publisher.broadcast_provider.publish(
                    __import__("tradewire").Stream.MARKET_DATA,
                    {"symbol": "BTC", "n": seq, "t": 0, "pad": pad},
                )
            await asyncio.sleep(0)
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - t0
        flood = (counts[0] - c0) / elapsed
        server_cpu = cpu_seconds(pids) - cpu0
        # latency at a fixed rate
        counts[3] = 1
        interval = 1 / args.rate
        next_at = time.monotonic()
        stop_at = next_at + args.seconds
        while time.monotonic() < stop_at:
            seq += 1
            publisher.broadcast_provider.publish(
                __import__("tradewire").Stream.MARKET_DATA, {"symbol": "BTC", "n": seq, "t": time.time_ns()}
            )
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(1.0)
        lat.sort()
        return {
            "mode": mode,
            "n": args.n,
            "flood_deliveries_per_s": round(flood),
            "server_cpu_us_per_delivery": round(server_cpu / max(1, counts[0] - c0) * 1e6, 2),
            "latency_rate": args.rate,
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2) if lat else None,
            "samples": len(lat),
        }
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await publisher.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flood-seconds", type=float, default=5.0)
    parser.add_argument("--modes", default="1node,2workers")
    parser.add_argument(
        "--redis-url", default=os.environ.get("TRADEWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for mode in args.modes.split(","):
        result = await run_mode(mode, args)
        print(json.dumps(result))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
