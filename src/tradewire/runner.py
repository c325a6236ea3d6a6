"""Run a complete tradewire process: WebSocket engine + HTTP app, until SIGINT/SIGTERM.

On a signal: tradewire stops first (stop accepting on the WS port, 1001 to every client of both
ports, sessions saved, engine stopped), then uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import structlog
import uvicorn

from tradewire.cluster.engine import ClusterEngine
from tradewire.cluster.workers import cluster_settings, shared_socket
from tradewire.config import SecretSource, Settings
from tradewire.controller import Controller
from tradewire.engine.controller import EmbeddedEngine
from tradewire.http.app import create_http_app
from tradewire.server import WebSocketAPIServer


class EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the runner owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_port(http: uvicorn.Server, settings: Settings) -> int:
    """The HTTP port actually bound (``--http-port 0`` picks a free one)."""
    for server in getattr(http, "servers", []):
        for sock in server.sockets:
            return int(sock.getsockname()[1])
    return settings.http_port


def next_steps(settings: Settings, server: WebSocketAPIServer, http_url: str) -> dict[str, str]:
    """What a new user does next: open the dashboard with a token (minted with the same key)."""
    auth = server.auth_handler
    dev_secret = auth.secret_source in (SecretSource.GENERATED, SecretSource.REUSED)
    where = f" --data-dir {settings.data_dir}" if dev_secret else ""  # the same dev secret
    steps = {
        "token": f"tradewire token --user alice --level trader{where}",
        "login": f"tradewire users add alice --level trader{where}; then log in on the dashboard "
        f"(or POST {http_url}/api/v1/auth/login)",
        "key_fingerprint": auth.key_fingerprint,
    }
    if settings.dashboard:
        steps["dashboard"] = f"open {http_url}/ and paste the token"
    return steps


async def serve(settings: Settings) -> None:
    """Start both servers, log their URLs, and stop both cleanly on a signal."""
    log = structlog.get_logger("tradewire")
    settings = cluster_settings(settings)
    engine = EmbeddedEngine(settings) if settings.engine else None
    controller: Controller | None = engine
    if engine is not None and settings.redis_url:
        controller = ClusterEngine(engine, settings)
    server = WebSocketAPIServer(settings=settings, controller=controller)
    await server.start(reuse_port=settings.workers > 1)
    http = EmbeddedUvicorn(
        uvicorn.Config(
            create_http_app(server),
            host=settings.host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **server.uvicorn_options(),  # the ASGI route under tradewire's limits (ARCHITECTURE.md)
        )
    )
    sockets = [shared_socket(settings.host, settings.http_port)] if settings.workers > 1 else None
    http_task = asyncio.create_task(http.serve(sockets=sockets))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not http.started and not http_task.done():  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.02)
    http_url = f"http://{settings.host}:{http_port(http, settings)}"
    log.info(
        "server.ready",
        ws_url=server.ws_url,
        http_url=http_url,
        dashboard_url=f"{http_url}/" if settings.dashboard else None,
        docs_url=f"{http_url}/docs" if settings.docs_enabled else None,
        metrics_url=f"{http_url}/metrics",
        mode=settings.mode.value,
    )
    log.info("server.next_steps", **next_steps(settings, server, http_url))
    await asyncio.wait([asyncio.ensure_future(stop.wait()), http_task], return_when=asyncio.FIRST_COMPLETED)
    log.info("server.stopping")
    # tradewire first: every client on both ports gets 1001 and its session is saved; uvicorn's own
    # shutdown would close the ASGI route's clients with 1012 and no session saved.
    await server.stop()
    http.should_exit = True
    await asyncio.gather(http_task, return_exceptions=True)
