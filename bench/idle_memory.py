"""Idle connections: server memory per open WebSocket connection (DESIGN §7: ≤ 20 KiB each).

usage: ``python bench/idle_memory.py [--steps 1000,5000] [--settle 2]``

Starts tradewire (``_servers.py tradewire``) pinned to core 0, opens idle connections from this
process in steps (each reads its welcome and then sends nothing), and reads the server's RSS after
each step settles. Bytes per connection = (RSS − RSS before any connection) / connections.
Kernel socket buffers are not in RSS. The run is far shorter than the idle timeout (3 × 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import uvloop
from _harness import detect_pinning, raise_nofile_limit, server_command, stop_server, wait_ready
from _loadgen import RRClient, Tally, connect_all

HERE = Path(__file__).resolve().parent
TARGET_BYTES = 20 * 1024
RESULTS = HERE / "results" / "idle_memory.jsonl"


async def _measure(port: int, pid: int, steps: list[int], settle: float) -> dict[str, float]:
    server = psutil.Process(pid)
    await asyncio.sleep(settle)
    base = server.memory_info().rss
    out: dict[str, float] = {"rss_base_mb": round(base / 2**20, 1)}
    clients: list[RRClient] = []
    tally = Tally()
    for step in steps:
        clients += await connect_all(
            f"ws://127.0.0.1:{port}/ws", lambda: RRClient(tally, 0, expect_welcome=True), step - len(clients)
        )
        await asyncio.sleep(settle)
        rss = server.memory_info().rss
        out[f"rss_mb_{step}"] = round(rss / 2**20, 1)
        out[f"bytes_per_conn_{step}"] = round((rss - base) / len(clients))
    for client in clients:
        if client.transport is not None:
            client.transport.disconnect()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="1000,5000")
    parser.add_argument("--settle", type=float, default=2.0)
    args = parser.parse_args()
    steps = [int(step) for step in args.steps.split(",")]
    raise_nofile_limit()
    pinning = detect_pinning()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = server_command(pinning, HERE / "_servers.py", "tradewire", 300, Path(tmp), None)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        try:
            port, pid = (int(field) for field in wait_ready(proc, 30)[:2])
            result = uvloop.run(_measure(port, pid, steps, args.settle))
        finally:
            stop_server(proc, 10)
    result["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # type: ignore[assignment]
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(result) + "\n")
    for step in steps:
        per_conn = result[f"bytes_per_conn_{step}"]
        verdict = "PASS" if per_conn <= TARGET_BYTES else "FAIL"
        sys.stdout.write(
            f"{step:>6} idle connections: RSS {result[f'rss_mb_{step}']} MB "
            f"(base {result['rss_base_mb']} MB), {per_conn:,.0f} B/conn -> {verdict} (<= {TARGET_BYTES})\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
