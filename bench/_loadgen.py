"""Request/reply load generator for ``bench/rr_heartbeat.py`` (picows + uvloop, one process).

usage: ``_loadgen.py --port P --server-pid PID [--path /ws] [--conns 50] [--inflight 16]
[--warmup 1] [--duration 5] [--welcome]``

Opens ``--conns`` connections and keeps ``--inflight`` ``{"type":"heartbeat","id":N}`` requests
outstanding on each. Whenever half the window has been answered, the connection refills it with
ONE write of pre-built client frames carrying an all-zero masking key (valid per RFC 6455: the
payload is sent as is), so the generator spends little CPU and few syscalls per request.

With ``--welcome`` the first text frame of each connection is the server's welcome: it is checked
and skipped, and requests start only once every connection got its welcome.

The measurement window starts after ``--warmup`` seconds and lasts ``--duration`` seconds; the
server's CPU time (all threads of ``--server-pid``, see :func:`process_cpu`) and this process's
CPU time are read at both ends of the window. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar, cast

import psutil  # type: ignore[import-untyped]
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

REQUEST = b'{"type":"heartbeat","id":%d}'
PONG_PREFIX = b'{"type":"status","status":"pong"'
WELCOME_MARK = b'"status":"connected"'
CHECK_EVERY = 128  # validate one reply in this many: full checks would load the generator, not the server
ZERO_MASK = b"\x00\x00\x00\x00"
CONNECT_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 2.0
SHORT_PAYLOAD = 126


def masked_text_frame(payload: bytes) -> bytes:
    """A client→server FIN text frame with a zero masking key (so the payload needs no XOR)."""
    size = len(payload)
    if size < SHORT_PAYLOAD:
        return bytes((0x81, 0x80 | size)) + ZERO_MASK + payload
    if size < 1 << 16:
        return bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big") + ZERO_MASK + payload
    raise ValueError("request too large for the benchmark")


class Tally:
    """Counters shared by all connections (single-threaded: plain attributes)."""

    __slots__ = ("bad", "disconnects", "replies", "sending")

    def __init__(self) -> None:
        self.replies = 0
        self.bad = 0  # sampled replies that were not a pong
        self.disconnects = 0
        self.sending = False


class RRClient(WSListener):
    """One connection: a window of ``inflight`` outstanding requests, refilled at half-empty."""

    def __init__(self, tally: Tally, inflight: int, expect_welcome: bool) -> None:
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.drained = asyncio.Event()  # set once sending stopped and every request was answered
        self.transport: WSTransport | None = None
        self.outstanding = 0
        self._tally = tally
        self._inflight = inflight
        self._low_water = inflight // 2
        self._awaiting_welcome = expect_welcome
        self._last_id = 0
        self._write: Any = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._write = transport.underlying_transport.write
        if not self._awaiting_welcome:
            self.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        if self._awaiting_welcome:
            self._awaiting_welcome = False
            if WELCOME_MARK in frame.get_payload_as_bytes():
                self.ready.set_result(None)
            else:
                self.ready.set_exception(RuntimeError("first frame is not a welcome"))
            return
        tally = self._tally
        tally.replies += 1
        if tally.replies % CHECK_EVERY == 0 and not frame.get_payload_as_bytes().startswith(PONG_PREFIX):
            tally.bad += 1
        self.outstanding -= 1
        if tally.sending:
            if self.outstanding <= self._low_water:
                self.refill()
        elif self.outstanding == 0:
            self.drained.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._tally.disconnects += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("disconnected before ready"))

    def refill(self) -> None:
        count = self._inflight - self.outstanding
        if count <= 0:
            return
        first = self._last_id + 1
        self._last_id += count
        self.outstanding += count
        self._write(b"".join([masked_text_frame(REQUEST % i) for i in range(first, first + count)]))


@dataclass(frozen=True, slots=True)
class Sample:
    replies: int
    wall: float
    server_cpu: float
    client_cpu: float


@dataclass(frozen=True, slots=True)
class RRResult:
    conns: int
    replies: int
    seconds: float
    replies_per_s: float
    server_cpu_s: float
    client_cpu_s: float
    server_cpu_frac: float
    client_cpu_frac: float
    server_us_per_reply: float
    client_us_per_reply: float
    bad_sampled: int
    disconnects: int  # server-side closes during the run


def process_cpu(server: psutil.Process) -> float:
    """CPU seconds of ``server``: its live threads' ``schedstat`` run times (nanosecond resolution).

    psutil's ``cpu_times`` counts clock ticks (10 ms here), too coarse for phases of a second; it
    is the fallback where ``/proc/<pid>/task/*/schedstat`` cannot be read.
    """
    total = 0
    try:
        with os.scandir(f"/proc/{server.pid}/task") as tasks:
            for task in tasks:
                with open(f"{task.path}/schedstat", "rb") as stat:
                    total += int(stat.read().split()[0])
    except (OSError, ValueError, IndexError):
        times = server.cpu_times()
        return float(times.user + times.system)
    return total / 1e9


def cpu_times(server: psutil.Process) -> tuple[float, float, float]:
    """Monotonic time, the server's CPU seconds (all threads) and this process's CPU seconds."""
    server_cpu = process_cpu(server)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.monotonic(), server_cpu, own.ru_utime + own.ru_stime


def _sample(tally: Tally, server: psutil.Process) -> Sample:
    wall, server_cpu, client_cpu = cpu_times(server)
    return Sample(replies=tally.replies, wall=wall, server_cpu=server_cpu, client_cpu=client_cpu)


class Readied(Protocol):
    """A listener whose ``ready`` future completes once its connection is set up."""

    ready: asyncio.Future[None]


ClientT = TypeVar("ClientT", bound=Readied)


async def connect_all(
    url: str, factory: Callable[[], ClientT], count: int, concurrency: int = 200
) -> list[ClientT]:
    """Open ``count`` connections and wait until each is ready, ``concurrency`` at a time at most.

    Each connection gets ``CONNECT_TIMEOUT_S`` for its handshake and again for becoming ready.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one() -> ClientT:
        async with gate:
            _, listener = await ws_connect(
                factory,  # type: ignore[arg-type]
                url,
                websocket_handshake_timeout=CONNECT_TIMEOUT_S,
            )
            client = cast(ClientT, listener)
            await asyncio.wait_for(client.ready, CONNECT_TIMEOUT_S)
            return client

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _drain(clients: list[RRClient]) -> None:
    """Wait (bounded) until the requests still in flight after the window are answered."""
    for client in clients:
        if client.outstanding == 0:
            client.drained.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.drained.wait() for c in clients)), DRAIN_TIMEOUT_S)


async def run(args: argparse.Namespace) -> RRResult:
    server = psutil.Process(args.server_pid)
    tally = Tally()
    url = f"ws://127.0.0.1:{args.port}{args.path}"

    def factory() -> RRClient:
        return RRClient(tally, args.inflight, args.welcome)

    clients = await asyncio.wait_for(connect_all(url, factory, args.conns), CONNECT_TIMEOUT_S * 2)
    try:
        tally.sending = True
        for client in clients:
            client.refill()
        await asyncio.sleep(args.warmup)
        start = _sample(tally, server)
        await asyncio.sleep(args.duration)
        end = _sample(tally, server)
        tally.sending = False
        await _drain(clients)
        lost = tally.disconnects  # connections closed by the server (we have not closed any yet)
    finally:
        for client in clients:
            if client.transport is not None and not client.transport.is_disconnected:
                client.transport.disconnect()
        await asyncio.sleep(0.1)
    replies = end.replies - start.replies
    seconds = end.wall - start.wall
    server_cpu = end.server_cpu - start.server_cpu
    client_cpu = end.client_cpu - start.client_cpu
    per_reply = 1e6 / max(replies, 1)
    return RRResult(
        conns=len(clients),
        replies=replies,
        seconds=round(seconds, 3),
        replies_per_s=round(replies / seconds, 1),
        server_cpu_s=round(server_cpu, 3),
        client_cpu_s=round(client_cpu, 3),
        server_cpu_frac=round(server_cpu / seconds, 3),
        client_cpu_frac=round(client_cpu / seconds, 3),
        server_us_per_reply=round(server_cpu * per_reply, 2),
        client_us_per_reply=round(client_cpu * per_reply, 2),
        bad_sampled=tally.bad,
        disconnects=lost,
    )


def loadgen_parser(doc: str | None) -> argparse.ArgumentParser:
    """Arguments every load generator takes: the server's port and pid, the WebSocket path."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="whose CPU time is measured")
    parser.add_argument("--path", default="/ws")
    return parser


def main() -> None:
    parser = loadgen_parser(__doc__)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--welcome", action="store_true", help="skip one welcome frame per connection")
    args = parser.parse_args()
    bound = CONNECT_TIMEOUT_S * 2 + args.warmup + args.duration + DRAIN_TIMEOUT_S + 5
    result = uvloop.run(asyncio.wait_for(run(args), bound))
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
