"""Shared test helpers: running servers on real sockets (picows engine or ASGI in uvicorn)."""

from __future__ import annotations

import asyncio
import json
import socket
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from tradewire import Level, Settings, WebSocketAPIServer
from tradewire.engine.controller import EmbeddedEngine
from tradewire.http.app import create_http_app
from tradewire.runner import EmbeddedUvicorn

TIMEOUT = 5.0  # one time unit for every wait in the suite
SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ws_port": 0,
        "http_port": 0,
        "jwt_secret": SECRET,
        "data_dir": data_dir,
        "rate_limit_per_minute": 6000,
        "rate_limit_burst": 200,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Running:
    server: WebSocketAPIServer
    url: str
    transport: str
    http_url: str = ""  # the HTTP app, when the helper serves one
    http: uvicorn.Server | None = None  # the uvicorn server of the ASGI route

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def token(self, user: str = "alice", level: Level = Level.TRADER, ttl: int = 3600) -> str:
        return self.server.auth_handler.mint(user, level, ttl)[0]

    def connect(self, **kwargs: Any) -> Any:
        kwargs.setdefault("open_timeout", TIMEOUT)
        return connect(self.url, **kwargs)


@asynccontextmanager
async def run_picows(settings: Settings) -> AsyncIterator[Running]:
    server = WebSocketAPIServer(settings=settings)
    await server.start()
    try:
        yield Running(server, server.ws_url, "picows")
    finally:
        await server.stop()


@asynccontextmanager
async def serve_uvicorn(app: Any, **options: Any) -> AsyncIterator[EmbeddedUvicorn]:
    """Serve ``app`` with uvicorn on a free loopback port (``options``: more ``uvicorn.Config``)."""
    config: dict[str, Any] = {"ws": "websockets-sansio", "proxy_headers": False}
    config.update(options)
    http = EmbeddedUvicorn(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off", **config)
    )
    task = asyncio.create_task(http.serve())
    while not http.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield http
    finally:
        http.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)


def uvicorn_port(http: uvicorn.Server) -> int:
    return int(http.servers[0].sockets[0].getsockname()[1])


@asynccontextmanager
async def serve_asgi(app: Any, **options: Any) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port; yields the port."""
    async with serve_uvicorn(app, **options) as http:
        yield uvicorn_port(http)


@asynccontextmanager
async def run_asgi(settings: Settings, *, plain: bool = False) -> AsyncIterator[Running]:
    """The endpoint mounted in a plain FastAPI app served by uvicorn on a real socket, with the
    options tradewire recommends (``server.uvicorn_options()``), or uvicorn's defaults if ``plain``."""
    server = WebSocketAPIServer(settings=settings)
    app = FastAPI()
    app.add_api_websocket_route(settings.ws_path, server.fastapi_endpoint)
    async with serve_uvicorn(app, **({} if plain else server.uvicorn_options())) as http:
        await server.startup_embedded()
        try:
            yield Running(server, f"ws://127.0.0.1:{uvicorn_port(http)}{settings.ws_path}", "asgi", http)
        finally:
            await server.stop()


@asynccontextmanager
async def run_both(settings: Settings) -> AsyncIterator[tuple[Running, Running]]:
    """One server on both endpoints at once: the picows engine and the ASGI route under uvicorn."""
    server = WebSocketAPIServer(settings=settings)
    app = FastAPI()
    app.add_api_websocket_route(settings.ws_path, server.fastapi_endpoint)
    async with serve_uvicorn(app, **server.uvicorn_options()) as http:
        await server.start()
        try:
            asgi_url = f"ws://127.0.0.1:{uvicorn_port(http)}{settings.ws_path}"
            yield Running(server, server.ws_url, "picows"), Running(server, asgi_url, "asgi", http)
        finally:
            await server.stop()


async def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Poll ``condition`` (cheap, in-process state) until it holds; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def run_server(transport: str, settings: Settings) -> Any:
    return run_picows(settings) if transport == "picows" else run_asgi(settings)


async def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


async def request(ws: ClientConnection, message: dict[str, Any] | str) -> dict[str, Any]:
    """Send one message and return the next frame received."""
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return await recv_json(ws)


async def open_client(running: Running, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and read the welcome."""
    ws = await running.connect(**kwargs)
    welcome = await recv_json(ws)
    return ws, welcome


async def open_stalling_client(running: Running) -> tuple[ClientConnection, dict[str, Any]]:
    """A client with a tiny receive buffer that stops reading unless iterated (max_queue=1)."""
    host, port = running.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await open_client(running, sock=sock, max_queue=1, max_size=2**21)


async def wait_closed(ws: ClientConnection, timeout: float = TIMEOUT) -> int | None:
    """Read until the server closes; the close code received (None if none was)."""
    try:
        async with asyncio.timeout(timeout):
            async for _ in ws:
                continue
    except TimeoutError:
        raise AssertionError("server did not close the connection in time") from None
    except ConnectionClosedError:
        return ws.close_code
    return ws.close_code


async def publish(running: Running, stream: str, items: list[dict[str, Any]]) -> None:
    """Publish ``items`` on ``stream`` and let the flusher write them."""
    for data in items:
        await running.server.broadcast_to_subscribers(stream, data)
    await asyncio.sleep(0)


async def drain_until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything the server sent before the reply to a heartbeat barrier."""
    await ws.send(json.dumps({"type": "heartbeat", "id": "barrier"}))
    frames = []
    while (frame := await recv_json(ws)).get("id") != "barrier":
        frames.append(frame)
    return frames


@asynccontextmanager
async def engine_server(settings: Settings, *, http: bool = False) -> AsyncIterator[Running]:
    """The picows engine with the reference engine behind it (and the HTTP app, if asked)."""
    server = WebSocketAPIServer(settings=settings, controller=EmbeddedEngine(settings))
    await server.start()
    try:
        if not http:
            yield Running(server, server.ws_url, "picows")
            return
        async with serve_asgi(create_http_app(server), **server.uvicorn_options()) as port:
            yield Running(server, server.ws_url, "picows", f"http://127.0.0.1:{port}")
    finally:
        await server.stop()


async def authed_client(r: Running, level: Level = Level.TRADER, user: str = "alice") -> ClientConnection:
    ws, _ = await open_client(r)
    reply = await request(ws, {"type": "auth", "token": r.token(user, level)})
    assert reply["status"] == "authenticated", reply
    return ws


async def call(ws: ClientConnection, message: dict[str, Any], timeout: float = TIMEOUT * 2) -> dict[str, Any]:
    """Send a request and return its reply (the frame with its id); other frames received
    meanwhile are kept for :func:`until`."""
    message = {**message, "id": "call"}
    await ws.send(json.dumps(message))
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv_json(ws)
            if frame.get("id") == "call":
                return frame
            _held.setdefault(ws, []).append(frame)


async def until(
    ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT * 2
) -> dict[str, Any]:
    """The next frame matching ``predicate``, first among those :func:`call` kept (others dropped)."""
    held = _held.get(ws, [])
    while held:
        frame = held.pop(0)
        if predicate(frame):
            return frame
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv_json(ws)
            if predicate(frame):
                return frame


_held: weakref.WeakKeyDictionary[ClientConnection, list[dict[str, Any]]] = weakref.WeakKeyDictionary()
