"""Fan-out load generator for ``bench/fanout.py`` (picows + uvloop, one process).

usage: ``_fanout_loadgen.py --port P --control-port C --server-pid PID --n N --phases JSON
[--token TOKEN] [--path /ws] [--concurrency 200]``

Opens ``--n`` subscriber connections (at most ``--concurrency`` handshakes at a time). With
``--token`` each one speaks tradewire's protocol first: skip the welcome, ``auth``, ``subscribe`` to
``market_data``, each step checked. Then it runs the phases in order over one control connection to
the server (see ``_fanout_servers.py``): ``--phases`` is a JSON list of ``{"name", "m", "rate",
"burst", "latency", "timeout"}``. A phase sends its command, waits (at most ``timeout`` seconds)
until every subscriber got all ``m`` ticks, and reads the server's CPU time (psutil, all threads)
and its own (getrusage) at both ends.

Counting walks frames, not bytes (frame sizes differ per server and grow with tradewire's offset
digits): picows parses the headers and the callback only counts. In latency phases the callback
also reads the tick's ``"ts":`` stamp (``time.monotonic_ns()`` when published; CLOCK_MONOTONIC is
shared by all processes) and records receive time minus stamp. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import psutil  # type: ignore[import-untyped]
import uvloop
from _harness import machine_busy, raise_nofile_limit
from _loadgen import (
    CONNECT_TIMEOUT_S,
    WELCOME_MARK,
    ZERO_MASK,
    connect_all,
    cpu_times,
    loadgen_parser,
)
from picows import WSFrame, WSListener, WSMsgType, WSTransport

HOST = "127.0.0.1"
STAMP = b'"ts":'
READ_BUFFER = 256 * 1024
MIN_TICKED_S = 0.5
REPLY_TIMEOUT_S = 10.0
STREAM = "market_data"


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    m: int
    rate: float = 0.0
    burst: int = 1
    latency: bool = False
    timeout: float = 60.0

    def command(self, n: int) -> bytes:
        return json.dumps({"n": n, "m": self.m, "rate": self.rate, "burst": self.burst}).encode() + b"\n"


class Tally:
    """Counters shared by all subscribers (single-threaded: plain attributes)."""

    __slots__ = (
        "bad",
        "count",
        "disconnects",
        "done",
        "done_at",
        "expected",
        "latencies",
        "latency",
        "size_sum",
    )

    def __init__(self) -> None:
        self.disconnects = 0
        self.reset(0, latency=False)

    def reset(self, expected: int, *, latency: bool) -> None:
        self.count = 0
        self.expected = expected
        self.latency = latency
        self.latencies: list[int] = []
        self.bad = 0  # checked frames without a stamp
        self.size_sum = 0  # payload bytes of the counted frames
        self.done_at = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def add(self, frames: int, payload_bytes: int) -> None:
        self.count += frames
        self.size_sum += payload_bytes
        if self.count >= self.expected and not self.done.done():
            self.done_at = time.monotonic()
            self.done.set_result(None)


def tradewire_script(token: str) -> list[tuple[bytes, bytes | None]]:
    """(mark the server's frame must contain, what to send then) for each set-up step."""
    auth = json.dumps({"type": "auth", "token": token}).encode()
    subscribe = json.dumps({"type": "subscribe", "stream": STREAM}).encode()
    return [(WELCOME_MARK, auth), (b'"status":"authenticated"', subscribe), (b'"status":"subscribed"', None)]


class Subscriber(WSListener):
    """Connection set-up through picows: the upgrade, then (tradewire) welcome, auth, subscribe."""

    def __init__(self, script: list[tuple[bytes, bytes | None]]) -> None:
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: WSTransport | None = None
        self._script = list(script)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if not self._script:
            self.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
        elif frame.msg_type == WSMsgType.TEXT and self._script:
            mark, reply = self._script.pop(0)
            payload = frame.get_payload_as_bytes()
            if mark not in payload:
                self._script.clear()
                self.ready.set_exception(RuntimeError(f"set-up: expected {mark!r}, got {payload[:200]!r}"))
                return
            if reply is not None:
                transport.send(WSMsgType.TEXT, reply)
            if not self._script:
                self.ready.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("disconnected during set-up"))

    def take_over(self, tally: Tally) -> asyncio.Transport:
        """Hand the socket to a :class:`FrameCounter` (picows is done: nothing is in flight)."""
        assert self.transport is not None
        raw = self.transport.underlying_transport
        raw.set_protocol(FrameCounter(tally, raw))
        return raw


def frame_span(buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """(payload start, frame end) of the unmasked frame at ``pos``; None while it is incomplete."""
    if end - pos < 2:
        return None
    size, start = buf[pos + 1], pos + 2
    if size == 126:
        size, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
    elif size == 127:
        size, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
    stop = start + size
    return (start, stop) if stop <= end else None


class FrameCounter(asyncio.BufferedProtocol):
    """Walks the server's frame headers in a fixed buffer: counts text frames, answers pings.

    Server frames are unmasked (RFC 6455 §5.1), so a header is 2, 4 or 10 bytes. In latency phases
    it also reads each frame's stamp; receive time is taken once per read. One text frame per read
    is checked for a stamp in every phase.
    """

    def __init__(self, tally: Tally, transport: asyncio.Transport) -> None:
        self._tally = tally
        self._transport = transport
        self._buf = bytearray(READ_BUFFER)
        self._view = memoryview(self._buf)
        self._fill = 0  # bytes of an incomplete frame kept at the start of the buffer

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._fill :]

    def buffer_updated(self, nbytes: int) -> None:
        buf, tally = self._buf, self._tally
        end = self._fill + nbytes
        pos = frames = payload_bytes = 0
        latency = tally.latency
        now = time.monotonic_ns()
        while (span := frame_span(buf, pos, end)) is not None:
            start, stop = span
            if buf[pos] & 0x0F == 1:  # text
                if latency or frames == 0:
                    self._stamp(start, stop, now)
                frames += 1
                payload_bytes += stop - start
            else:
                self._control(buf[pos] & 0x0F, bytes(buf[start:stop]))
            pos = stop
        self._keep(pos, end)
        if frames:
            tally.add(frames, payload_bytes)

    def _stamp(self, start: int, stop: int, now: int) -> None:
        """Check that the payload carries a stamp; in latency phases, record its age."""
        buf, tally = self._buf, self._tally
        at = buf.find(STAMP, start, stop)
        if at < 0:
            tally.bad += 1
        elif tally.latency:
            at += len(STAMP)
            tally.latencies.append(now - int(buf[at : buf.find(b",", at, stop)]))

    def _keep(self, pos: int, end: int) -> None:
        """Move the incomplete frame at ``pos`` (if any) to the start of the buffer."""
        rest = end - pos
        if rest == len(self._buf):
            self._transport.abort()  # one frame larger than the buffer: not this benchmark's traffic
            return
        if rest and pos:
            self._buf[:rest] = self._buf[pos:end]
        self._fill = rest

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping: answer with a masked pong (zero key) carrying the same payload
            self._transport.write(bytes((0x8A, 0x80 | len(payload))) + ZERO_MASK + payload)
        elif opcode == 0x8:  # close
            self._transport.close()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._tally.disconnects += 1


def quantiles_ms(values_ns: list[int]) -> dict[str, float]:
    values = sorted(values_ns)
    if not values:
        return {}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] / 1e6, 3)

    return {"lat_ms_p50": at(0.5), "lat_ms_p90": at(0.9), "lat_ms_p99": at(0.99), "lat_ms_max": at(1.0)}


async def run_phase(
    phase: Phase,
    n: int,
    tally: Tally,
    server: psutil.Process,
    control: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> dict[str, Any]:
    reader, writer = control
    tally.reset(n * phase.m, latency=phase.latency)
    disconnects = tally.disconnects
    busy0, steal0 = machine_busy()
    start, server_cpu0, client_cpu0 = cpu_times(server)
    writer.write(phase.command(n))
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(tally.done), phase.timeout)
    end, server_cpu1, client_cpu1 = cpu_times(server)
    busy1, steal1 = machine_busy()
    timed_out = not tally.done.done()
    reply: dict[str, Any] = {}
    with contextlib.suppress(TimeoutError):  # a server still publishing after a time-out may not answer
        reply = json.loads(await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT_S) or b"{}")
    seconds = (tally.done_at if not timed_out else end) - start
    delivered = tally.count
    server_cpu, client_cpu = server_cpu1 - server_cpu0, client_cpu1 - client_cpu0
    per_delivery = 1e6 / max(delivered, 1)
    wall = end - start
    return {
        "phase": phase.name,
        "n": n,
        "m": phase.m,
        "rate": phase.rate,
        "burst": phase.burst,
        "expected": tally.expected,
        "delivered": delivered,
        "timed_out": timed_out,
        "seconds": round(seconds, 4),
        "deliveries_per_s": round(delivered / seconds, 1) if seconds > 0 else None,
        "server_cpu_s": round(server_cpu, 4),
        "client_cpu_s": round(client_cpu, 4),
        "server_cpu_frac": round(server_cpu / wall, 3),
        "client_cpu_frac": round(client_cpu / wall, 3),
        "server_us_per_delivery": round(server_cpu * per_delivery, 3),
        "client_us_per_delivery": round(client_cpu * per_delivery, 3),
        # CPU used by anything but the server and this process (other programs, kernel threads),
        # and time stolen by the hypervisor: a high value means the phase was disturbed.
        # (None for phases too short for /proc/stat's clock ticks).
        "other_cpu_frac": round(max(0.0, busy1 - busy0 - server_cpu - client_cpu) / wall, 3)
        if wall >= MIN_TICKED_S
        else None,
        "steal_frac": round((steal1 - steal0) / wall, 3) if wall >= MIN_TICKED_S else None,
        "frame_bytes": round(tally.size_sum / delivered, 1) if delivered else None,
        "bad_sampled": tally.bad,
        "disconnects": tally.disconnects - disconnects,
        **quantiles_ms(tally.latencies),
        "server": reply,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = psutil.Process(args.server_pid)
    tally = Tally()
    script = tradewire_script(args.token) if args.token else []
    phases = [Phase(**raw) for raw in json.loads(args.phases)]

    def factory() -> Subscriber:
        return Subscriber(script)

    started = time.monotonic()
    bound = CONNECT_TIMEOUT_S * 2 * (1 + args.n // args.concurrency)
    url = f"ws://{HOST}:{args.port}{args.path}"
    subscribers = await asyncio.wait_for(connect_all(url, factory, args.n, args.concurrency), bound)
    clients = [subscriber.take_over(tally) for subscriber in subscribers]
    connect_s = time.monotonic() - started
    results: list[dict[str, Any]] = []
    control = await asyncio.wait_for(asyncio.open_connection(HOST, args.control_port), CONNECT_TIMEOUT_S)
    try:
        for phase in phases:
            result = await run_phase(phase, len(clients), tally, server, control)
            results.append(result)
            if result["timed_out"] or "error" in result["server"]:
                break  # the server may still be publishing: later phases would mix with this one
    finally:
        control[1].close()
        for client in clients:
            client.close()
        await asyncio.sleep(0.2)
    return {"connected": len(clients), "connect_s": round(connect_s, 2), "phases": results}


def main() -> None:
    parser = loadgen_parser(__doc__)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--n", type=int, required=True, help="subscriber connections")
    parser.add_argument("--phases", required=True, help="JSON list of phases")
    parser.add_argument("--token", default="", help="tradewire: authenticate and subscribe first")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight at most")
    args = parser.parse_args()
    raise_nofile_limit()
    phases = json.loads(args.phases)
    bound = CONNECT_TIMEOUT_S * 4 * (1 + args.n // args.concurrency) + sum(
        float(p.get("timeout", 60)) + REPLY_TIMEOUT_S for p in phases
    )
    result = uvloop.run(asyncio.wait_for(run(args), bound))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
