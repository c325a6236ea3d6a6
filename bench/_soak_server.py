"""The server process of ``bench/soak.py``: tradewire on both endpoints, publishing by itself.

usage: ``_soak_server.py --lifetime SECONDS [--data-dir DIR] [--publish-rate N] [--symbols N]``

What ``tradewire serve`` runs (picows engine on one port, the HTTP app with the ASGI route under
uvicorn with ``server.uvicorn_options()`` on another), with the reference engine (sessions, for
the driver's backtests) and a synthetic feed that only declares the symbols: a publisher puts
``--publish-rate`` ``market_data`` messages per second on the bus path, spread over
``--symbols`` symbols. Limits are the defaults except those a single-address load generator
must lift (per-address connections, reconnect attempts per address, per-user connections, rate
limit).
Listens on 127.0.0.1 only; prints ``READY <ws_port> <pid> <http_port>``; stops on SIGTERM/SIGINT
or when ``--lifetime`` runs out (``SIGALRM`` is the backstop if the loop is stuck).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

import uvloop
from _harness import BENCH_SECRET, raise_nofile_limit
from _servers import ALARM_MARGIN_S, HOST

PUBLISH_TICK_S = 0.01


def soak_symbol(index: int) -> str:
    return f"S{index:03d}"


def soak_symbols(count: int) -> list[str]:
    return [soak_symbol(i) for i in range(count)]


async def publish(server: object, rate: float, symbols: int, stop: asyncio.Event) -> None:
    """``rate`` messages per second, in ticks of 10 ms, on a fixed schedule (no drift)."""
    from tradewire import WebSocketAPIServer

    assert isinstance(server, WebSocketAPIServer)
    loop = asyncio.get_running_loop()
    per_tick = rate * PUBLISH_TICK_S
    due, sent, n = loop.time(), 0.0, 0
    while not stop.is_set():
        sent += per_tick
        while sent >= 1:
            sent -= 1
            symbol = soak_symbol(n % symbols)
            price = 100.0 + (n % 1000) / 100
            await server.broadcast_to_subscribers(
                "market_data", {"symbol": symbol, "price": price, "event": "market.price_update", "n": n}
            )
            n += 1
        due += PUBLISH_TICK_S
        await asyncio.sleep(max(0.0, due - loop.time()))


async def dump_snapshots(directory: Path, stop: asyncio.Event) -> None:
    """Diagnosis of RSS growth: a tracemalloc snapshot every minute (compare the first and last
    with ``python -c "import tracemalloc; ..."``, ``Snapshot.load(...).compare_to(...)``)."""
    import tracemalloc

    tracemalloc.start(8)
    minute = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 60)
        except TimeoutError:
            minute += 1
            tracemalloc.take_snapshot().dump(str(directory / f"snapshot-{minute:03d}.tracemalloc"))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    """glibc ≥ 2.33 (``mallinfo2``, ``malloc_trim``); None elsewhere (the log then has RSS only)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
    except (OSError, AttributeError):
        return None
    return libc


def memory_record(libc: ctypes.CDLL | None) -> dict[str, float]:
    """Where the process's memory is: RSS; glibc's heap in use, free but kept (fragmentation,
    returned to the OS only by ``malloc_trim``) and mmapped; pymalloc's allocated blocks (Python
    objects; its arenas are mmapped by CPython itself, outside glibc's figures)."""
    mb = 1e6
    rss_pages = int(Path("/proc/self/statm").read_text().split()[1])
    record: dict[str, float] = {"rss_mb": round(rss_pages * os.sysconf("SC_PAGE_SIZE") / mb, 1)}
    if libc is not None:
        info = libc.mallinfo2()
        record["malloc_in_use_mb"] = round(info.uordblks / mb, 1)
        record["malloc_free_kept_mb"] = round(info.fordblks / mb, 1)
        record["malloc_mmapped_mb"] = round(info.hblkhd / mb, 1)
    record["pymalloc_blocks"] = sys.getallocatedblocks()
    record["gc_objects"] = len(gc.get_objects())
    return record


async def log_memory(path: Path, stop: asyncio.Event) -> None:
    """One :func:`memory_record` a minute as a JSON line; at the stop, one more, then one after
    ``gc.collect()`` and ``malloc_trim(0)``: what the process would hold if cyclic garbage and the
    allocator's free lists were given back (growth that survives that is live data); between the
    two, the types of the cyclic garbage the collection freed."""
    libc = _libc()
    minute = 0
    with path.open("a") as out:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 60)
            except TimeoutError:
                minute += 1
                out.write(json.dumps({"minute": minute, **memory_record(libc)}) + "\n")
                out.flush()
        out.write(json.dumps({"at": "stop", **memory_record(libc)}) + "\n")
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collection frees: the run's cyclic garbage
        try:
            gc.collect()
            garbage = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        top = dict(garbage.most_common(15))
        out.write(json.dumps({"at": "cyclic_garbage", "objects": garbage.total(), "top": top}) + "\n")
        if libc is not None:
            libc.malloc_trim(0)
        out.write(json.dumps({"at": "stop_after_collect_and_trim", **memory_record(libc)}) + "\n")


async def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tradewire import Settings, WebSocketAPIServer
    from tradewire.config import LogFormat
    from tradewire.engine.controller import EmbeddedEngine
    from tradewire.http.app import create_http_app
    from tradewire.logs import configure_logging
    from tradewire.runner import EmbeddedUvicorn

    configure_logging(LogFormat.CONSOLE, "warning")
    raise_nofile_limit()
    settings = Settings(
        host=HOST,
        ws_port=0,
        http_port=0,
        jwt_secret=BENCH_SECRET,
        data_dir=args.data_dir,
        # The reference engine runs for the driver's backtests. Its synthetic feed only declares
        # the soak's symbols (subscriptions are checked against the engine's live symbols) and
        # ticks once an hour: the market data of the run is ``publish``'s.
        synthetic_symbols=soak_symbols(args.symbols),
        synthetic_interval=3600.0,
        max_connections=5000,
        max_connections_per_address=5000,  # the load generator is one address
        max_connections_per_user=5000,
        reconnect_attempts_per_minute=1e6,
        reconnect_burst=100_000,
        rate_limit_per_minute=6000,
        rate_limit_burst=200,
        log_level="warning",
    )
    server = WebSocketAPIServer(settings=settings, controller=EmbeddedEngine(settings))
    await server.start()
    http = EmbeddedUvicorn(
        uvicorn.Config(
            create_http_app(server),
            host=HOST,
            port=0,
            log_config=None,
            access_log=False,
            lifespan="off",
            **server.uvicorn_options(),
        )
    )
    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():
            http_task.result()
        await asyncio.sleep(0.01)
    http_port = http.servers[0].sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    publisher = asyncio.create_task(publish(server, args.publish_rate, args.symbols, stop))
    snapshots = asyncio.create_task(dump_snapshots(args.snapshot_dir, stop)) if args.snapshot_dir else None
    memory = asyncio.create_task(log_memory(args.memory_log, stop)) if args.memory_log else None
    print(f"READY {server.engine.port} {os.getpid()} {http_port}", flush=True)
    exit_code = 0
    try:
        await asyncio.wait_for(stop.wait(), args.lifetime)
    except TimeoutError:
        print(f"soak server: lifetime of {args.lifetime:.0f} s exceeded, stopping", file=sys.stderr)
        exit_code = 3
    stop.set()
    await publisher
    if snapshots is not None:
        await snapshots
    if memory is not None:
        await memory
    await server.stop(timeout=5.0)
    http.should_exit = True
    await asyncio.wait_for(http_task, 10)
    return exit_code


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lifetime", type=float, required=True, help="seconds before the server stops itself"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--publish-rate", type=float, default=200.0, help="market_data messages per second")
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--snapshot-dir", type=Path, default=None, help="tracemalloc snapshot every minute")
    parser.add_argument(
        "--memory-log", type=Path, default=None, help="JSON lines: memory breakdown every minute"
    )
    args = parser.parse_args()
    signal.alarm(int(args.lifetime) + ALARM_MARGIN_S)
    sys.exit(uvloop.run(serve(args)))


if __name__ == "__main__":
    main()
