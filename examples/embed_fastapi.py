"""Mount tradewire's WebSocket endpoint in your own FastAPI app.

.venv/bin/python examples/embed_fastapi.py      # ws://127.0.0.1:8000/ws
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from tradewire import Settings, WebSocketAPIServer

server = WebSocketAPIServer(settings=Settings())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await server.startup_embedded()
    yield
    await server.stop()


app = FastAPI(lifespan=lifespan)
app.add_api_websocket_route("/ws", server.fastapi_endpoint)


@app.get("/")
async def index() -> dict[str, str]:
    return {"websocket": "/ws"}


if __name__ == "__main__":
    # tradewire's limits apply on the ASGI route before uvicorn buffers anything (README, Embedding)
    uvicorn.run(app, host="127.0.0.1", port=8000, **server.uvicorn_options())
