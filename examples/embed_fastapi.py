"""Mount tradewire, with its reference engine running, in your own FastAPI app.

    .venv/bin/python examples/embed_fastapi.py --port 8000     # ws://127.0.0.1:8000/ws

The lifespan starts the gateway's parts and the engine (``startup_embedded`` starts the
controller too), so strategies, sessions and streams are served exactly as by ``tradewire
serve``; ``server.stop()`` closes clients with 1001 and stops the engine. Settings come from the
environment as usual (``TRADEWIRE_DATA_DIR``, ``TRADEWIRE_JWT_SECRET``, ...); ``--host`` and
``--port`` default to ``TRADEWIRE_HOST`` and ``EMBED_PORT`` (8000).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from tradewire import Settings, WebSocketAPIServer
from tradewire.engine.controller import EmbeddedEngine

settings = Settings()
server = WebSocketAPIServer(settings=settings, controller=EmbeddedEngine(settings))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await server.startup_embedded()  # keepalive, limits, event bus, engine; no socket of its own
    yield
    await server.stop()  # clients get 1001


app = FastAPI(lifespan=lifespan)
app.add_api_websocket_route("/ws", server.fastapi_endpoint)


@app.get("/")
async def index() -> dict[str, object]:
    return {"websocket": "/ws", "engine": server.controller is not None}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("TRADEWIRE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMBED_PORT", "8000")))
    args = parser.parse_args()
    # tradewire's limits apply on the ASGI route before uvicorn buffers anything (README, Embedding)
    uvicorn.run(app, host=args.host, port=args.port, **server.uvicorn_options())
