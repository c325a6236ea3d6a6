"""Cluster benchmark: one node vs ``--workers 2`` on this machine, through one Redis (not in CI).

usage: ``python bench/cluster.py [--n 1000] [--rate 20] [--seconds 5] [--flood-seconds 5] [--flood-rate 200]
[--modes hop,1node,2workers] [--redis-url redis://127.0.0.1:6379/0]``

Modes: ``hop`` measures publish → a node's delivery callback through the memory broker and
through Redis (two broker instances, no sockets): the latency the Redis hop adds. ``1node`` and
``2workers`` start ``tradewire serve`` (no engine) against Redis; N subscribers of ``market_data``
run in a child process (uvloop + websockets; every 20th one is a latency probe), and a publisher
node in this process (a ``WebSocketAPIServer`` on the same Redis, no listening port) publishes,
so every message crosses Redis (publisher → Lua script → PUBLISH → serving node(s) → clients).
Reported: deliveries/s in a flood phase (``--flood-rate`` publications/s for ``--flood-seconds``;
offered = rate × N), server CPU µs per delivery, Redis CPU µs per publication (``INFO cpu``),
and p50/p99 publish → receive at ``--rate``/s.
``publisher_unshared`` must be 0: otherwise the publisher lost Redis and the run is invalid.
The load generator shares the 2 cores with the servers and Redis: it, not the servers, usually
bounds deliveries/s; read the server CPU column (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import BENCH_SECRET, free_port, percentile
from websockets.asyncio.client import connect


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
        TRADEWIRE_JWT_SECRET=BENCH_SECRET,
        TRADEWIRE_DATA_DIR=data_dir,
        TRADEWIRE_WS_PORT=str(ws_port),
        TRADEWIRE_HTTP_PORT=str(http_port),
        TRADEWIRE_ENGINE="false",
        TRADEWIRE_LOG_LEVEL="warning",
        TRADEWIRE_MAX_CONNECTIONS="20000",
        TRADEWIRE_MAX_CONNECTIONS_PER_USER="20000",
        TRADEWIRE_MAX_CONNECTIONS_PER_ADDRESS="20000",  # every bench client comes from 127.0.0.1
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


async def redis_cpu(url: str) -> float:
    """Redis's own CPU seconds (user + sys, all its threads) from ``INFO cpu``."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def subscriber(
    url: str, token: str, probe: bool, ready: asyncio.Event, counts: list[int], lat: list[float]
) -> None:
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
            if probe:
                sent = json.loads(raw)["data"]["t"]
                if sent:  # flood messages carry t=0
                    lat.append((time.time_ns() - sent) / 1e6)


async def client_process(args: argparse.Namespace) -> None:
    """``--role clients``: hold N subscribers (every 20th a latency probe) in this process and
    answer the parent on stdin/stdout: ``count`` → deliveries so far, ``report`` → latencies."""
    counts, lat, ready = [0, 0, args.n], [], asyncio.Event()
    tasks = [
        asyncio.create_task(subscriber(args.url, args.token, i % 20 == 0, ready, counts, lat))
        for i in range(args.n)
    ]
    await asyncio.wait_for(ready.wait(), 120)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "count":
            print(counts[0], flush=True)
        elif line == "clear":
            lat.clear()
            print("ok", flush=True)
        else:
            lat.sort()
            print(json.dumps(lat), flush=True)
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Clients:
    """The parent's handle on the ``--role clients`` child."""

    def __init__(self, url: str, token: str, n: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "clients", "--url", url, "--token", token, "--n", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError("clients did not start")


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from tradewire import Level, Settings, Stream, WebSocketAPIServer

    prefix = f"bench-cluster:{uuid.uuid4().hex[:8]}:"
    data_dir = tempfile.mkdtemp(prefix="tw-bench-")
    proc, port = start_server(mode, args.redis_url, prefix, data_dir)
    settings = Settings(
        jwt_secret=BENCH_SECRET,
        redis_url=args.redis_url,
        redis_prefix=prefix,
        data_dir=Path(data_dir),
        ws_port=0,
    )
    publisher = WebSocketAPIServer(settings=settings)
    await publisher.startup_embedded()
    token = publisher.auth_handler.mint("bench", Level.TRADER, 3600)[0]
    clients = Clients(f"ws://127.0.0.1:{port}/ws", token, args.n)
    try:
        await clients.ready()
        pids = worker_pids(proc.pid)
        pad = "x" * 100
        # flood: paced at --flood-rate, in 5 ms ticks
        redis0 = await redis_cpu(args.redis_url)
        cpu0, t0, c0 = cpu_seconds(pids), time.monotonic(), int(await clients.ask("count"))
        end = t0 + args.flood_seconds
        seq, tick = 0, 0.005
        per_tick = max(1, round(args.flood_rate * tick))
        next_at = t0
        while time.monotonic() < end:
            for _ in range(per_tick):
                seq += 1
                publisher.broadcast_provider.publish(
                    Stream.MARKET_DATA, {"symbol": "BTC", "n": seq, "t": 0, "pad": pad}
                )
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        published = seq
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - t0
        delivered = int(await clients.ask("count")) - c0
        server_cpu = cpu_seconds(pids) - cpu0
        redis_used = await redis_cpu(args.redis_url) - redis0
        # let what the flood queued drain (or be dropped as slow-consumer backlog) before timing
        previous, drained_by = -1, time.monotonic() + 15
        while time.monotonic() < drained_by:
            now = int(await clients.ask("count"))
            if now == previous:
                break
            previous = now
            await asyncio.sleep(0.5)
        # latency at a fixed rate
        await clients.ask("clear")
        interval = 1 / args.rate
        next_at = time.monotonic()
        stop_at = next_at + args.seconds
        while time.monotonic() < stop_at:
            seq += 1
            publisher.broadcast_provider.publish(
                Stream.MARKET_DATA, {"symbol": "BTC", "n": seq, "t": time.time_ns()}
            )
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(1.0)
        lat = json.loads(await clients.ask("report"))
        return {
            "mode": mode,
            "n": args.n,
            "flood_offered_per_s": round(published * args.n / args.flood_seconds),
            "flood_delivered_share": round(delivered / max(1, published * args.n), 3),
            "flood_deliveries_per_s": round(delivered / elapsed),
            "server_cpu_us_per_delivery": round(server_cpu / max(1, delivered) * 1e6, 2),
            "redis_cpu_us_per_publication": round(redis_used / max(1, published) * 1e6, 1),
            "latency_rate": args.rate,
            "p50_ms": round(percentile(lat, 0.5), 2) if lat else None,
            "p99_ms": round(percentile(lat, 0.99), 2) if lat else None,
            "samples": len(lat),
            "publisher_unshared": publisher.metrics.cluster["unshared"],  # must be 0 for a valid run
            "publisher_degraded": publisher.broker.health().get("degraded", False),
        }
    finally:
        if clients.proc.poll() is None:
            clients.proc.kill()
        clients.proc.wait()
        await publisher.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


class _Recorder:
    """A broker handler that records publish → deliver time (``t`` is ``perf_counter_ns``)."""

    def __init__(self) -> None:
        self.lat_us: list[float] = []

    def deliver(self, stream: Any, entry: Any, exclude_client: str | None) -> int:
        self.lat_us.append((time.perf_counter_ns() - entry.data["t"]) / 1e3)
        return 1

    def reset(self, stream: Any, offset: int, epoch: str) -> None:
        return None


async def measure_hop(args: argparse.Namespace) -> dict[str, Any]:
    """Publish → this node's ``deliver`` through the memory broker and through Redis (two broker
    instances: node A publishes, node B delivers), at ``--rate`` per second for ``--seconds``: the
    latency the Redis hop adds before any socket write."""
    from tradewire.clock import SystemClock
    from tradewire.metrics import ServerMetrics
    from tradewire.protocol.messages import Stream
    from tradewire.streams.broker_memory import MemoryBroker
    from tradewire.streams.broker_redis import RedisBroker

    stream = Stream.MARKET_DATA
    prefix = f"bench-hop:{uuid.uuid4().hex[:8]}:"
    memory, mem_rec = MemoryBroker(SystemClock()), _Recorder()
    memory.attach(mem_rec, lambda s: s is stream)
    node_a = RedisBroker(args.redis_url, prefix, SystemClock(), ServerMetrics())
    node_b, redis_rec = RedisBroker(args.redis_url, prefix, SystemClock(), ServerMetrics()), _Recorder()
    node_a.attach(_Recorder(), lambda s: False)
    node_b.attach(redis_rec, lambda s: s is stream)
    await node_a.start()
    await node_b.start()
    await node_b.ready(stream)
    try:
        count = int(args.rate * args.seconds)
        for broker in (memory, node_a):
            next_at = time.monotonic()
            for n in range(count):
                broker.publish(stream, {"symbol": "BTC", "n": n, "t": time.perf_counter_ns()})
                next_at += 1 / args.rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.5)
    finally:
        await node_a.stop()
        await node_b.stop()

    def pct(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 1) if values else None

    return {
        "mode": "hop",
        "rate": args.rate,
        "memory_p50_us": pct(mem_rec.lat_us, 0.5),
        "memory_p99_us": pct(mem_rec.lat_us, 0.99),
        "redis_p50_us": pct(redis_rec.lat_us, 0.5),
        "redis_p99_us": pct(redis_rec.lat_us, 0.99),
        "redis_delivered": len(redis_rec.lat_us),
        "published": int(args.rate * args.seconds),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flood-seconds", type=float, default=5.0)
    parser.add_argument("--flood-rate", type=float, default=200.0, help="publications/s in the flood phase")
    parser.add_argument("--modes", default="hop,1node,2workers")
    parser.add_argument(
        "--redis-url", default=os.environ.get("TRADEWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--role", default="bench", choices=["bench", "clients"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "clients":
        await client_process(args)
        return
    print(f"load average before: {os.getloadavg()}")
    for mode in args.modes.split(","):
        result = await (measure_hop(args) if mode == "hop" else run_mode(mode, args))
        print(json.dumps(result))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
