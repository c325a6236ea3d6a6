"""FastAPI application beside the WebSocket engine (``GET /health``, ``/stats``, ``/metrics``,
``POST /api/v1/auth/login``, the session and dataset routes of :mod:`tradewire.http.sessions`,
the dashboard at ``/`` and OpenAPI docs at ``/docs`` in dev mode, both served from package files
by :mod:`tradewire.dashboard`), plus the WebSocket endpoint at ``settings.ws_path`` through the
ASGI adapter, so one port can serve both when needed.

Every error is a typed envelope from :class:`~tradewire.errors.ErrorHandler`: request validation
failures name the field and the rule, never the submitted value (a login's 422 must not echo the
password, and a value the encoder cannot write must not turn into a 500). Login guesses are
throttled per address and per account with backoff (:mod:`tradewire.auth.throttle`), never by
locking the account. ``/stats`` and ``/metrics`` need ``Authorization: Bearer <ops_token>`` when
``TRADEWIRE_OPS_TOKEN`` is set.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, Field

from tradewire._version import __version__
from tradewire.auth.throttle import GuessThrottle, retry_after_header
from tradewire.auth.tokens import valid_user_id
from tradewire.auth.users import UserStore
from tradewire.config import Mode, Settings
from tradewire.core.client_utils import client_address, parse_networks
from tradewire.dashboard import install_dashboard, install_docs
from tradewire.http.sessions import install_error_handler, sessions_router
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.wire import iso_time
from tradewire.server import WebSocketAPIServer

MAX_VALIDATION_ERRORS = 10


def _printable_name(value: str) -> str:
    if not valid_user_id(value):
        raise ValueError("must be printable text")
    return value


def _encodable(value: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


class LoginRequest(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable_name)]
    password: Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_encodable)]


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: str  # ISO 8601 UTC, as every time the server emits
    user_id: str
    level: str


def login_throttle(settings: Settings) -> GuessThrottle:
    """The login's guess throttle from settings."""
    policy = settings.throttle_policy(settings.login_failures_per_minute, settings.login_failure_burst)
    return GuessThrottle(policy)


def create_http_app(server: WebSocketAPIServer) -> FastAPI:
    """The HTTP app for ``server``; the server's lifecycle is managed by the caller."""
    settings = server.settings
    settings.check_production()
    if settings.mode is Mode.PRODUCTION and settings.ops_token is None:
        server.logger.warning(
            "http.operator_endpoints_open",
            detail="/stats and /metrics answer anyone who reaches the HTTP port: set "
            "TRADEWIRE_OPS_TOKEN or keep the port private (docs/SECURITY.md)",
        )
    docs = settings.docs_enabled
    app = FastAPI(
        title="tradewire",
        version=__version__,
        docs_url=None,  # replaced by the offline page below (FastAPI's loads Swagger UI from a CDN)
        redoc_url=None,  # ReDoc would load from a CDN too; /docs covers the same schema
        openapi_url="/openapi.json" if docs else None,
    )
    if settings.dashboard:
        install_dashboard(app, settings.ws_path)
    if docs:
        install_docs(app, "/openapi.json")
    _install_error_handlers(app, server)
    _add_operator_routes(app, server)
    _add_login_route(app, server)
    sessions = server.controller.sessions if server.controller is not None else None
    if sessions is not None:
        install_error_handler(app, server.error_handler)
        app.include_router(sessions_router(sessions, server.auth_handler))
    app.add_api_websocket_route(settings.ws_path, server.fastapi_endpoint)
    return app


def _install_error_handlers(app: FastAPI, server: WebSocketAPIServer) -> None:
    errors = server.error_handler

    async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
        """422 naming each failing field and rule; the submitted values are never echoed."""
        problems = exc.errors() if isinstance(exc, RequestValidationError) else []
        details = {
            "errors": [
                {"path": ".".join(str(part) for part in problem["loc"]), "reason": problem["type"]}
                for problem in problems[:MAX_VALIDATION_ERRORS]
            ]
        }
        server.metrics.errors[ErrorCode.VALIDATION_ERROR.value] += 1
        envelope = errors.envelope(ErrorCode.VALIDATION_ERROR, "request validation failed", None, details)
        return JSONResponse(envelope, status_code=422)

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        """500 with a correlation id (the exception is logged with it, never sent)."""
        server.metrics.errors[ErrorCode.INTERNAL_ERROR.value] += 1
        envelope = errors.internal(exc, None, path=request.url.path)
        return JSONResponse(envelope, status_code=500)

    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(Exception, failed)


def _error(server: WebSocketAPIServer, status: int, code: ErrorCode, message: str, **headers: str) -> Any:
    server.metrics.errors[code.value] += 1
    return JSONResponse(server.error_handler.envelope(code, message), status_code=status, headers=headers)


def _add_operator_routes(app: FastAPI, server: WebSocketAPIServer) -> None:
    registry = server.metrics.registry()
    token = server.settings.ops_token
    expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        return hmac.compare_digest(given, expected)

    @app.get("/health")
    async def health() -> JSONResponse:
        report = await server.health_check()
        return JSONResponse(report, status_code=200 if report["status"] == "healthy" else 503)

    @app.get("/stats")
    async def stats(request: Request) -> Any:
        if not authorized(request):
            return _unauthorized(server)
        return server.get_stats()

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            401: {"description": "`TRADEWIRE_OPS_TOKEN` is set and was not presented"},
        },
    )
    async def metrics(request: Request) -> Response:
        if not authorized(request):
            return _unauthorized(server)  # type: ignore[no-any-return]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _unauthorized(server: WebSocketAPIServer) -> Any:
    return _error(
        server,
        401,
        ErrorCode.AUTHENTICATION_REQUIRED,
        "operator token required",
        **{"WWW-Authenticate": "Bearer"},
    )


def _add_login_route(app: FastAPI, server: WebSocketAPIServer) -> None:
    users = UserStore(server.settings.users_path)
    throttle = login_throttle(server.settings)
    trusted = parse_networks(server.settings.trusted_proxies)
    clock = server.clock

    @app.post("/api/v1/auth/login", response_model=LoginResponse)
    async def login(body: LoginRequest, request: Request) -> Any:
        peer = request.client.host if request.client else "unknown"
        address = client_address(peer, request.headers.get("x-forwarded-for"), trusted)
        wait = throttle.check(body.username, address, clock.monotonic())
        if wait > 0:
            return _error(
                server,
                429,
                ErrorCode.RATE_LIMIT_EXCEEDED,
                "too many failed login attempts",
                **{"Retry-After": retry_after_header(wait)},
            )
        user = await asyncio.to_thread(users.authenticate, body.username, body.password)
        if user is None:
            throttle.failed(body.username, address, clock.monotonic())
            return _error(server, 401, ErrorCode.INVALID_CREDENTIALS, "unknown user or wrong password")
        throttle.succeeded(body.username, address, clock.monotonic())
        token, expires_at = server.auth_handler.mint(user.name, user.level)
        expires = iso_time(expires_at) or ""
        return LoginResponse(access_token=token, expires_at=expires, user_id=user.name, level=user.level)
