"""FastAPI application beside the WebSocket engine (``GET /health``, ``/stats``, ``/metrics``,
``POST /api/v1/auth/login``, the session and dataset routes of :mod:`tradewire.http.sessions`,
OpenAPI docs at ``/docs``), plus the WebSocket endpoint at ``settings.ws_path`` through the ASGI
adapter, so one port can serve both when needed.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from tradewire._version import __version__
from tradewire.auth.users import UserStore
from tradewire.core.client_utils import client_address, parse_networks
from tradewire.core.limits import KeyedRateLimiter
from tradewire.http.sessions import install_error_handler, sessions_router
from tradewire.server import WebSocketAPIServer

LOGIN_RATE_PER_MINUTE = 10
LOGIN_BURST = 5


class LoginRequest(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=128)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: float
    user_id: str
    level: str


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error_code": code, "error_message": message}, status_code=status)


def create_http_app(server: WebSocketAPIServer) -> FastAPI:
    """The HTTP app for ``server``; the server's lifecycle is managed by the caller."""
    app = FastAPI(title="tradewire", version=__version__)
    users = UserStore(server.settings.users_path)
    by_address = KeyedRateLimiter(LOGIN_RATE_PER_MINUTE / 60, LOGIN_BURST)
    by_user = KeyedRateLimiter(LOGIN_RATE_PER_MINUTE / 60, LOGIN_BURST)
    trusted = parse_networks(server.settings.trusted_proxies)
    registry = server.metrics.registry()

    @app.get("/health")
    async def health() -> JSONResponse:
        report = await server.health_check()
        return JSONResponse(report, status_code=200 if report["status"] == "healthy" else 503)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return server.get_stats()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/v1/auth/login", response_model=LoginResponse)
    async def login(body: LoginRequest, request: Request) -> Any:
        peer = request.client.host if request.client else "unknown"
        address = client_address(peer, request.headers.get("x-forwarded-for"), trusted)
        now = server.clock.monotonic()
        if not (by_address.allow(address, now) and by_user.allow(body.username, now)):
            return _error(429, "rate_limit_exceeded", "too many login attempts")
        user = await asyncio.to_thread(users.authenticate, body.username, body.password)
        if user is None:
            return _error(401, "invalid_credentials", "unknown user or wrong password")
        token, expires_at = server.auth_handler.mint(user.name, user.level)
        return LoginResponse(access_token=token, expires_at=expires_at, user_id=user.name, level=user.level)

    sessions = server.controller.sessions if server.controller is not None else None
    if sessions is not None:
        install_error_handler(app, server.error_handler)
        app.include_router(sessions_router(sessions, server.auth_handler))
    app.add_api_websocket_route(server.settings.ws_path, server.fastapi_endpoint)
    return app
