"""The three servers compared by ``bench/fanout.py``, one per process.

usage: ``_fanout_servers.py {floor,picows-raw,seed,tradewire} --lifetime SECONDS [--data-dir DIR]
[--profile FILE]``

* ``floor``: no WebSocket library and no event loop. The upgrade is answered by hand, then every
  publish builds one ~200-byte text frame and hands it to each client with one blocking
  ``sendall`` — the kernel cost of "one write per message per client". With ``burst`` > 1 the
  frames of a burst are joined and sent with one ``sendall`` per client (ideal coalescing).
* ``picows-raw``: the floor of an event-loop server — picows + uvloop, no framework: each publish
  builds one frame and calls ``transport.write`` (uvloop) for every client, then one loop iteration.
* ``seed``: the seed's design — a FastAPI WebSocket endpoint on uvicorn (``ws="auto"``, which is
  websockets-sansio when websockets is installed; the READY line names the class), publish =
  ``asyncio.gather(*(ws.send_text(json.dumps(msg)) for ws in clients))``: one JSON encoding and one
  awaited send per client.
* ``tradewire``: :class:`tradewire.WebSocketAPIServer` (see ``_servers.make_tradewire``); clients
  authenticate and subscribe to ``market_data``; publish = ``await
  server.broadcast_to_subscribers("market_data", tick)``.

Each listens on 127.0.0.1 (port 0, path ``/ws``) and on a second port for the load generator's
control connection, and prints ``READY <port> <pid> <control port> <token|-> <info|->``. Control
protocol: one JSON line ``{"n": N, "m": M, "rate": R, "burst": B}`` → wait (bounded) until N
clients are subscribed, publish M ticks — B back to back, then one loop iteration (``await
asyncio.sleep(0)``) so the server can write; bursts due every B/R seconds, or as fast as possible
if R is 0 — and answer one JSON line (achieved rate, lateness against the schedule, counters).

A tick is ``{"ts": <time.monotonic_ns()>, "seq": ..., "pad": "xx..."}`` taken when it is published;
the pad brings each server's frame payload to about ``PAYLOAD_BYTES``. The tick has no ``symbol``:
tradewire conflates ``market_data`` per symbol while a client is backed up, which would drop ticks
in the flood and make the delivery counts incomparable.

Bounded like ``_servers.py``: ``--lifetime``, then ``SIGALRM`` as the backstop. ``--profile FILE``
runs cProfile during the publish runs only (not during connection set-up) and writes FILE on stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import cProfile
import hashlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import uvloop
from _harness import raise_nofile_limit
from _servers import (
    ALARM_MARGIN_S,
    HOST,
    Started,
    make_tradewire,
    parse_server_args,
    serve,
    start_tradewire_server,
)

# Module level: FastAPI resolves the endpoint's (string) annotations in this module's globals.
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

if TYPE_CHECKING:
    from tradewire import WebSocketAPIServer

PAYLOAD_BYTES = 200
WAIT_CLIENTS_S = 30.0
HANDSHAKE_TIMEOUT_S = 10.0
SEED_STOP_TIMEOUT_S = 5.0
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STREAM = "market_data"
# What tradewire wraps around ``data`` (DESIGN §5.1), for sizing the pad only: the load generator
# reports the frame sizes it actually received.
TRADEWIRE_ENVELOPE = {
    "type": "data",
    "stream": STREAM,
    "data": {},
    "offset": 100_000,
    "epoch": "0" * 12,
    "timestamp": "2026-01-01T00:00:00.000Z",
}


# ---------------------------------------------------------------------------------------------- ticks
class Ticks:
    """Tick payloads padded so the server's encoding of them is about ``PAYLOAD_BYTES`` long."""

    __slots__ = ("pad",)

    def __init__(self, encoded_size: Callable[[dict[str, Any]], int]) -> None:
        probe = {"ts": time.monotonic_ns(), "seq": 100_000, "pad": ""}
        self.pad = "x" * max(0, PAYLOAD_BYTES - encoded_size(probe))

    def tick(self, seq: int) -> dict[str, Any]:
        return {"ts": time.monotonic_ns(), "seq": seq, "pad": self.pad}


def tradewire_size(data: dict[str, Any]) -> int:
    return len(orjson.dumps(TRADEWIRE_ENVELOPE)) - 2 + len(orjson.dumps(data))


def server_text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (server → client, RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


# ---------------------------------------------------------------------------------------------- commands
@dataclass(frozen=True, slots=True)
class Command:
    n: int  # subscribers to wait for
    m: int  # ticks to publish
    rate: float  # ticks per second (0: as fast as possible)
    burst: int  # ticks published back to back per loop iteration

    @classmethod
    def parse(cls, line: bytes) -> Command:
        raw = json.loads(line)
        return cls(int(raw["n"]), int(raw["m"]), float(raw.get("rate", 0)), max(1, int(raw.get("burst", 1))))


class Schedule:
    """The bursts of a command, when each is due, and how late each one started."""

    def __init__(self, cmd: Command) -> None:
        self.cmd = cmd
        self.start = time.monotonic()
        self.lags: list[float] = []

    def bursts(self) -> Iterator[range]:
        m, burst = self.cmd.m, self.cmd.burst
        for first in range(0, m, burst):
            yield range(first, min(first + burst, m))

    def delay(self, first: int) -> float:
        """Seconds until the burst starting with tick ``first`` is due (<= 0: due already)."""
        if self.cmd.rate <= 0:
            return 0.0
        return self.start + first / self.cmd.rate - time.monotonic()

    def started(self, first: int) -> None:
        if self.cmd.rate > 0:
            self.lags.append(-self.delay(first))

    def summary(self, counters: dict[str, int]) -> dict[str, Any]:
        seconds = time.monotonic() - self.start
        lags = sorted(self.lags)
        return {
            "published": self.cmd.m,
            "seconds": round(seconds, 4),
            "pub_per_s": round(self.cmd.m / seconds, 1) if seconds > 0 else None,
            "lag_ms_p99": round(1e3 * lags[int(0.99 * (len(lags) - 1))], 3) if lags else None,
            "lag_ms_max": round(1e3 * lags[-1], 3) if lags else None,
            "counters": counters,
        }


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


# ---------------------------------------------------------------------------------------------- async servers
class Fanout(Protocol):
    """What the control loop needs from an event-loop server."""

    def subscribers(self) -> int: ...

    def publish(self, seq: int) -> Awaitable[object] | None:
        """Publish tick ``seq``; what it returns (if anything) is awaited before the next tick."""
        ...

    def counters(self) -> dict[str, int]: ...


async def run_command(target: Fanout, cmd: Command, profiler: cProfile.Profile | None) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_CLIENTS_S
    while target.subscribers() < cmd.n:
        if time.monotonic() > deadline:
            return {"error": f"only {target.subscribers()} of {cmd.n} clients subscribed"}
        await asyncio.sleep(0.01)
    before = target.counters()
    schedule = Schedule(cmd)
    if profiler is not None:
        profiler.enable()
    try:
        for burst in schedule.bursts():
            delay = schedule.delay(burst.start)
            if delay > 0:
                await asyncio.sleep(delay)
            schedule.started(burst.start)
            for seq in burst:
                if (pending := target.publish(seq)) is not None:
                    await pending
            await asyncio.sleep(0)  # one loop iteration: tradewire flushes its batches here
    finally:
        if profiler is not None:
            profiler.disable()
    return schedule.summary(counter_delta(before, target.counters()))


async def start_control(target: Fanout, profiler: cProfile.Profile | None) -> tuple[asyncio.Server, int]:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await run_command(target, Command.parse(line), profiler)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(session, HOST, 0)
    return server, int(server.sockets[0].getsockname()[1])


def with_control(started: Started, control: asyncio.Server, control_port: int, *extra: str) -> Started:
    """``started`` plus the control server: its port goes on the READY line, stop closes it too."""

    async def stop() -> None:
        control.close()
        await started.stop()

    return Started(started.port, stop, (str(control_port), *extra))


class TradewireFanout:
    """Publishes through :meth:`WebSocketAPIServer.broadcast_to_subscribers`."""

    def __init__(self, server: WebSocketAPIServer) -> None:
        self.server = server
        self.ticks = Ticks(tradewire_size)

    def subscribers(self) -> int:
        return int(self.server.get_stats()["streams"][STREAM]["subscribers"])

    def publish(self, seq: int) -> Awaitable[int]:
        return self.server.broadcast_to_subscribers(STREAM, self.ticks.tick(seq))

    def counters(self) -> dict[str, int]:
        stats = self.server.get_stats()
        return {**stats["delivery"], "messages_out": stats["messages"]["out"]}


async def start_tradewire_fanout(data_dir: Path, profiler: cProfile.Profile | None) -> Started:
    from tradewire import Level

    server = make_tradewire(
        data_dir,
        max_connections=20_000,
        max_connections_per_user=20_000,
        outbound_queue_bytes=64 * 1024 * 1024,
    )
    started = await start_tradewire_server(server)
    control, control_port = await start_control(TradewireFanout(server), profiler)
    token = server.auth_handler.mint("bench", Level.TRADER)[0]
    return with_control(started, control, control_port, token, "-")


class SeedFanout:
    """The seed's publish: per-client JSON encoding and one awaited send per client, in a gather."""

    def __init__(self) -> None:
        self.clients: set[WebSocket] = set()
        self.ticks = Ticks(lambda tick: len(json.dumps(tick)))

    def subscribers(self) -> int:
        return len(self.clients)

    def publish(self, seq: int) -> Awaitable[list[Any]]:
        msg = self.ticks.tick(seq)
        return asyncio.gather(*(ws.send_text(json.dumps(msg)) for ws in self.clients), return_exceptions=True)

    def counters(self) -> dict[str, int]:
        return {}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.websocket("/ws")
        async def endpoint(ws: WebSocket) -> None:
            await ws.accept()
            self.clients.add(ws)
            try:
                while True:
                    await ws.receive_text()
            except WebSocketDisconnect:
                pass
            finally:
                self.clients.discard(ws)

        return app


async def start_seed(_data_dir: Path, profiler: cProfile.Profile | None) -> Started:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # signals belong to _servers.serve, not to uvicorn

    fanout = SeedFanout()
    config = uvicorn.Config(
        fanout.app(),
        ws="auto",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )
    config.load()
    ws_impl = getattr(config.ws_protocol_class, "__name__", str(config.ws_protocol_class))
    sock = socket.create_server((HOST, 0), backlog=4096)
    server = EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + WAIT_CLIENTS_S
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, SEED_STOP_TIMEOUT_S)
        except TimeoutError:
            print("seed server: uvicorn did not stop in time", file=sys.stderr)

    control, control_port = await start_control(fanout, profiler)
    started = Started(int(sock.getsockname()[1]), stop)
    return with_control(started, control, control_port, "-", ws_impl)


class RawListener(WSListener):
    """picows connection that only registers its transport's ``write`` for :class:`RawFanout`."""

    def __init__(self, writers: dict[RawListener, Callable[[bytes], None]]) -> None:
        self._writers = writers

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._writers[self] = transport.underlying_transport.write

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._writers.pop(self, None)


class RawFanout:
    """Reference for event-loop servers: one frame per publish, uvloop ``transport.write`` per client."""

    def __init__(self) -> None:
        self.writers: dict[RawListener, Callable[[bytes], None]] = {}
        self.ticks = Ticks(lambda tick: len(orjson.dumps(tick)))
        self.writes = 0

    def subscribers(self) -> int:
        return len(self.writers)

    def publish(self, seq: int) -> None:
        frame = server_text_frame(orjson.dumps(self.ticks.tick(seq)))
        for write in self.writers.values():
            write(frame)
        self.writes += len(self.writers)

    def counters(self) -> dict[str, int]:
        return {"sends": self.writes}


async def start_raw(_data_dir: Path, profiler: cProfile.Profile | None) -> Started:
    fanout = RawFanout()
    server = await ws_create_server(lambda _request: RawListener(fanout.writers), HOST, 0, backlog=4096)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    control, control_port = await start_control(fanout, profiler)
    started = Started(int(server.sockets[0].getsockname()[1]), stop)
    return with_control(started, control, control_port, "-", "-")


# ---------------------------------------------------------------------------------------------- floor
def upgrade(conn: socket.socket) -> bool:
    """Answer one WebSocket upgrade request by hand (RFC 6455 §4.2.2); False if it is not one."""
    conn.settimeout(HANDSHAKE_TIMEOUT_S)
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk or len(request) > 16384:
            return False
        request += chunk
    key = b""
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if not key:
        return False
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())  # protocol-mandated SHA-1
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    conn.settimeout(None)  # blocking again: a socket timeout would add a poll() before every send
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


class FloorServer:
    """Blocking sockets and one selector: accept upgrades and control commands, publish on demand."""

    def __init__(self, profiler: cProfile.Profile | None) -> None:
        self.listener = socket.create_server((HOST, 0), backlog=4096)
        self.control = socket.create_server((HOST, 0), backlog=8)
        self.selector = selectors.DefaultSelector()
        for sock in (self.listener, self.control):
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
        self.clients: list[socket.socket] = []
        self.sessions: dict[socket.socket, bytes] = {}  # control connections and their unread input
        self.sends = 0
        self.ticks = Ticks(lambda tick: len(orjson.dumps(tick)))
        self.profiler = profiler

    def ready_line(self) -> str:
        port, control = self.listener.getsockname()[1], self.control.getsockname()[1]
        return f"READY {port} {os.getpid()} {control} - -"

    def run(self, lifetime: float) -> int:
        deadline = time.monotonic() + lifetime
        while (remaining := deadline - time.monotonic()) > 0:
            for key, _ in self.selector.select(min(remaining, 0.5)):
                self.on_readable(key.fileobj)  # type: ignore[arg-type]
        print(f"floor server: lifetime of {lifetime:.0f} s exceeded, stopping", file=sys.stderr)
        return 3

    def on_readable(self, sock: socket.socket) -> None:
        if sock is self.listener:
            self.accept_clients()
        elif sock is self.control:
            session, _ = sock.accept()
            self.sessions[session] = b""
            self.selector.register(session, selectors.EVENT_READ)
        else:
            self.on_control(sock)

    def accept_clients(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(True)
            if upgrade(conn):
                self.clients.append(conn)
            else:
                conn.close()

    def on_control(self, session: socket.socket) -> None:
        data = session.recv(65536)
        if not data:
            self.selector.unregister(session)
            del self.sessions[session]
            session.close()
            return
        pending = self.sessions[session] + data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            reply = self.execute(Command.parse(line))
            session.sendall(json.dumps(reply).encode() + b"\n")
        self.sessions[session] = pending

    def execute(self, cmd: Command) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_CLIENTS_S
        while len(self.clients) < cmd.n and time.monotonic() < deadline:
            if self.selector.select(0.05):
                self.accept_clients()
        if len(self.clients) < cmd.n:
            return {"error": f"only {len(self.clients)} of {cmd.n} clients connected"}
        sends = self.sends
        if self.profiler is not None:
            self.profiler.enable()
        try:
            schedule = self.publish(cmd)
        finally:
            if self.profiler is not None:
                self.profiler.disable()
        return schedule.summary({"sends": self.sends - sends})

    def publish(self, cmd: Command) -> Schedule:
        clients, frame, tick = self.clients, server_text_frame, self.ticks.tick
        schedule = Schedule(cmd)
        for burst in schedule.bursts():
            delay = schedule.delay(burst.start)
            if delay > 0:
                time.sleep(delay)
            schedule.started(burst.start)
            data = b"".join([frame(orjson.dumps(tick(seq))) for seq in burst])
            for conn in clients:
                conn.sendall(data)
            self.sends += len(clients)
        return schedule


def run_floor(lifetime: float, profiler: cProfile.Profile | None) -> int:
    server = FloorServer(profiler)
    print(server.ready_line(), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return server.run(lifetime)


# ---------------------------------------------------------------------------------------------- main
ASYNC_STARTERS = {"picows-raw": start_raw, "seed": start_seed, "tradewire": start_tradewire_fanout}


def main() -> None:
    args = parse_server_args(__doc__, ["floor", *sorted(ASYNC_STARTERS)])
    raise_nofile_limit()
    signal.alarm(int(args.lifetime) + ALARM_MARGIN_S)
    profiler = cProfile.Profile() if args.profile is not None else None
    try:
        if args.kind == "floor":
            code = run_floor(args.lifetime, profiler)
        else:
            starter = partial(ASYNC_STARTERS[args.kind], profiler=profiler)
            code = uvloop.run(serve(args.kind, args.lifetime, args.data_dir, None, starter))
    finally:
        if profiler is not None:
            profiler.dump_stats(args.profile)
    sys.exit(code)


if __name__ == "__main__":
    main()
