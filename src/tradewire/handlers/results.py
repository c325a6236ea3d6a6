"""``results_request``: a session's stored results, or one symbol's / strategy's across sessions.

``request_type`` and its ``params`` (unknown keys are a ``validation_error``):

* ``session_results`` ``{session_id, sections?, offset?, limit?, equity_points?}`` — the results
  document; lists (``trades``, ``orders``, ``signals``) are paged by ``offset``/``limit`` (≤ 5000)
  and the equity curve is sampled to ``equity_points`` (≤ 10,000; the full curve is on REST).
* ``symbol_results`` ``{symbol, session_id?, limit?}`` / ``strategy_results`` ``{strategy_name,
  session_id?, limit?}`` — the trade metrics of that symbol / strategy in one session, or in each
  of the caller's finished sessions (newest first).
* ``collection_list`` ``{limit?}`` — the caller's collections (everyone's for admins), newest
  first, each with its datasets (``service_unavailable`` on a server without data collection).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from tradewire.auth.permissions import Permission
from tradewire.controller import CollectionService, SessionService
from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.engine.sessions.results import sample
from tradewire.errors import RequestError
from tradewire.handlers.session import caller_of
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import (
    MessageType,
    ResultsRequest,
    ResultsRequestType,
    Symbol,
    Text64,
    Text256,
)
from tradewire.protocol.wire import iso_time, to_wire

RESULTS_TYPES: Final = (MessageType.RESULTS_REQUEST,)
Section = Literal[
    "metrics", "by_strategy", "by_symbol", "trades", "orders", "signals", "equity", "open_positions"
]
DEFAULT_SECTIONS: Final = ("metrics", "by_strategy", "by_symbol", "trades", "open_positions", "equity")
_Limit = Annotated[int, msgspec.Meta(ge=1, le=5000)]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class SessionResultsParams(_Params):
    session_id: Text64
    sections: Annotated[list[Section], msgspec.Meta(max_length=8)] | None = None
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: _Limit = 1000
    equity_points: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 500


class SymbolResultsParams(_Params):
    symbol: Symbol
    session_id: Text64 | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


class StrategyResultsParams(_Params):
    strategy_name: Text256
    session_id: Text64 | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


class CollectionListParams(_Params):
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


def _params(raw: dict[str, Any], kind: type[_Params]) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        reason, _, path = str(exc).partition(" - at ")
        json_path = "$.params" + path.strip("`").removeprefix("$")
        raise RequestError(ErrorCode.VALIDATION_ERROR, reason, {"path": json_path}) from exc


class ResultsHandler:
    def __init__(self, sessions: SessionService, collections: CollectionService | None = None) -> None:
        self._sessions = sessions
        self._collections = collections

    def routes(self) -> list[RouteSpec]:
        return [
            RouteSpec(
                MessageType.RESULTS_REQUEST, self.handle_results_request, permission=Permission.READ_RESULTS
            )
        ]

    async def handle_results_request(self, conn: Connection, message: ResultsRequest) -> dict[str, Any]:
        kind = message.request_type
        data: dict[str, Any] | list[dict[str, Any]]
        if kind is ResultsRequestType.SESSION_RESULTS:
            data = await self._session_results(conn, _params(message.params, SessionResultsParams))
        elif kind is ResultsRequestType.SYMBOL_RESULTS:
            p = _params(message.params, SymbolResultsParams)
            data = await self._breakdown(conn, "by_symbol", p.symbol, p.session_id, p.limit)
        elif kind is ResultsRequestType.STRATEGY_RESULTS:
            p = _params(message.params, StrategyResultsParams)
            data = await self._breakdown(conn, "by_strategy", p.strategy_name, p.session_id, p.limit)
        else:
            data = await self._collection_list(conn, _params(message.params, CollectionListParams))
        return {"type": "response", "status": "results", "request_type": kind.value, "data": to_wire(data)}

    async def _collection_list(self, conn: Connection, params: CollectionListParams) -> list[dict[str, Any]]:
        if self._collections is None:
            raise RequestError(
                ErrorCode.SERVICE_UNAVAILABLE,
                "data collection is not available on this server",
                {"component": "collection"},
            )
        return await self._collections.collections(caller_of(conn), params.limit)

    async def _session_results(self, conn: Connection, params: SessionResultsParams) -> dict[str, Any]:
        caller = caller_of(conn)
        stored = await self._sessions.results(caller, params.session_id)
        results: dict[str, Any] = stored["results"]
        sections = params.sections or list(DEFAULT_SECTIONS)
        out: dict[str, Any] = {
            "session": stored["session"],
            "results_sha256": stored["results_sha256"],
            "end_reason": results.get("end_reason"),
        }
        window = slice(params.offset, params.offset + params.limit)
        for section in sections:
            if section == "equity":
                times, values = await self._sessions.equity(caller, params.session_id)
                points = sample(times, values, params.equity_points)
                out["equity"] = {"points": len(times), "sample": [[iso_time(t), v] for t, v in points]}
            elif section in ("trades", "orders", "signals"):
                items = results.get(section, [])
                out[section] = {"total": len(items), "offset": params.offset, "items": items[window]}
            else:
                out[section] = results.get(section)
        return out

    async def _breakdown(
        self, conn: Connection, key: str, name: str, session_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        caller = caller_of(conn)
        if session_id is not None:
            records = [await self._sessions.session(caller, session_id)]
        else:
            records = await self._sessions.sessions(caller, limit)
        rows = []
        for record in records:
            breakdown = (record.get("summary") or {}).get(key) or {}
            if name in breakdown:
                rows.append(
                    {
                        "session_id": record["session_id"],
                        "session_type": record["session_type"],
                        "status": record["status"],
                        "created_at": record["created_at"],
                        key.removeprefix("by_"): name,
                        "metrics": breakdown[name],
                    }
                )
        return rows
