"""Sessions over a real socket: backtests on the bundled data, paper trading, results over
WebSocket and REST, ownership, idempotency, conflicts, limits, failures and restarts."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest
from websockets.asyncio.client import ClientConnection

from tests.helpers import TIMEOUT, Running, authed_client, call, engine_server, until
from tradewire import Level

Factory = Callable[..., Any]


def _sma(period: int) -> dict[str, Any]:
    return {"indicatorId": "sma", "params": {"period": period}}


def _cross(cid: str, operator: str, fast: int = 10, slow: int = 30) -> dict[str, Any]:
    return {"id": cid, **_sma(fast), "operator": operator, "value": _sma(slow)}


SMA_CROSS: dict[str, Any] = {
    "strategy_name": "sma_cross",
    "direction": "LONG",
    "s1_signal": {"conditions": [_cross("up", "crosses_above")]},
    "z1_entry": {
        "conditions": [_cross("above", ">")],
        "positionSize": {"type": "percentage", "value": 99.99},
    },
    "ze1_close": {"conditions": [_cross("down", "crosses_below")]},
    "o1_cancel": {"conditions": [], "timeoutSeconds": 86400},
    "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
}


def _settings(factory: Factory, **overrides: Any) -> Any:
    values: dict[str, Any] = {"synthetic_symbols": []}
    values.update(overrides)
    return factory(**values)


async def _setup(r: Running, ws: ClientConnection, doc: dict[str, Any] = SMA_CROSS) -> dict[str, int]:
    """Store ``doc`` and return the sample datasets by symbol."""
    assert (await call(ws, {"type": "upsert_strategy", "strategy_config": doc}))[
        "status"
    ] == "strategy_upserted"
    datasets = await call(ws, {"type": "query", "query_type": "datasets"})
    return {d["symbol"]: d["id"] for d in datasets["data"]}


async def _start(
    ws: ClientConnection, session_type: str, plan: dict[str, list[str]], **extra: Any
) -> dict[str, Any]:
    return await call(
        ws, {"type": "session_start", "session_type": session_type, "strategy_config": plan, **extra}
    )


async def _result(ws: ClientConnection, session_id: str) -> dict[str, Any]:
    """The session's terminal execution_result frame (the caller subscribed to the stream)."""
    frame = await until(
        ws,
        lambda f: f.get("stream") == "execution_result" and f["data"]["session_id"] == session_id,
        TIMEOUT * 6,
    )
    return dict(frame["data"])


async def _subscribe(ws: ClientConnection, *streams: str) -> None:
    for stream in streams:
        assert (await call(ws, {"type": "subscribe", "stream": stream}))["status"] == "subscribed"


async def test_backtest_the_sample_data_end_to_end(settings_factory: Factory) -> None:
    """A fresh install lists the samples; a backtest reports progress and a result; the stored
    results agree over WebSocket and REST (JSON and CSV)."""
    async with engine_server(_settings(settings_factory), http=True) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            assert set(datasets) >= {"GOOG", "BTC-USD", "EUR-USD"}
            await _subscribe(ws, "execution_status", "execution_result")
            started = await _start(
                ws, "backtest", {"sma_cross": ["GOOG"]}, config={"dataset_id": datasets["GOOG"]}
            )
            assert started["status"] == "session_started" and started["existing"] is False
            sid = started["session_id"]
            status = await until(
                ws, lambda f: f.get("stream") == "execution_status" and f["data"]["status"] == "running"
            )
            assert status["data"]["session_id"] == sid and status["data"]["owner"] == "alice"
            result = await _result(ws, sid)
            assert result["status"] == "completed" and result["processed"] == 2148
            summary = result["summary"]
            ws_results = await call(
                ws,
                {
                    "type": "results_request",
                    "request_type": "session_results",
                    "params": {"session_id": sid, "sections": ["metrics", "trades", "equity"], "limit": 5000},
                },
            )
        data = ws_results["data"]
        assert data["metrics"]["trades"] == summary["trades"] == data["trades"]["total"] > 20
        assert data["metrics"]["return_pct"] == summary["return_pct"]
        assert data["equity"]["points"] == 2148 and len(data["equity"]["sample"]) <= 500
        token = r.token()
        async with httpx.AsyncClient(
            base_url=r.http_url, headers={"authorization": f"Bearer {token}"}
        ) as http:
            rest = (await http.get(f"/api/v1/sessions/{sid}/results")).json()
            trades_json = (await http.get(f"/api/v1/sessions/{sid}/trades")).json()
            trades_csv = (await http.get(f"/api/v1/sessions/{sid}/trades", params={"format": "csv"})).text
            equity = (await http.get(f"/api/v1/sessions/{sid}/equity")).json()
            equity_csv = (await http.get(f"/api/v1/sessions/{sid}/equity", params={"format": "csv"})).text
            listed = (await http.get("/api/v1/sessions")).json()
            rest_datasets = (await http.get("/api/v1/datasets")).json()
            anonymous = await http.get("/api/v1/sessions", headers={"authorization": ""})
    assert rest["results"]["metrics"] == data["metrics"]
    assert rest["results_sha256"] == data["results_sha256"] == summary["results_sha256"]
    assert trades_json == data["trades"]["items"]
    rows = trades_csv.strip().split("\n")
    assert rows[0].startswith("strategy_name,symbol,direction,units") and len(rows) == len(trades_json) + 1
    assert len(equity["equity"]) == 2148 and equity["equity"][-1] == data["metrics"]["equity_final"]
    assert len(equity_csv.strip().split("\n")) == 2149
    assert [s["session_id"] for s in listed] == [sid]
    assert {d["symbol"] for d in rest_datasets} >= {"GOOG", "BTC-USD", "EUR-USD"}
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "authentication_required"


async def test_goog_sma_cross_equals_backtesting_py(settings_factory: Factory) -> None:
    """LONG-only SMA(10)/SMA(30) on the bundled GOOG data, 0.2 % fees, whole units: every trade
    and every metric equals backtesting.py's on the same data and settings, computed here."""
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import GOOG, SMA

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 30)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy(size=99.99 / 100)
            elif crossover(self.slow, self.fast):
                self.position.close()

    with warnings.catch_warnings(record=True) as caught:  # pandas 3 deprecations inside backtesting.py
        warnings.simplefilter("always")
        stats = Backtest(GOOG, SmaCross, cash=10_000, commission=0.002).run()
    assert any("remain open" in str(w.message) for w in caught)  # one trade open at the end
    async with engine_server(_settings(settings_factory)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            await _subscribe(ws, "execution_result")
            config = {
                "dataset_id": datasets["GOOG"],
                "fee_bps": 20,
                "whole_units": True,
                "close_at_end": False,
            }
            sid = (await _start(ws, "backtest", {"sma_cross": ["GOOG"]}, config=config))["session_id"]
            assert (await _result(ws, sid))["status"] == "completed"
            reply = await call(
                ws,
                {
                    "type": "results_request",
                    "request_type": "session_results",
                    "params": {"session_id": sid, "sections": ["metrics", "trades", "open_positions"]},
                },
            )
    ours, metrics = reply["data"]["trades"]["items"], reply["data"]["metrics"]
    theirs = stats._trades
    assert len(ours) == len(theirs) == 32
    for mine, ref in zip(ours, theirs.itertuples(), strict=True):
        assert mine["units"] == ref.Size
        assert (mine["entry_price"], mine["exit_price"]) == pytest.approx(
            (ref.EntryPrice, ref.ExitPrice), rel=1e-12
        )
        assert pd.Timestamp(mine["entry_time"]).tz_localize(None) == ref.EntryTime  # ISO 8601, UTC
        assert pd.Timestamp(mine["exit_time"]).tz_localize(None) == ref.ExitTime
        assert mine["pnl"] == pytest.approx(ref.PnL, rel=1e-9)
        assert mine["return_pct"] == pytest.approx(ref.ReturnPct * 100, rel=1e-9)
    assert len(reply["data"]["open_positions"]) == 1  # as backtesting.py: one trade still open
    expected = {
        "Return [%]": "return_pct",
        "Equity Final [$]": "equity_final",
        "Equity Peak [$]": "equity_peak",
        "Exposure Time [%]": "exposure_pct",
        "Buy & Hold Return [%]": "buy_and_hold_return_pct",
        "Return (Ann.) [%]": "return_ann_pct",
        "Volatility (Ann.) [%]": "volatility_ann_pct",
        "CAGR [%]": "cagr_pct",
        "Sharpe Ratio": "sharpe",
        "Sortino Ratio": "sortino",
        "Calmar Ratio": "calmar",
        "Max. Drawdown [%]": "max_drawdown_pct",
        "Avg. Drawdown [%]": "avg_drawdown_pct",
        "# Trades": "trades",
        "Win Rate [%]": "win_rate_pct",
        "Best Trade [%]": "best_trade_pct",
        "Worst Trade [%]": "worst_trade_pct",
        "Avg. Trade [%]": "avg_trade_pct",
        "Profit Factor": "profit_factor",
        "Expectancy [%]": "expectancy_pct",
        "SQN": "sqn",
        "Kelly Criterion": "kelly",
        "Commissions [$]": "commissions",
    }
    for theirs_key, ours_key in expected.items():
        assert metrics[ours_key] == pytest.approx(float(stats[theirs_key]), rel=1e-9), theirs_key
    for theirs_key, ours_key in {
        "Max. Drawdown Duration": "max_drawdown_duration_seconds",
        "Max. Trade Duration": "max_trade_duration_seconds",
        "Avg. Drawdown Duration": "avg_drawdown_duration_seconds",
        "Avg. Trade Duration": "avg_trade_duration_seconds",
    }.items():  # backtesting.py rounds durations up to whole days on daily data
        assert math.ceil(metrics[ours_key] / 86400) == stats[theirs_key].days, theirs_key


async def test_same_inputs_give_byte_identical_results(settings_factory: Factory, tmp_path: Any) -> None:
    async with engine_server(_settings(settings_factory)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            await _subscribe(ws, "execution_result")
            config = {"dataset_id": datasets["EUR-USD"], "fee_bps": 5, "slippage_bps": 2}
            plan = {"sma_cross": ["EUR-USD"]}
            first = (await _start(ws, "backtest", plan, config=config))["session_id"]
            await _result(ws, first)
            second = (await _start(ws, "backtest", plan, config=config))["session_id"]
            await _result(ws, second)
    db = sqlite3.connect(tmp_path / "tradewire.db")
    rows = {
        sid: bytes(doc) + bytes(eq)
        for sid, doc, eq in db.execute("SELECT session_id, document, equity FROM session_results")
    }
    hashes = dict(db.execute("SELECT session_id, sha256 FROM session_results").fetchall())
    db.close()
    assert rows[first] == rows[second] and len(rows[first]) > 1000
    assert hashes[first] == hashes[second]


async def test_stop_mid_run_keeps_partial_results(settings_factory: Factory) -> None:
    async with engine_server(_settings(settings_factory)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            await _subscribe(ws, "execution_result", "execution_status")
            config = {"dataset_id": datasets["GOOG"], "acceleration_factor": 86400 * 100}  # 100 bars/s
            sid = (await _start(ws, "backtest", {"sma_cross": ["GOOG"]}, config=config))["session_id"]
            await until(ws, lambda f: f.get("stream") == "execution_status" and f["data"]["processed"] > 10)
            stopped = await call(ws, {"type": "session_stop", "session_id": sid})
            assert stopped["status"] == "session_stopped"
            assert stopped["session"]["status"] == "stopped"
            result = await _result(ws, sid)
            again = await call(ws, {"type": "session_stop", "session_id": sid})  # idempotent
    assert result["status"] == "stopped" and 10 < result["processed"] < 2148
    assert result["summary"]["end_reason"] == "stopped"
    assert again["session"]["status"] == "stopped"


async def test_users_see_and_stop_only_their_own_sessions(settings_factory: Factory) -> None:
    async with engine_server(_settings(settings_factory), http=True) as r:
        alice = await authed_client(r, user="alice")
        bob = await authed_client(r, user="bob")
        admin = await authed_client(r, Level.ADMIN, user="root")
        async with alice, bob, admin:
            datasets = await _setup(r, alice)
            for ws in (alice, bob, admin):
                await _subscribe(ws, "execution_status", "execution_result")
            config = {"dataset_id": datasets["GOOG"], "acceleration_factor": 86400 * 50}
            sid = (await _start(alice, "backtest", {"sma_cross": ["GOOG"]}, config=config))["session_id"]
            for message in (
                {"type": "session_status", "session_id": sid},
                {"type": "session_stop", "session_id": sid},
                {"type": "results_request", "request_type": "session_results", "params": {"session_id": sid}},
            ):
                assert (await call(bob, message))["error_code"] == "session_not_found"
            assert (await call(bob, {"type": "session_status"}))["sessions"] == []
            seen_by_admin = await call(admin, {"type": "session_status", "session_id": sid})
            assert seen_by_admin["session_data"]["owner"] == "alice"
            await call(admin, {"type": "session_stop", "session_id": sid})
            await _result(alice, sid)
            await _result(admin, sid)
            await bob.send(json.dumps({"type": "heartbeat", "id": "barrier"}))
            frames = []
            while (frame := json.loads(await asyncio.wait_for(bob.recv(), TIMEOUT))).get("id") != "barrier":
                frames.append(frame)
            assert [f for f in frames if f.get("type") == "data"] == []  # nothing of alice's session
        async with httpx.AsyncClient(base_url=r.http_url) as http:
            other = await http.get(
                f"/api/v1/sessions/{sid}", headers={"authorization": f"Bearer {r.token('bob')}"}
            )
    assert other.status_code == 404 and other.json()["error_code"] == "session_not_found"


async def test_session_streams_reach_only_their_owner(settings_factory: Factory) -> None:
    """Bob subscribed to every session stream gets nothing of Alice's session."""
    async with engine_server(_settings(settings_factory)) as r:
        alice = await authed_client(r, user="alice")
        bob = await authed_client(r, user="bob")
        async with alice, bob:
            datasets = await _setup(r, alice)
            streams = (
                "execution_status",
                "execution_result",
                "orders",
                "positions",
                "signals",
                "state_machines",
            )
            await _subscribe(bob, *streams)
            await _subscribe(alice, "execution_result", "orders")
            config = {"dataset_id": datasets["GOOG"], "stream_events": True}
            sid = (await _start(alice, "backtest", {"sma_cross": ["GOOG"]}, config=config))["session_id"]
            order = await until(alice, lambda f: f.get("stream") == "orders")
            assert (order["data"]["session_id"], order["data"]["owner"]) == (sid, "alice")
            await _result(alice, sid)
            await bob.send(json.dumps({"type": "heartbeat", "id": "barrier"}))
            frames = []
            while (frame := json.loads(await asyncio.wait_for(bob.recv(), TIMEOUT))).get("id") != "barrier":
                frames.append(frame)
    assert [f for f in frames if f.get("type") == "data"] == []


async def test_client_key_makes_start_idempotent_and_conflicts_name_the_running_session(
    settings_factory: Factory,
) -> None:
    async with engine_server(_settings(settings_factory)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            config = {"dataset_id": datasets["GOOG"], "acceleration_factor": 86400}
            plan = {"sma_cross": ["GOOG"]}
            first = await _start(ws, "backtest", plan, config=config, client_key="k-1")
            again = await _start(ws, "backtest", plan, config=config, client_key="k-1")
            assert (again["session_id"], again["existing"]) == (first["session_id"], True)
            clash = await _start(ws, "backtest", plan, config=config, client_key="k-2")
            assert clash["error_code"] == "session_conflict"
            assert clash["details"] == {
                "session_id": first["session_id"],
                "strategy_name": "sma_cross",
                "symbol": "GOOG",
            }
            listed = await call(ws, {"type": "session_status"})
            assert [s["session_id"] for s in listed["sessions"]] == [first["session_id"]]
            await call(ws, {"type": "session_stop", "session_id": first["session_id"]})


async def test_session_limits_per_user(settings_factory: Factory) -> None:
    async with engine_server(_settings(settings_factory, max_sessions_per_user=1)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            await _setup(r, ws, {**SMA_CROSS, "strategy_name": "other"})
            config = {"dataset_id": datasets["GOOG"], "acceleration_factor": 86400}
            first = await _start(ws, "backtest", {"sma_cross": ["GOOG"]}, config=config)
            over = await _start(ws, "backtest", {"other": ["GOOG"]}, config=config)
            assert over["error_code"] == "session_limit_exceeded"
            assert over["details"] == {"scope": "per user", "limit": 1}
            await call(ws, {"type": "session_stop", "session_id": first["session_id"]})


async def test_live_without_an_adapter_does_nothing(settings_factory: Factory) -> None:
    async with engine_server(_settings(settings_factory)) as r:
        premium = await authed_client(r, Level.PREMIUM)
        trader = await authed_client(r, Level.TRADER, user="tom")
        async with premium, trader:
            await _setup(r, premium)
            live = await _start(premium, "live", {"sma_cross": ["BTC-USD"]})
            assert live["error_code"] == "live_trading_unavailable"
            denied = await _start(trader, "live", {"sma_cross": ["BTC-USD"]})
            assert denied["error_code"] == "insufficient_permissions"
            assert (await call(premium, {"type": "session_status"}))["sessions"] == []


@pytest.mark.parametrize(
    ("session_type", "config", "plan", "code", "detail"),
    [
        (
            "backtest",
            {"dataset_id": 1, "bogus": 1},
            {"sma_cross": ["GOOG"]},
            "validation_error",
            "config.bogus",
        ),
        (
            "backtest",
            {"dataset_id": 1, "fee_bps": -1},
            {"sma_cross": ["GOOG"]},
            "validation_error",
            "config.fee_bps",
        ),
        ("backtest", {"dataset_id": 9999}, {"sma_cross": ["GOOG"]}, "dataset_not_found", None),
        ("backtest", {"dataset_id": 1}, {"sma_cross": ["BTC-USD"]}, "validation_error", "strategy_config"),
        ("backtest", {"dataset_id": 1}, {"nope": ["GOOG"]}, "strategy_not_found", None),
        ("backtest", {}, {"sma_cross": ["GOOG"]}, "validation_error", "config.dataset_id"),
        ("paper", {"dataset_id": 1}, {"sma_cross": ["BTC-USD"]}, "validation_error", "config.dataset_id"),
        ("paper", {}, {"sma_cross": ["DOGE-USD"]}, "unknown_symbol", None),
        ("paper", {}, {"sma_cross": ["GOOG"]}, "unknown_symbol", None),  # a dataset, not a live feed
        ("backtest", {"dataset_id": 1}, {"sma_cross": ["goog"]}, "unknown_symbol", None),
    ],
)
async def test_bad_session_requests_get_typed_errors(
    settings_factory: Factory,
    session_type: str,
    config: dict[str, Any],
    plan: Any,
    code: str,
    detail: str | None,
) -> None:
    async with engine_server(_settings(settings_factory, synthetic_symbols=["BTC-USD"])) as r:
        ws = await authed_client(r)
        async with ws:
            await _setup(r, ws)
            reply = await _start(ws, session_type, plan, config=config)
            assert reply["error_code"] == code, reply
            if detail is not None:
                assert [e["path"] for e in reply["details"]["errors"]] == [detail]
            assert (await call(ws, {"type": "session_status"}))["sessions"] == []


async def test_a_failing_session_reaches_execution_result(settings_factory: Factory, tmp_path: Any) -> None:
    """A dataset with no rows fails the backtest: execution_result says failed, with a reason."""
    empty = tmp_path / "empty.csv"
    empty.write_text("Date,Open,High,Low,Close,Volume\n")
    async with engine_server(_settings(settings_factory)) as r:
        dataset = await r.server.controller.sessions._db.import_bars("EMPTY", "test", [])  # type: ignore[union-attr]
        ws = await authed_client(r)
        async with ws:
            await _setup(r, ws)
            await _subscribe(ws, "execution_result")
            sid = (await _start(ws, "backtest", {"sma_cross": ["EMPTY"]}, config={"dataset_id": dataset.id}))[
                "session_id"
            ]
            result = await _result(ws, sid)
            status = await call(ws, {"type": "session_status", "session_id": sid})
            missing = await call(
                ws,
                {"type": "results_request", "request_type": "session_results", "params": {"session_id": sid}},
            )
    assert result["status"] == "failed"
    assert result["error"]["message"] == "the dataset of EMPTY has no data"
    assert result["error"]["correlation_id"]
    assert status["session_data"]["status"] == "failed"
    assert missing["error_code"] == "results_not_available"


async def test_restart_marks_running_sessions_interrupted(settings_factory: Factory) -> None:
    settings = _settings(settings_factory)
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            config = {"dataset_id": datasets["GOOG"], "acceleration_factor": 86400}
            await _subscribe(ws, "execution_status")
            sid = (await _start(ws, "backtest", {"sma_cross": ["GOOG"]}, config=config))["session_id"]
            await until(
                ws, lambda f: f.get("stream") == "execution_status" and f["data"]["status"] == "running"
            )
    db = sqlite3.connect(settings.data_dir / "tradewire.db")
    status_after_shutdown = db.execute("SELECT status FROM sessions WHERE id = ?", (sid,)).fetchone()[0]
    db.execute("UPDATE sessions SET status = 'running' WHERE id = ?", (sid,))  # as if the process died
    db.commit()
    db.close()
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            status = await call(ws, {"type": "session_status", "session_id": sid})
    assert status_after_shutdown == "interrupted"
    assert status["session_data"]["status"] == "interrupted"


async def test_daily_bar_strategy_enters(settings_factory: Factory) -> None:
    """An RSI strategy on GOOG's daily bars with a one-hour signal timeout still trades."""
    rsi = {
        "strategy_name": "daily_rsi",
        "direction": "LONG",
        "s1_signal": {
            "conditions": [
                {"id": "low", "indicatorId": "rsi", "operator": "<", "value": 35, "params": {"period": 14}}
            ]
        },
        "z1_entry": {
            "conditions": [
                {"id": "ok", "indicatorId": "rsi", "operator": "<", "value": 40, "params": {"period": 14}}
            ],
            "positionSize": {"type": "percentage", "value": 50},
        },
        "ze1_close": {
            "conditions": [
                {"id": "hi", "indicatorId": "rsi", "operator": ">", "value": 60, "params": {"period": 14}}
            ]
        },
        "o1_cancel": {"conditions": [], "timeoutSeconds": 3600},
        "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
    }
    async with engine_server(_settings(settings_factory)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws, rsi)
            await _subscribe(ws, "execution_result")
            sid = (
                await _start(ws, "backtest", {"daily_rsi": ["GOOG"]}, config={"dataset_id": datasets["GOOG"]})
            )["session_id"]
            result = await _result(ws, sid)
    assert result["summary"]["trades"] > 5


async def test_paper_session_trades_the_live_feed_until_stopped(settings_factory: Factory) -> None:
    fast = {
        **SMA_CROSS,
        "strategy_name": "fast_cross",
        "s1_signal": {"conditions": [_cross("up", "crosses_above", 2, 5)]},
        "z1_entry": {
            "conditions": [_cross("above", ">", 2, 5)],
            "positionSize": {"type": "fixed", "value": 1000},
        },
        "ze1_close": {"conditions": [_cross("down", "crosses_below", 2, 5)]},
    }
    settings = _settings(settings_factory, synthetic_symbols=["BTC-USD"], synthetic_interval=0.005)
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            await _setup(r, ws, fast)
            await _subscribe(ws, "orders", "execution_result")
            started = await _start(ws, "paper", {"fast_cross": ["BTC-USD"]}, config={"fee_bps": 10})
            sid = started["session_id"]
            order = await until(ws, lambda f: f.get("stream") == "orders" and f["data"]["status"] == "filled")
            assert order["data"]["session_id"] == sid
            stopped = await call(ws, {"type": "session_stop", "session_id": sid})
            result = await _result(ws, sid)
    assert stopped["session"]["status"] == "stopped"
    assert result["status"] == "stopped" and result["processed"] > 5
    assert result["summary"]["trades"] >= 1  # the open position was closed at the stop


async def test_strategy_and_symbol_results_across_sessions(settings_factory: Factory) -> None:
    async with engine_server(_settings(settings_factory)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            await _setup(r, ws, {**SMA_CROSS, "strategy_name": "twin"})
            await _subscribe(ws, "execution_result")
            config = {"datasets": {"GOOG": datasets["GOOG"], "EUR-USD": datasets["EUR-USD"]}}
            sid = (
                await _start(
                    ws, "backtest", {"sma_cross": ["GOOG", "EUR-USD"], "twin": ["GOOG"]}, config=config
                )
            )["session_id"]
            result = await _result(ws, sid)
            by_symbol = await call(
                ws,
                {"type": "results_request", "request_type": "symbol_results", "params": {"symbol": "GOOG"}},
            )
            by_strategy = await call(
                ws,
                {
                    "type": "results_request",
                    "request_type": "strategy_results",
                    "params": {"strategy_name": "twin", "session_id": sid},
                },
            )
            bad = await call(
                ws, {"type": "results_request", "request_type": "symbol_results", "params": {"symbols": "x"}}
            )
    assert result["status"] == "completed" and result["processed"] == 2148 + 5000
    (row,) = by_symbol["data"]
    assert row["session_id"] == sid and row["symbol"] == "GOOG"
    twin = by_strategy["data"][0]["metrics"]
    assert twin["trades"] == result["summary"]["by_strategy"]["twin"]["trades"] > 0
    assert bad["error_code"] == "validation_error"


async def test_several_symbols_in_one_session_trade_as_they_would_alone(settings_factory: Factory) -> None:
    """With fixed sizes (no shared margin), a two-symbol session's trades per symbol equal the
    single-symbol sessions' trades: bars are merged in time order and never mislabelled."""
    fixed = {**SMA_CROSS, "strategy_name": "fixed", "z1_entry": {**SMA_CROSS["z1_entry"]}}
    fixed["z1_entry"]["positionSize"] = {"type": "fixed", "value": 1000}
    async with engine_server(_settings(settings_factory)) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws, fixed)
            await _subscribe(ws, "execution_result")
            trades: dict[str, list[dict[str, Any]]] = {}
            for label, symbols in (
                ("both", ["GOOG", "BTC-USD"]),
                ("GOOG", ["GOOG"]),
                ("BTC-USD", ["BTC-USD"]),
            ):
                config = {"datasets": {symbol: datasets[symbol] for symbol in symbols}, "fee_bps": 10}
                sid = (await _start(ws, "backtest", {"fixed": symbols}, config=config))["session_id"]
                assert (await _result(ws, sid))["status"] == "completed"
                params = {"session_id": sid, "sections": ["trades"], "limit": 5000}
                reply = await call(
                    ws, {"type": "results_request", "request_type": "session_results", "params": params}
                )
                trades[label] = reply["data"]["trades"]["items"]
    for symbol in ("GOOG", "BTC-USD"):
        alone = trades[symbol]
        assert alone and [t for t in trades["both"] if t["symbol"] == symbol] == alone


async def test_a_database_write_failing_during_a_session_fails_it_cleanly(settings_factory: Factory) -> None:
    """The results table vanishes mid-run: the session ends `failed` with a correlation id, the
    database stays consistent, and the next session (table back) completes."""
    settings = _settings(settings_factory)
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            datasets = await _setup(r, ws)
            await _subscribe(ws, "execution_result", "execution_status")
            config = {"dataset_id": datasets["GOOG"], "acceleration_factor": 86400 * 2000}
            sid = (await _start(ws, "backtest", {"sma_cross": ["GOOG"]}, config=config))["session_id"]
            await until(ws, lambda f: f.get("stream") == "execution_status" and f["data"]["processed"] > 5)
            db = sqlite3.connect(settings.data_dir / "tradewire.db")
            db.execute("ALTER TABLE session_results RENAME TO session_results_away")
            db.commit()
            result = await _result(ws, sid)
            db.execute("ALTER TABLE session_results_away RENAME TO session_results")
            db.commit()
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT count(*) FROM session_results").fetchone() == (0,)
            assert db.execute("SELECT status FROM sessions WHERE id = ?", (sid,)).fetchone() == ("failed",)
            db.close()
            again = await _start(
                ws, "backtest", {"sma_cross": ["GOOG"]}, config={"dataset_id": datasets["GOOG"]}
            )
            second = await _result(ws, again["session_id"])
    assert result["status"] == "failed"
    assert result["error"]["message"] == "the session failed on an internal error"
    assert len(result["error"]["correlation_id"]) == 16
    assert second["status"] == "completed"
