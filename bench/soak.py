"""Soak benchmark: does a long run at a steady load leak memory, errors or latency?

usage: ``python bench/soak.py [--minutes 30] [--connections 1000] [--publish-rate 200]
[--reconnect-rate 10] [--symbols 100] [--heartbeat-interval 5] [--backtest-interval 60]
[--asgi-share 0.5]``

Not part of CI (``make soak``; ``SOAK_MINUTES=5 make soak`` for a short run). One server process
(``_soak_server.py``: tradewire on the picows port and on the ASGI route of its HTTP port, as
``tradewire serve`` runs it, publishing ``--publish-rate`` market_data messages per second over
``--symbols`` symbols) and, in this process, ``--connections`` clients split between the two
endpoints (``--asgi-share``). Every client authenticates as its own user, subscribes to
market_data for one symbol, reads everything, sends a heartbeat every ``--heartbeat-interval``
seconds (its round trip is the latency sample) and checks that offsets only grow. ``--reconnect-rate``
times per second a random client closes and reconnects with its reconnect token, and must get its
session back (``reconnected``, authenticated, subscription restored). Every
``--backtest-interval`` seconds one more client (the Python client, picows port) backtests the
bundled GOOG sample with ``examples/backtest_sample.py``'s SMA cross and awaits its result.

Printed at the end, and appended as one JSON line to ``bench/results/soak.jsonl``:

* server RSS growth per hour: least-squares slope of the RSS samples (every 5 s) after the warm-up
  (the first fifth of the run, at most 5 minutes) — target < 2 MB/h;
* error counts (failed connects, closes the client did not ask for, by code, rejected reconnects,
  heartbeats unanswered within 5 s, error envelopes, offsets that went backwards);
* heartbeat round trip p50/p99 per minute, and the p99 drift (last full minute − first minute after
  the warm-up);
* backtests completed, and their median and longest time from ``session_start`` to result;
* the server's memory by minute (RSS, glibc's heap in use / free but kept / mmapped, Python's
  allocated blocks), and at the stop before and after ``gc.collect()`` + ``malloc_trim(0)``: RSS
  growth that the trim gives back is the allocator keeping freed memory, not live data.

Loopback only (127.0.0.1); the run stops itself: clients after ``--minutes``, the server after its
``--lifetime`` (``--minutes`` + 2 min) even if this process dies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import uvloop
from _harness import (
    BENCH_SECRET,
    BenchError,
    environment,
    percentile,
    raise_nofile_limit,
    server_process,
    source_digest,
    wait_ready,
)
from _soak_server import soak_symbol
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

HERE = Path(__file__).resolve().parent
RESULTS_FILE = HERE / "results" / "soak.jsonl"
HOST = "127.0.0.1"
RSS_TARGET_MB_PER_H = 2.0
SAMPLE_S = 5.0
PONG_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Stats:
    """What every client reports into (one event loop: no locks)."""

    errors: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    rtts: dict[int, list[float]] = field(default_factory=dict)  # minute -> heartbeat round trips (s)
    backtest_seconds: list[float] = field(default_factory=list)  # session_start -> execution_result
    started: float = field(default_factory=time.monotonic)

    def rtt(self, seconds: float) -> None:
        minute = int((time.monotonic() - self.started) // 60)
        self.rtts.setdefault(minute, []).append(seconds)


def token_for(user: str) -> str:
    import jwt

    now = int(time.time())
    claims = {"sub": user, "level": "trader", "iat": now, "exp": now + 24 * 3600}
    return jwt.encode(claims, BENCH_SECRET, algorithm="HS256")


class Client:
    """One user: connect, auth, subscribe, read; heartbeats; reconnects when asked."""

    def __init__(self, index: int, url: str, symbol: str, stats: Stats, heartbeat: float) -> None:
        self.index = index
        self.url = url
        self.symbol = symbol
        self.stats = stats
        self.heartbeat = heartbeat
        self.token = token_for(f"soak-{index}")
        self.reconnect_token: str | None = None
        self.ws: ClientConnection | None = None
        self.closing = False  # this client asked for the close (a reconnect)
        self.last_offset = 0
        self.pending: dict[str, float] = {}  # heartbeat id -> send time

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._session(stop)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.stats.errors[f"connect:{type(exc).__name__}"] += 1
                await asyncio.sleep(1.0)

    async def _session(self, stop: asyncio.Event) -> None:
        headers = {"X-Reconnect-Token": self.reconnect_token} if self.reconnect_token else {}
        async with connect(
            self.url, additional_headers=headers, open_timeout=CONNECT_TIMEOUT_S, ping_interval=None
        ) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT_S))
            self.reconnect_token = welcome["reconnect_token"]
            if self.reconnect_token and headers:
                self._check_restored(welcome)
            else:
                await ws.send(json.dumps({"type": "auth", "token": self.token, "id": "auth"}))
                params = {"symbols": [self.symbol]}
                await ws.send(json.dumps({"type": "subscribe", "stream": "market_data", "params": params}))
            self.ws, self.closing = ws, False
            self.pending = {}  # a heartbeat sent while the previous session closed gets no reply
            beat = asyncio.create_task(self._heartbeats(ws, stop))
            try:
                await self._read(ws, stop)
            finally:
                beat.cancel()
                self.ws = None

    def _check_restored(self, welcome: dict[str, Any]) -> None:
        subscriptions = [s for s in welcome.get("subscriptions", []) if s.get("status") == "subscribed"]
        if not (welcome.get("reconnected") and welcome.get("authenticated") and subscriptions):
            reason = (welcome.get("reconnect_rejected") or {}).get("reason", "not restored")
            self.stats.errors[f"reconnect_rejected:{reason}"] += 1
            self.reconnect_token = None  # start over: fresh session, auth and subscribe again
        else:
            self.stats.events["reconnected"] += 1

    async def _read(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        try:
            async for raw in ws:
                self._message(json.loads(raw))
                if stop.is_set():
                    return
        except ConnectionClosed:
            pass  # reported below from the close code
        code = ws.close_code
        if not self.closing and not stop.is_set():
            self.stats.errors[f"closed:{code}"] += 1

    def _message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "data":
            offset = int(message["offset"])
            if offset <= self.last_offset:
                self.stats.events["duplicate_or_replayed"] += 1
            self.last_offset = max(self.last_offset, offset)
            self.stats.events["data"] += 1
        elif kind == "error":
            self.stats.errors[f"error:{message.get('error_code')}"] += 1
        elif message.get("status") == "pong":
            sent = self.pending.pop(str(message.get("id")), None)
            if sent is not None:
                self.stats.rtt(time.perf_counter() - sent)

    async def _heartbeats(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        await asyncio.sleep(random.uniform(0, self.heartbeat))
        n = 0
        while not stop.is_set() and not self.closing:
            now = time.perf_counter()
            late = [key for key, sent in self.pending.items() if now - sent > PONG_TIMEOUT_S]
            for key in late:
                del self.pending[key]
                self.stats.errors["heartbeat_unanswered"] += 1
            key = f"{self.index}-{n}"
            n += 1
            self.pending[key] = now
            try:
                await ws.send(json.dumps({"type": "heartbeat", "id": key}))
            except ConnectionClosed:
                return
            await asyncio.sleep(self.heartbeat)

    async def reconnect(self) -> bool:
        """Close this session normally; :meth:`run` reconnects with the token. False if not connected."""
        ws = self.ws
        if ws is None or self.closing:
            return False
        self.closing = True
        self.pending.clear()
        await ws.close()
        return True


async def reconnector(clients: list[Client], rate: float, stats: Stats, stop: asyncio.Event) -> None:
    if rate <= 0:
        return
    loop = asyncio.get_running_loop()
    due = loop.time()
    while not stop.is_set():
        due += 1 / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        for _ in range(5):  # a few tries to find a connected client
            if await random.choice(clients).reconnect():
                stats.events["reconnects_started"] += 1
                break


def sma_cross_strategy() -> dict[str, Any]:
    """The SMA(10)/SMA(30) strategy of ``examples/backtest_sample.py`` (one definition of it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "backtest_sample", HERE.parent / "examples" / "backtest_sample.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.SMA_CROSS)


async def backtester(url: str, interval: float, stats: Stats, stop: asyncio.Event) -> None:
    """A backtest of the bundled GOOG sample every ``interval`` seconds, through the Python
    client, each awaited to its ``execution_result``; counts completions, failures, durations."""
    from tradewire.client import Client, ClientError

    if interval <= 0:
        return
    async with Client(url, token_for("soak-backtester"), request_timeout=60) as client:
        await client.upsert_strategy(sma_cross_strategy())
        goog = (await client.query("datasets", symbol="GOOG"))[0]["id"]
        results = await client.subscribe("execution_result")
        while not stop.is_set():
            started_at = time.monotonic()
            try:
                reply = await client.session_start("backtest", {"sma_cross": ["GOOG"]}, {"dataset_id": goog})
                while True:
                    message = await results.get(timeout=interval)
                    if message.data["session_id"] == reply["session_id"]:
                        break
            except (ClientError, TimeoutError) as exc:
                stats.errors[f"backtest:{type(exc).__name__}"] += 1
            else:
                status = message.data["status"]
                if status == "completed":
                    stats.events["backtests_completed"] += 1
                    stats.backtest_seconds.append(time.monotonic() - started_at)
                else:
                    stats.errors[f"backtest:{status}"] += 1
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, interval - (time.monotonic() - started_at)))
            except TimeoutError:
                continue


async def sample_rss(pid: int, samples: list[tuple[float, int]], stop: asyncio.Event, started: float) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        samples.append((time.monotonic() - started, int(process.memory_info().rss)))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_S)
        except TimeoutError:
            continue


def slope_mb_per_hour(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, in MB (10^6 bytes) per hour."""
    if len(samples) < 3:
        return float("nan")
    xs = [t for t, _ in samples]
    ys = [rss for _, rss in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return cov / var * 3600 / 1e6


async def open_clients(args: argparse.Namespace, ws_port: int, http_port: int, stats: Stats) -> list[Client]:
    asgi_count = round(args.connections * args.asgi_share)
    clients = []
    for i in range(args.connections):
        port = http_port if i < asgi_count else ws_port
        url = f"ws://{HOST}:{port}/ws"
        clients.append(Client(i, url, soak_symbol(i % args.symbols), stats, args.heartbeat_interval))
    return clients


async def drive(args: argparse.Namespace, pid: int, ws_port: int, http_port: int) -> dict[str, Any]:
    stats = Stats()
    stop = asyncio.Event()
    clients = await open_clients(args, ws_port, http_port, stats)
    tasks = []
    for client in clients:  # ramp up: 100 connections per 0.1 s
        tasks.append(asyncio.create_task(client.run(stop)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.1)
    samples: list[tuple[float, int]] = []
    sampler = asyncio.create_task(sample_rss(pid, samples, stop, stats.started))
    churn = asyncio.create_task(reconnector(clients, args.reconnect_rate, stats, stop))
    backtests = asyncio.create_task(
        backtester(f"ws://{HOST}:{ws_port}/ws", args.backtest_interval, stats, stop)
    )
    await asyncio.sleep(args.minutes * 60)
    stop.set()
    await asyncio.gather(sampler, churn, backtests)
    for client in clients:
        if client.ws is not None:
            client.closing = True
            await client.ws.close()
    await asyncio.wait(tasks, timeout=30)
    for task in tasks:
        task.cancel()
    return report(args, stats, samples)


def report(args: argparse.Namespace, stats: Stats, samples: list[tuple[float, int]]) -> dict[str, Any]:
    warmup = min(300.0, args.minutes * 60 / 5)
    steady = [(t, rss) for t, rss in samples if t >= warmup]
    minutes = sorted(stats.rtts)
    per_minute = {
        m: {
            "n": len(stats.rtts[m]),
            "p50_ms": round(percentile(stats.rtts[m], 0.5) * 1e3, 3),
            "p99_ms": round(percentile(stats.rtts[m], 0.99) * 1e3, 3),
        }
        for m in minutes
    }
    full = [m for m in minutes if (m + 1) * 60 <= args.minutes * 60 and m * 60 >= warmup]
    drift = per_minute[full[-1]]["p99_ms"] - per_minute[full[0]]["p99_ms"] if len(full) >= 2 else None
    growth = slope_mb_per_hour(steady)
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": vars(args),
        "source": source_digest(),
        "environment": environment(("uvicorn", "websockets")),
        "rss_mb": {
            "start": round(samples[0][1] / 1e6, 1) if samples else None,
            "after_warmup": round(steady[0][1] / 1e6, 1) if steady else None,
            "end": round(samples[-1][1] / 1e6, 1) if samples else None,
            "warmup_s": warmup,
            "growth_mb_per_h": round(growth, 2),
            "target_mb_per_h": RSS_TARGET_MB_PER_H,
            "pass": growth < RSS_TARGET_MB_PER_H,
        },
        "rss_mb_by_minute": {int(t // 60): round(rss / 1e6, 1) for t, rss in samples},
        "errors": dict(stats.errors),
        "events": dict(stats.events),
        "heartbeat_rtt_by_minute": per_minute,
        "p99_drift_ms": None if drift is None else round(drift, 3),
        "backtest_seconds": {
            "n": len(stats.backtest_seconds),
            "median": round(statistics.median(stats.backtest_seconds), 3) if stats.backtest_seconds else None,
            "max": round(max(stats.backtest_seconds), 3) if stats.backtest_seconds else None,
        },
    }


def print_report(result: dict[str, Any]) -> None:
    rss, p = result["rss_mb"], result["params"]
    share = f"{p['asgi_share']:.0%} on the ASGI route"
    print(f"\nsoak: {p['minutes']} min, {p['connections']} connections ({share}),")
    load = f"{p['publish_rate']:.0f} publishes/s over {p['symbols']} symbols"
    print(f"      {load}, {p['reconnect_rate']} reconnects/s")
    warmup = f"{rss['after_warmup']} MB after the {rss['warmup_s']:.0f} s warm-up"
    print(f"RSS: {rss['start']} MB at start, {warmup},")
    print(f"     {rss['end']} MB at the end")
    verdict = "PASS" if rss["pass"] else "FAIL"
    target = f"target < {rss['target_mb_per_h']} MB/h"
    print(f"RSS growth after warm-up: {rss['growth_mb_per_h']} MB/h ({target}): {verdict}")
    print("RSS at the end of each minute (MB): " + ", ".join(map(str, result["rss_mb_by_minute"].values())))
    print(f"errors: {result['errors'] or 'none'}")
    print(f"events: {result['events']}")
    print("heartbeat round trip by minute (n, p50 ms, p99 ms):")
    for minute, row in result["heartbeat_rtt_by_minute"].items():
        print(f"  {minute:>3}: {row['n']:>6} {row['p50_ms']:>8} {row['p99_ms']:>8}")
    print(f"p99 drift (last full minute - first after warm-up): {result['p99_drift_ms']} ms")
    memory = result.get("server_memory", [])
    if memory:
        print("server memory by minute (RSS / glibc in use / glibc free kept / mmapped MB, Python blocks):")
        for row in memory:
            if "top" in row:
                print(f"  cyclic garbage at the stop: {row['objects']} objects, most: {row['top']}")
                continue
            label = row.get("minute", row.get("at"))
            glibc = "/".join(
                str(row.get(k, "-")) for k in ("malloc_in_use_mb", "malloc_free_kept_mb", "malloc_mmapped_mb")
            )
            print(f"  {label}: {row['rss_mb']} / {glibc}, {row['pymalloc_blocks']}")
    backtests = result["backtest_seconds"]
    print(f"backtests completed: {backtests['n']} (median {backtests['median']} s, max {backtests['max']} s)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--publish-rate", type=float, default=200.0)
    parser.add_argument("--reconnect-rate", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument(
        "--backtest-interval", type=float, default=60.0, help="seconds between GOOG backtests (0: none)"
    )
    parser.add_argument("--asgi-share", type=float, default=0.5, help="fraction of clients on the ASGI route")
    parser.add_argument(
        "--snapshot-dir", type=Path, default=None, help="server: tracemalloc snapshot every minute"
    )
    args = parser.parse_args()
    raise_nofile_limit()
    lifetime = args.minutes * 60 + 120
    with tempfile.TemporaryDirectory() as workdir:
        memory_log = Path(workdir) / "memory.jsonl"
        cmd = [
            sys.executable,
            str(HERE / "_soak_server.py"),
            f"--lifetime={lifetime}",
            f"--data-dir={workdir}",
            f"--publish-rate={args.publish_rate}",
            f"--symbols={args.symbols}",
            f"--memory-log={memory_log}",
        ]
        if args.snapshot_dir is not None:
            args.snapshot_dir.mkdir(parents=True, exist_ok=True)
            cmd.append(f"--snapshot-dir={args.snapshot_dir.resolve()}")
        with server_process(cmd, Path(workdir) / "server.stderr") as (proc, outcome):
            ws_port, pid, http_port = (int(v) for v in wait_ready(proc, 30, min_fields=3)[:3])
            result = uvloop.run(asyncio.wait_for(drive(args, pid, ws_port, http_port), lifetime))
        if outcome.failed:
            raise BenchError(f"soak server failed: {outcome.failed}")
        if memory_log.exists():
            result["server_memory"] = [json.loads(line) for line in memory_log.read_text().splitlines()]
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    with RESULTS_FILE.open("a") as out:
        out.write(json.dumps(result, default=str) + "\n")
    print_report(result)
    return 0 if result["rss_mb"]["pass"] and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
