"""REST mirrors of the session messages: lists, records, results, trades and equity as CSV/JSON.

Every route needs ``Authorization: Bearer <JWT>`` (the same tokens as the WebSocket) and shows
only the caller's sessions (all of them to admins), exactly like ``session_status`` and
``results_request``. Errors use the WebSocket's error envelope and codes, with an HTTP status.

=========================================  ================================================
``GET /api/v1/sessions``                   the caller's sessions, newest first (``limit``)
``GET /api/v1/sessions/{id}``              one session record
``GET /api/v1/sessions/{id}/results``      the stored results document (JSON)
``GET /api/v1/sessions/{id}/trades``       closed trades, ``?format=json`` (default) or ``csv``
``GET /api/v1/sessions/{id}/equity``       the whole equity curve, ``?format=json`` or ``csv``
``GET /api/v1/datasets``                   stored datasets (``?symbol=``)
=========================================  ================================================
"""

# No `from __future__ import annotations`: FastAPI must see the real `Annotated` aliases
# declared inside `sessions_router`.

import csv
import io
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tradewire.auth.permissions import Permission
from tradewire.auth.tokens import AuthHandler, Principal
from tradewire.controller import Caller, SessionService
from tradewire.errors import AuthError, EngineError, ErrorHandler, RequestError
from tradewire.handlers.engine_errors import to_request_error
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.wire import iso_time, to_wire

Format = Literal["json", "csv"]
TRADE_COLUMNS = (
    "strategy_name",
    "symbol",
    "direction",
    "units",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "fees",
    "pnl",
    "return_pct",
    "exit_reason",
    "stop_loss",
    "take_profit",
    "bars",
)
HTTP_STATUS = {
    ErrorCode.AUTHENTICATION_REQUIRED: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.INSUFFICIENT_PERMISSIONS: 403,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.DATASET_NOT_FOUND: 404,
    ErrorCode.RESULTS_NOT_AVAILABLE: 409,
    ErrorCode.VALIDATION_ERROR: 422,
}


class ApiError(Exception):
    """An error envelope with its HTTP status (raised by the dependencies and routes below)."""

    def __init__(self, error: RequestError) -> None:
        super().__init__(error.message)
        self.error = error


def install_error_handler(app: Any, errors: ErrorHandler) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        error = exc.error
        status = HTTP_STATUS.get(error.code, 400)
        return JSONResponse(errors.from_request_error(error, None), status_code=status)

    app.add_exception_handler(ApiError, handle)


def _bearer_caller(auth: AuthHandler) -> Any:
    """A FastAPI dependency: the verified caller of a request, or an :class:`ApiError`."""
    bearer = HTTPBearer(auto_error=False)

    def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
        if credentials is None:
            raise ApiError(
                RequestError(ErrorCode.AUTHENTICATION_REQUIRED, "send Authorization: Bearer <token>")
            )
        try:
            principal: Principal = auth.verify(credentials.credentials)
        except AuthError as exc:
            raise ApiError(exc) from exc
        if Permission.READ_SESSIONS not in principal.permissions:
            raise ApiError(RequestError(ErrorCode.INSUFFICIENT_PERMISSIONS, "read_sessions is required"))
        return Caller(principal.user_id, Permission.ADMIN in principal.permissions)

    return caller


async def _call(coroutine: Awaitable[Any]) -> Any:
    """Await a service call, turning its domain errors into :class:`ApiError`."""
    try:
        return await coroutine
    except EngineError as exc:
        mapped = to_request_error(exc)
        if mapped is None:
            raise
        raise ApiError(mapped) from exc


def sessions_router(sessions: SessionService, auth: AuthHandler) -> APIRouter:
    """The routes of the module docstring, bound to ``sessions`` and verifying tokens with ``auth``."""
    router = APIRouter(prefix="/api/v1", tags=["sessions"])
    User = Annotated[Caller, Depends(_bearer_caller(auth))]

    @router.get("/sessions")
    async def list_sessions(user: User, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
        return to_wire(await _call(sessions.sessions(user, limit)))

    @router.get("/sessions/{session_id}")
    async def get_session(user: User, session_id: str) -> Any:
        return to_wire(await _call(sessions.session(user, session_id)))

    @router.get("/sessions/{session_id}/results")
    async def get_results(user: User, session_id: str) -> Any:
        return to_wire(await _call(sessions.results(user, session_id)))

    @router.get("/sessions/{session_id}/trades", response_model=None)
    async def get_trades(user: User, session_id: str, format: Format = "json") -> Any:
        trades = to_wire((await _call(sessions.results(user, session_id)))["results"]["trades"])
        if format == "json":
            return trades
        return _csv(TRADE_COLUMNS, ([trade.get(column) for column in TRADE_COLUMNS] for trade in trades))

    @router.get("/sessions/{session_id}/equity", response_model=None)
    async def get_equity(user: User, session_id: str, format: Format = "json") -> Any:
        times, values = await _call(sessions.equity(user, session_id))
        stamps = [iso_time(t) for t in times]
        if format == "json":
            return {"times": stamps, "equity": values}
        return _csv(("time", "equity"), zip(stamps, values, strict=True))

    @router.get("/datasets")
    async def list_datasets(user: User, symbol: str | None = None) -> Any:
        return to_wire(await _call(sessions.datasets(symbol)))

    return router


def _csv(header: tuple[str, ...], rows: Any) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv")
