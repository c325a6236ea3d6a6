"""The two servers compared by ``bench/rr_heartbeat.py``, one per process.

usage: ``_servers.py {bare,tradewire} --lifetime SECONDS [--data-dir DIR] [--profile FILE]``

* ``bare``: picows + orjson, the floor — decode the request, answer ``{"type":"status","status":"pong",
  "id":N}``. Serves any path.
* ``tradewire``: :class:`tradewire.WebSocketAPIServer` with the limits opened wide (rate limit, capacity)
  and logging at ``warning``, so the heartbeat path is what gets measured. Serves ``/ws``.

Both run on uvloop, listen on 127.0.0.1 only, bind port 0 (the kernel picks a free port) and print
``READY <port> <pid>`` on stdout once they accept connections. They stop on SIGTERM/SIGINT or when
``--lifetime`` runs out; ``SIGALRM`` (default action: terminate) is the backstop if the loop is stuck.
With ``--profile FILE`` the serving phase runs under cProfile and the stats are written to FILE on stop.

``_fanout_servers.py`` reuses :class:`Started`, :func:`serve`, :func:`make_tradewire` and
:func:`parse_server_args`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import uvloop
from _harness import BENCH_SECRET
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

if TYPE_CHECKING:
    from tradewire import WebSocketAPIServer

HOST = "127.0.0.1"
ALARM_MARGIN_S = 15  # hard kill this long after --lifetime if the graceful path did not run

Stopper = Callable[[], Awaitable[None]]


class _EchoListener(WSListener):
    """Bare heartbeat responder: one orjson decode and one orjson encode per request."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.TEXT:
            request = orjson.loads(frame.get_payload_as_bytes())
            reply = {"type": "status", "status": "pong", "id": request["id"]}
            transport.send(WSMsgType.TEXT, orjson.dumps(reply))
        elif msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


def _echo_factory(_request: WSUpgradeRequest) -> WSListener:
    return _EchoListener()


@dataclass(frozen=True, slots=True)
class Started:
    """A listening server: its port, how to stop it, and extra ``READY`` fields (after the pid)."""

    port: int
    stop: Stopper
    extra: tuple[str, ...] = ()


Starter = Callable[[Path], Awaitable[Started]]


async def start_bare(_data_dir: Path) -> Started:
    server = await ws_create_server(_echo_factory, HOST, 0, backlog=4096)
    port = int(server.sockets[0].getsockname()[1])

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return Started(port, stop)


def make_tradewire(data_dir: Path, **overrides: Any) -> WebSocketAPIServer:
    """A :class:`tradewire.WebSocketAPIServer` on 127.0.0.1, any free port, limits opened wide.

    Rate limits and capacity are out of the way and logging is at ``warning``, so what gets measured
    is the message path; ``overrides`` are further :class:`tradewire.Settings` fields.
    """
    from tradewire import Settings, WebSocketAPIServer
    from tradewire.config import LogFormat
    from tradewire.logs import configure_logging

    configure_logging(LogFormat.CONSOLE, "warning")  # before any logger is used (structlog caches them)
    fields: dict[str, Any] = {
        "host": HOST,
        "ws_port": 0,
        "jwt_secret": BENCH_SECRET,
        "data_dir": data_dir,
        "rate_limit_per_minute": 1e9,
        "rate_limit_burst": 1_000_000,
        "max_connections": 10_000,
        "max_connections_per_address": 20_000,  # every load-generator connection is from 127.0.0.1
        "auth_timeout": 0,  # the heartbeat and idle-memory clients stay anonymous
        "log_level": "warning",
    }
    fields.update(overrides)
    return WebSocketAPIServer(settings=Settings(**fields))


async def start_tradewire_server(server: WebSocketAPIServer, extra: tuple[str, ...] = ()) -> Started:
    """Start a server built by :func:`make_tradewire`."""
    await server.start()
    port = server.engine.port
    if port is None:
        raise RuntimeError("tradewire engine reports no listening port")

    async def stop() -> None:
        await server.stop(timeout=2.0)

    return Started(port, stop, extra)


async def start_tradewire(data_dir: Path) -> Started:
    return await start_tradewire_server(make_tradewire(data_dir))


STARTERS: dict[str, Starter] = {
    "bare": start_bare,
    "tradewire": start_tradewire,
}


async def serve(
    kind: str, lifetime: float, data_dir: Path, profile: Path | None, starter: Starter | None = None
) -> int:
    """Start ``kind`` (or ``starter``), print ``READY <port> <pid> [extra...]``, serve until stopped."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    started = await (starter or STARTERS[kind])(data_dir)
    stop = started.stop
    profiler = cProfile.Profile() if profile is not None else None
    print(" ".join(["READY", str(started.port), str(os.getpid()), *started.extra]), flush=True)
    if profiler is not None:
        profiler.enable()
    exit_code = 0
    try:
        await asyncio.wait_for(stop_requested.wait(), lifetime)
    except TimeoutError:
        print(f"{kind} server: lifetime of {lifetime:.0f} s exceeded, stopping", file=sys.stderr)
        exit_code = 3
    finally:
        if profiler is not None:
            profiler.disable()
            assert profile is not None
            profiler.dump_stats(profile)
        await stop()
    return exit_code


def parse_server_args(doc: str | None, kinds: list[str]) -> argparse.Namespace:
    """The command line every benchmark server takes (see ``_harness.server_command``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=kinds)
    parser.add_argument(
        "--lifetime", type=float, required=True, help="seconds before the server stops itself"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats to this file")
    return parser.parse_args()


def main() -> None:
    args = parse_server_args(__doc__, sorted(STARTERS))
    signal.alarm(int(args.lifetime) + ALARM_MARGIN_S)
    sys.exit(uvloop.run(serve(args.kind, args.lifetime, args.data_dir, args.profile)))


if __name__ == "__main__":
    main()
