"""The session, results and strategy handlers without a socket (a real engine on SQLite), and the
one table that maps engine errors to wire codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.unit.test_core import make_conn
from tradewire import ManualClock
from tradewire.auth.permissions import Level, permissions_for
from tradewire.auth.tokens import Principal
from tradewire.controller import Caller
from tradewire.core.connection import Connection
from tradewire.engine.indicators import IndicatorBank, IndicatorError
from tradewire.engine.sessions.controller import ExecutionController
from tradewire.engine.storage.database import Database, sqlite_url
from tradewire.engine.strategy_document import StrategyValidationError, ValidationResult
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.symbols import SymbolRegistry, SymbolSource
from tradewire.errors import (
    DatasetNotFound,
    InvalidSessionConfig,
    LiveTradingUnavailable,
    PermissionDenied,
    RequestError,
    ResultsNotAvailable,
    SessionConflict,
    SessionLimitExceeded,
    SessionNotFound,
    StrategyDisabled,
    StrategyInvalid,
    StrategyNotFound,
)
from tradewire.handlers.engine_errors import to_request_error
from tradewire.handlers.results import ResultsHandler
from tradewire.handlers.session import SessionHandler
from tradewire.handlers.strategy import StrategyHandler
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import ClientMessage

SMA = {
    "strategy_name": "sma",
    "direction": "LONG",
    "s1_signal": {"conditions": [{"id": "a", "indicatorId": "sma", "operator": ">", "value": 0}]},
    "z1_entry": {
        "conditions": [{"id": "b", "indicatorId": "sma", "operator": ">", "value": 0}],
        "positionSize": {"type": "percentage", "value": 10},
    },
    "ze1_close": {"conditions": []},
    "o1_cancel": {"conditions": [], "timeoutSeconds": 60},
    "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
}


def _symbols() -> SymbolRegistry:
    registry = SymbolRegistry()
    registry.add(SymbolSource.SYNTHETIC, ["BTC-USD"])
    return registry


class Engine:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        self.manager = StrategyManager(db, IndicatorBank(), lambda topic, payload: None)
        self.controller = ExecutionController(
            db, self.manager, self.publish, max_per_user=2, max_total=3, symbols=_symbols()
        )

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.events.append((topic, payload))
        self.changed.set()

    async def finished(self, session_id: str) -> None:
        async with asyncio.timeout(10):
            while not any(t == "session.result" and p["session_id"] == session_id for t, p in self.events):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    db = Database(sqlite_url(tmp_path))
    await db.start()
    engine = Engine(db)
    await engine.controller.start()
    await engine.manager.upsert(Caller("tests"), SMA)
    yield engine
    await engine.controller.stop()
    await db.stop()


def _conn(user: str = "alice", level: Level = Level.TRADER) -> Connection:
    conn, _ = make_conn(ManualClock(), ServerMetrics())
    conn.principal = Principal(user, level, permissions_for(level), 2e9)
    return conn


def _message(raw: dict[str, Any]) -> Any:
    return msgspec.convert(raw, ClientMessage)


async def _backtest(handler: SessionHandler, conn: Connection, **config: Any) -> dict[str, Any]:
    message = _message(
        {
            "type": "session_start",
            "session_type": "backtest",
            "strategy_config": {"sma": ["GOOG"]},
            "config": {"dataset_id": 1, **config},
        }
    )
    return await handler.handle_session_start(conn, message)


async def test_session_start_needs_the_permission_of_its_type(engine: Engine) -> None:
    handler = SessionHandler(engine.controller)
    with pytest.raises(PermissionDenied) as denied:
        await _backtest(handler, _conn(level=Level.BASIC))
    assert denied.value.details == {"required": "execute_backtest"}
    reply = await _backtest(handler, _conn())
    assert (reply["status"], reply["existing"], reply["session"]["status"]) == (
        "session_started",
        False,
        "starting",
    )
    await engine.finished(reply["session_id"])


async def test_status_lists_own_sessions_and_stop_is_idempotent(engine: Engine) -> None:
    handler = SessionHandler(engine.controller)
    alice, bob = _conn("alice"), _conn("bob")
    started = await _backtest(handler, alice, acceleration_factor=86400)
    sid = started["session_id"]
    listed = await handler.handle_session_status(alice, _message({"type": "session_status"}))
    assert [s["session_id"] for s in listed["sessions"]] == [sid]
    assert (await handler.handle_session_status(bob, _message({"type": "session_status"})))["sessions"] == []
    with pytest.raises(SessionNotFound):
        await handler.handle_session_stop(bob, _message({"type": "session_stop", "session_id": sid}))
    stopped = await handler.handle_session_stop(alice, _message({"type": "session_stop", "session_id": sid}))
    assert stopped["session"]["status"] == "stopped"
    again = await handler.handle_session_stop(alice, _message({"type": "session_stop", "session_id": sid}))
    assert again["session"]["status"] == "stopped"


async def test_limits_per_user_and_in_total(engine: Engine) -> None:
    handler = SessionHandler(engine.controller)
    paced = {"acceleration_factor": 86400}
    for user in ("alice", "alice", "bob"):
        await engine.manager.upsert(Caller("t"), {**SMA, "strategy_name": f"sma_{len(engine.events)}_{user}"})
    names = [s["strategy_name"] for s in engine.manager.strategies(Caller("tests"))]
    for name, user in zip(names[1:3], ("alice", "alice"), strict=True):
        message = _message(
            {
                "type": "session_start",
                "session_type": "backtest",
                "strategy_config": {name: ["GOOG"]},
                "config": {"dataset_id": 1, **paced},
            }
        )
        await handler.handle_session_start(_conn(user), message)
    with pytest.raises(SessionLimitExceeded) as per_user:
        await _backtest(handler, _conn("alice"), **paced)
    assert per_user.value.details == {"scope": "per user", "limit": 2}
    await _backtest(handler, _conn("bob"), **paced)
    with pytest.raises(SessionLimitExceeded) as total:
        await _backtest(handler, _conn("carol"), **paced)
    assert total.value.details == {"scope": "in total", "limit": 3}


async def test_results_handler_pages_lists_and_validates_params(engine: Engine) -> None:
    sessions, results = SessionHandler(engine.controller), ResultsHandler(engine.controller)
    conn = _conn()
    sid = (await _backtest(sessions, conn))["session_id"]
    await engine.finished(sid)
    reply = await results.handle_results_request(
        conn,
        _message(
            {
                "type": "results_request",
                "request_type": "session_results",
                "params": {
                    "session_id": sid,
                    "sections": ["orders", "equity"],
                    "limit": 1,
                    "equity_points": 10,
                },
            }
        ),
    )
    data = reply["data"]
    assert data["orders"]["total"] >= 1 and len(data["orders"]["items"]) == 1
    assert len(data["equity"]["sample"]) <= 12 and data["equity"]["points"] == 2148
    with pytest.raises(RequestError) as bad:
        await results.handle_results_request(
            conn,
            _message(
                {"type": "results_request", "request_type": "session_results", "params": {"session": sid}}
            ),
        )
    assert bad.value.code is ErrorCode.VALIDATION_ERROR and bad.value.details == {"path": "$.params"}
    with pytest.raises(RequestError) as collection:
        await results.handle_results_request(
            conn, _message({"type": "results_request", "request_type": "collection_list"})
        )
    assert collection.value.code is ErrorCode.SERVICE_UNAVAILABLE


async def test_strategy_handler_reports_every_validation_error(engine: Engine) -> None:
    handler = StrategyHandler(engine.manager)
    bad = {**SMA, "direction": "UP"}
    bad["s1_signal"] = {
        "conditions": [{"id": "a", "indicatorId": "sma", "operator": ">", "value": 0, "params": {"perod": 3}}]
    }
    reply = handler.handle_validate_strategy_config(
        _conn(), _message({"type": "validate_strategy_config", "strategy_config": bad})
    )
    assert [e["path"] for e in reply["errors"]] == ["direction", "s1_signal.conditions[0].params.perod"]
    with pytest.raises(StrategyInvalid):
        await handler.handle_upsert_strategy(
            _conn(), _message({"type": "upsert_strategy", "strategy_config": bad})
        )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StrategyNotFound("x"), ErrorCode.STRATEGY_NOT_FOUND),
        (SessionNotFound("s_1"), ErrorCode.SESSION_NOT_FOUND),
        (DatasetNotFound(7), ErrorCode.DATASET_NOT_FOUND),
        (StrategyInvalid("bad", {"valid": False}), ErrorCode.VALIDATION_ERROR),
        (StrategyDisabled("x"), ErrorCode.VALIDATION_ERROR),
        (InvalidSessionConfig([{"path": "config.x", "message": "no"}]), ErrorCode.VALIDATION_ERROR),
        (SessionConflict("s_1", "x", "BTC"), ErrorCode.SESSION_CONFLICT),
        (SessionLimitExceeded("per user", 5), ErrorCode.SESSION_LIMIT_EXCEEDED),
        (LiveTradingUnavailable(), ErrorCode.LIVE_TRADING_UNAVAILABLE),
        (ResultsNotAvailable("s_1", "running"), ErrorCode.RESULTS_NOT_AVAILABLE),
        (StrategyValidationError(ValidationResult([], [])), ErrorCode.VALIDATION_ERROR),
        (IndicatorError("bad period", "params.period"), ErrorCode.VALIDATION_ERROR),
    ],
)
def test_engine_errors_map_to_their_codes(error: Exception, code: ErrorCode) -> None:
    mapped = to_request_error(error)
    assert mapped is not None and mapped.code is code
    assert "Traceback" not in mapped.message


def test_unknown_exceptions_are_not_mapped() -> None:
    """Anything else stays an internal error (logged with a correlation id by the router)."""
    assert to_request_error(KeyError("secret detail")) is None
