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

from tradewire.config import Settings
from tradewire.engine.controller import EmbeddedEngine
from tradewire.http.app import create_http_app
from tradewire.server import WebSocketAPIServer


class EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the runner owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    """Start both servers, log their URLs, and stop both cleanly on a signal."""
    log = structlog.get_logger("tradewire")
    engine = EmbeddedEngine(settings) if settings.engine else None
    server = WebSocketAPIServer(settings=settings, controller=engine)
    await server.start()
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
    http_task = asyncio.create_task(http.serve())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not http.started and not http_task.done():  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.02)
    http_url = f"http://{settings.host}:{settings.http_port}"
    log.info(
        "server.ready",
        ws_url=server.ws_url,
        http_url=http_url,
        docs_url=f"{http_url}/docs",
        metrics_url=f"{http_url}/metrics",
        mode=settings.mode.value,
    )
    await asyncio.wait([asyncio.ensure_future(stop.wait()), http_task], return_when=asyncio.FIRST_COMPLETED)
    log.info("server.stopping")
    # tradewire first: every client on both ports gets 1001 and its session is saved; uvicorn's own
    # shutdown would close the ASGI route's clients with 1012 and no session saved.
    await server.stop()
    http.should_exit = True
    await asyncio.gather(http_task, return_exceptions=True)
