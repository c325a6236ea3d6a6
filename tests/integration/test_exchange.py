"""Live trading with the real ccxt library against a local stand-in for Kraken's REST API
(tests/exchange_standin.py; no traffic leaves 127.0.0.1): the adapter places, amends, cancels and
reconciles; a live session's orders reach the exchange and appear on ``orders``; risk limits
refuse; an outage is alerted and recovered from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.exchange_standin import API_KEY, API_SECRET, KrakenStandIn, kraken_standin
from tests.helpers import TIMEOUT, Running, authed_client, call, engine_server, until
from tradewire import Level
from tradewire.engine.exchange import ExchangeOrder, Fill, OrderRequest, OrderState
from tradewire.engine.exchange_ccxt import CcxtAdapter
from tradewire.errors import ExchangeAuthFailed, ExchangeUnavailable, OrderRejected

Factory = Callable[..., Any]


def _rule(cid: str, period: int = 2) -> dict[str, Any]:
    return {"id": cid, "indicatorId": "sma", "params": {"period": period}, "operator": ">", "value": 0}


def _strategy(name: str, *, cycle: bool = False, size: float = 1000.0) -> dict[str, Any]:
    """Enters as soon as SMA(2) is warm; with ``cycle`` exits on the next tick and enters again."""
    return {
        "strategy_name": name,
        "direction": "LONG",
        "s1_signal": {"conditions": [_rule("warm")]},
        "z1_entry": {"conditions": [_rule("go")], "positionSize": {"type": "fixed", "value": size}},
        "ze1_close": {"conditions": [_rule("out")] if cycle else []},
        "o1_cancel": {"conditions": [], "timeoutSeconds": 3600},
        "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
    }


class Events:
    def __init__(self) -> None:
        self.orders: list[ExchangeOrder] = []
        self.fills: list[Fill] = []

    def order_updated(self, order: ExchangeOrder) -> None:
        self.orders.append(order)

    def filled(self, fill: Fill) -> None:
        self.fills.append(fill)


@pytest.fixture
async def standin() -> AsyncIterator[tuple[KrakenStandIn, str]]:
    async with kraken_standin() as served:
        yield served


def _adapter(url: str, key: str = API_KEY) -> CcxtAdapter:
    return CcxtAdapter(
        "kraken", api_key=key, secret=API_SECRET, api_url=url, config={"enableRateLimit": False}
    )


def _settings(factory: Factory, url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "synthetic_symbols": [],
        "exchange": "kraken",
        "exchange_api_key": API_KEY,
        "exchange_api_secret": API_SECRET,
        "exchange_api_url": url,
        "exchange_symbols": ["BTC-USD"],
        "exchange_poll_interval": 0.05,
        "exchange_config": {"enableRateLimit": False},
    }
    values.update(overrides)
    return factory(**values)


async def test_ccxt_adapter_places_amends_cancels_and_reports(standin: tuple[KrakenStandIn, str]) -> None:
    """Markets in the engine's spelling; a limit order placed, amended, cancelled; a market order
    filled; balances; refusals translated into our own errors."""
    state, url = standin
    adapter, events = _adapter(url), Events()
    adapter.set_listener(events)
    try:
        markets = await adapter.connect()
        assert markets["BTC-USD"].exchange_symbol == "BTC/USD" and markets["BTC-USD"].min_amount == 0.0001
        limit = await adapter.submit_order(OrderRequest("tw-1", "BTC-USD", "buy", 0.01, "limit", 60_000.0))
        (placed,) = state.submitted()
        assert (placed.txid, placed.cl_ord_id, placed.pair, placed.volume) == (
            limit.id,
            "tw-1",
            "XXBTZUSD",
            0.01,
        )
        amended = await adapter.amend_order(limit, None, 61_000.0)
        assert (amended.price, placed.price, amended.status) == (61_000.0, 61_000.0, OrderState.OPEN)
        await adapter.cancel_order(limit)
        await adapter.poll()
        assert [(o.client_id, o.status) for o in events.orders] == [("tw-1", OrderState.CANCELLED)]
        market = await adapter.submit_order(OrderRequest("tw-2", "BTC-USD", "buy", 0.015625))
        await adapter.poll()
        assert events.orders[-1].id == market.id and events.orders[-1].status is OrderState.FILLED
        assert events.orders[-1].average == 64_000.0 and events.orders[-1].fee == pytest.approx(2.6)
        assert [(f.client_id, f.amount, f.price) for f in events.fills] == [("tw-2", 0.015625, 64_000.0)]
        balances = await adapter.balances()
        assert balances["BTC"].total == 0.015625 and balances["USD"].total == pytest.approx(
            100_000 - 1000 - 2.6
        )
        quotes = {q.symbol: q for q in await adapter.quotes(["BTC-USD", "ETH-USD"])}
        assert quotes["ETH-USD"].price == 3200.0 and quotes["BTC-USD"].bid is not None
        with pytest.raises(OrderRejected, match="insufficient funds"):
            await adapter.submit_order(OrderRequest("tw-3", "BTC-USD", "buy", 100.0))
        with pytest.raises(OrderRejected, match="invalid order"):
            await adapter.submit_order(OrderRequest("tw-4", "BTC-USD", "buy", 0.00001))
        assert await adapter.positions() == []
    finally:
        await adapter.close()


async def test_ccxt_adapter_reconciles_after_an_outage_and_a_lost_reply(
    standin: tuple[KrakenStandIn, str],
) -> None:
    """A fill during an outage is reported once after it; a submit whose reply was lost is found
    by its client id; one that never arrived is reported rejected; strays are listed."""
    state, url = standin
    adapter, events = _adapter(url), Events()
    adapter.set_listener(events)
    try:
        await adapter.connect()
        resting = await adapter.submit_order(OrderRequest("tw-10", "BTC-USD", "buy", 0.01, "limit", 63_000.0))
        state.down = True
        with pytest.raises(ExchangeUnavailable):
            await adapter.poll()
        with pytest.raises(ExchangeUnavailable):  # never reached the exchange
            await adapter.submit_order(OrderRequest("tw-11", "BTC-USD", "buy", 0.01))
        state.fill(resting.id)  # the exchange fills while we cannot see it
        state.down = False
        state.lose_replies = 1  # the next order arrives, its reply does not
        with pytest.raises(ExchangeUnavailable):
            await adapter.submit_order(OrderRequest("tw-12", "BTC-USD", "buy", 0.01))
        state.add_order(
            {"pair": "XXBTZUSD", "type": "buy", "ordertype": "limit", "volume": "0.01", "price": "1"}
        )
        strays = await adapter.reconcile()
        await adapter.poll()  # nothing new: each change is reported once
    finally:
        await adapter.close()
    final = {o.client_id: o for o in events.orders}
    assert final["tw-10"].status is OrderState.FILLED and final["tw-10"].average == 63_000.0
    assert (
        final["tw-11"].status is OrderState.REJECTED and final["tw-11"].reason == "never reached the exchange"
    )
    assert final["tw-12"].status is OrderState.FILLED and final["tw-12"].id
    assert [f.client_id for f in events.fills] == ["tw-10", "tw-12"]
    assert len(events.orders) == 3
    assert [s.price for s in strays] == [1.0]
    assert sum(1 for o in state.submitted() if o.cl_ord_id == "tw-12") == 1  # never sent twice


async def test_ccxt_adapter_refuses_bad_credentials(standin: tuple[KrakenStandIn, str]) -> None:
    _, url = standin
    adapter = _adapter(url, key="not-the-key")
    try:
        with pytest.raises(ExchangeAuthFailed) as refused:
            await adapter.connect()
    finally:
        await adapter.close()
    assert "not-the-key" not in refused.value.message and API_SECRET not in refused.value.message


async def _live(ws: Any, name: str, **config: Any) -> dict[str, Any]:
    return await call(
        ws,
        {
            "type": "session_start",
            "session_type": "live",
            "strategy_config": {name: ["BTC-USD"]},
            "config": config,
        },
    )


def _exchange_alert(frame: dict[str, Any]) -> bool:
    return frame.get("stream") == "health_check" and str(frame["data"]["event"]).startswith("health.exchange")


async def _subscribed(r: Running, *streams: str) -> Any:
    ws = await authed_client(r, Level.PREMIUM)
    for stream in streams:
        assert (await call(ws, {"type": "subscribe", "stream": stream}))["status"] == "subscribed"
    return ws


async def test_a_live_session_trades_on_the_exchange_and_streams_its_orders(
    settings_factory: Factory, standin: tuple[KrakenStandIn, str]
) -> None:
    """Entry and exit go to the exchange with the session's client ids, fills come back on
    ``orders`` and ``positions``; the stop closes the position; results are stored."""
    state, url = standin
    async with engine_server(_settings(settings_factory, url)) as r:
        ws = await _subscribed(r, "orders", "positions", "execution_result")
        async with ws:
            assert (await call(ws, {"type": "upsert_strategy", "strategy_config": _strategy("hold")}))[
                "version"
            ] == 1
            started = await _live(ws, "hold")
            assert started["status"] == "session_started", started
            sid = started["session_id"]
            filled = await until(
                ws, lambda f: f.get("stream") == "orders" and f["data"]["status"] == "filled"
            )
            opened = await until(ws, lambda f: f.get("stream") == "positions")
            stopped = await call(ws, {"type": "session_stop", "session_id": sid})
            result = await until(ws, lambda f: f.get("stream") == "execution_result", TIMEOUT * 3)
            stored = await call(
                ws,
                {
                    "type": "results_request",
                    "request_type": "session_results",
                    "params": {"session_id": sid, "sections": ["orders", "trades", "open_positions"]},
                },
            )
    assert (filled["data"]["session_id"], filled["data"]["kind"], filled["data"]["side"]) == (
        sid,
        "entry",
        "buy",
    )
    assert filled["data"]["fill_price"] == 64_000.0 and filled["data"]["units"] == pytest.approx(
        1000 / 64_000
    )
    assert opened["data"]["event"] == "position.opened" and opened["data"]["owner"] == "alice"
    assert stopped["session"]["status"] == "stopped"
    assert result["data"]["status"] == "stopped" and result["data"]["summary"]["trades"] == 1
    entry, exit_ = state.submitted()
    assert entry.cl_ord_id == f"{sid}-1" and (entry.side, entry.ordertype) == ("buy", "market")
    assert (exit_.side, exit_.volume) == ("sell", entry.volume)
    assert state.balances["XXBT"] == pytest.approx(0.0, abs=1e-12)  # flat again
    data = stored["data"]
    assert [o["status"] for o in data["orders"]["items"]] == ["filled", "filled"]
    assert data["trades"]["items"][0]["exit_reason"] == "stopped" and data["open_positions"] == []


async def test_risk_limits_refuse_orders_before_they_leave(
    settings_factory: Factory, standin: tuple[KrakenStandIn, str]
) -> None:
    """An entry over max_position_notional never reaches the exchange; with max_orders_per_minute
    = 2 an entry/exit cycle is followed by a refused entry."""
    state, url = standin
    async with engine_server(_settings(settings_factory, url)) as r:
        ws = await _subscribed(r, "orders")
        async with ws:
            await call(ws, {"type": "upsert_strategy", "strategy_config": _strategy("big", size=1000)})
            await call(
                ws, {"type": "upsert_strategy", "strategy_config": _strategy("busy", cycle=True, size=100)}
            )
            big = (await _live(ws, "big", max_position_notional=500))["session_id"]
            refused = await until(
                ws, lambda f: f.get("stream") == "orders" and f["data"]["status"] == "rejected"
            )
            await call(ws, {"type": "session_stop", "session_id": big})
            assert state.calls["AddOrder"] == 0
            busy = (await _live(ws, "busy", max_orders_per_minute=2))["session_id"]
            throttled = await until(
                ws,
                lambda f: (
                    f.get("stream") == "orders"
                    and f["data"]["session_id"] == busy
                    and f["data"]["status"] == "rejected"
                ),
            )
            await call(ws, {"type": "session_stop", "session_id": busy})
            bad = await _live(ws, "busy", max_orders_per_minute=0)
            paper = await call(
                ws,
                {
                    "type": "session_start",
                    "session_type": "paper",
                    "strategy_config": {"busy": ["BTC-USD"]},
                    "config": {"max_position_notional": 10},
                },
            )
    assert refused["data"]["session_id"] == big
    assert refused["data"]["note"] == "risk: position notional 1000.00 over the maximum 500.00"
    assert throttled["data"]["note"] == "risk: at most 2 orders per minute"
    assert [o.side for o in state.submitted()] == ["buy", "sell"]
    assert [e["path"] for e in bad["details"]["errors"]] == ["config.max_orders_per_minute"]
    assert [e["path"] for e in paper["details"]["errors"]] == ["config.max_position_notional"]


async def test_live_needs_a_connected_exchange_and_a_fed_symbol(
    settings_factory: Factory, standin: tuple[KrakenStandIn, str]
) -> None:
    """Symbols: the exchange's markets are known, only the polled ones tradable; an outage is
    alerted on health_check, refuses live starts, and ends with a reconnect."""
    state, url = standin
    async with engine_server(_settings(settings_factory, url)) as r:
        ws = await _subscribed(r, "health_check")
        async with ws:
            await call(ws, {"type": "upsert_strategy", "strategy_config": _strategy("hold")})
            symbols = {
                s["symbol"]: s for s in (await call(ws, {"type": "query", "query_type": "symbols"}))["data"]
            }
            not_fed = await call(
                ws,
                {"type": "session_start", "session_type": "live", "strategy_config": {"hold": ["ETH-USD"]}},
            )
            state.down = True
            down = await until(ws, _exchange_alert)
            refused = await _live(ws, "hold")
            state.down = False
            back = await until(ws, _exchange_alert)
            health = r.server.controller.health()  # type: ignore[union-attr]
    assert symbols["BTC-USD"]["sources"] == ["dataset", "exchange"] and symbols["BTC-USD"]["live"] is True
    assert symbols["ETH-USD"]["sources"] == ["exchange"] and symbols["ETH-USD"]["live"] is False
    assert (not_fed["error_code"], not_fed["details"]["symbol"]) == ("unknown_symbol", "ETH-USD")
    assert down["data"]["event"] == "health.exchange_disconnected"
    assert (refused["error_code"], refused["details"]) == (
        "live_trading_unavailable",
        {"exchange": "kraken", "connected": False},
    )
    assert back["data"]["event"] == "health.exchange_reconnected"
    assert health["exchange_connected"] is True and health["exchange_reconnects"] == 1
    assert API_SECRET not in str(health) and API_KEY not in str(health)
