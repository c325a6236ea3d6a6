"""The live broker and the exchange service without a network: asynchronous fills reach the
state machines on the event loop's thread, brackets are watched, risk limits refuse."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tradewire.engine.broker import EntrySpec, Order, OrderStatus, Position, Trade
from tradewire.engine.exchange import ExchangeOrder, OrderRequest, OrderState
from tradewire.engine.exchange_service import ExchangeService
from tradewire.engine.sessions.live import LiveBroker, RiskLimits
from tradewire.engine.symbols import SymbolRegistry

PAIR = ("s", "BTC-USD")


class Gateway:
    def __init__(self) -> None:
        self.sent: list[OrderRequest] = []
        self.cancelled: list[ExchangeOrder] = []

    def submit(self, owner: Any, request: OrderRequest) -> None:
        self.sent.append(request)

    def cancel(self, order: ExchangeOrder) -> None:
        self.cancelled.append(order)


class Machine:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any, int]] = []

    def entry_filled(self, position: Position) -> None:
        self.events.append(("filled", position, threading.get_ident()))

    def entry_rejected(self, order: Order) -> None:
        self.events.append(("rejected", order, threading.get_ident()))

    def position_closed(self, trade: Trade) -> None:
        self.events.append(("closed", trade, threading.get_ident()))


def _report(
    request: OrderRequest, status: OrderState, filled: float, price: float, fee: float = 0.0
) -> ExchangeOrder:
    r = request
    return ExchangeOrder(
        "X" + r.client_id, r.client_id, r.symbol, r.side, "market", r.amount, None, status, filled, price, fee
    )


NO_LIMITS = RiskLimits()


def _broker(risk: RiskLimits = NO_LIMITS, stop: float | None = 2.0) -> tuple[LiveBroker, Gateway, Machine]:
    gateway, machine = Gateway(), Machine()
    broker = LiveBroker("s_1", 10_000.0, gateway, risk, None, clock=lambda: 100.0)
    broker.attach(PAIR, machine, EntrySpec(1, "fixed", 1000.0, stop_loss_pct=stop))
    broker.on_bar("BTC-USD", 1.0, 100.0, 100.0, 100.0, 100.0, 0)
    return broker, gateway, machine


def test_an_entry_fills_when_the_exchange_says_so_and_a_stop_closes_it() -> None:
    broker, gateway, machine = _broker()
    order = broker.submit_entry(PAIR, 1.0, 100.0)
    assert order is not None and order.status is OrderStatus.PENDING and machine.events == []
    (request,) = gateway.sent
    assert (request.client_id, request.side, request.amount) == ("s_1-1", "buy", 10.0)
    broker.exchange_update(_report(request, OrderState.OPEN, 0, 0))
    broker.exchange_update(_report(request, OrderState.FILLED, 10.0, 101.0, 2.0))
    kind, position, _ = machine.events[-1]
    assert kind == "filled" and (position.units, position.entry_price) == (10.0, 101.0)
    assert position.stop_loss == 101.0 * 0.98 and broker.cash == 10_000.0 - 2.0
    broker.exchange_update(_report(request, OrderState.OPEN, 0, 0))  # a late, older report: ignored
    broker.on_bar("BTC-USD", 2.0, 98.0, 98.0, 98.0, 98.0, 1)  # at the stop
    exit_request = gateway.sent[-1]
    assert (exit_request.side, exit_request.amount) == ("sell", 10.0)
    broker.exchange_update(_report(exit_request, OrderState.FILLED, 10.0, 98.5, 1.0))
    kind, trade, _ = machine.events[-1]
    assert kind == "closed" and trade.exit_reason == "stop_loss"
    assert trade.pnl == 10 * (98.5 - 101.0) - 3.0 and broker.equity() == 10_000.0 + trade.pnl


def test_a_refused_entry_and_a_cancelled_entry_that_fills_anyway() -> None:
    broker, gateway, machine = _broker(stop=None)
    broker.submit_entry(PAIR, 1.0, 100.0)
    first = gateway.sent[-1]
    broker.exchange_update(_report(first, OrderState.REJECTED, 0, 0))
    assert machine.events[-1][0] == "rejected" and broker.orders[-1].status is OrderStatus.REJECTED
    broker.submit_entry(PAIR, 2.0, 100.0)
    second = gateway.sent[-1]
    broker.exchange_update(_report(second, OrderState.OPEN, 0, 0))
    assert broker.cancel_pending(PAIR, "timeout") and gateway.cancelled[-1].client_id == second.client_id
    broker.exchange_update(_report(second, OrderState.FILLED, 10.0, 100.0))  # it filled first
    closing = gateway.sent[-1]
    assert closing.side == "sell" and len(machine.events) == 1  # the machine is not told
    broker.exchange_update(_report(closing, OrderState.FILLED, 10.0, 100.0))
    assert broker.open_positions() == [] and broker.trades[-1].exit_reason == "entry cancelled but filled"


def test_risk_limits_refuse_entries_but_never_exits() -> None:
    broker, gateway, machine = _broker(RiskLimits(max_position_notional=500.0, max_orders_per_minute=2))
    refused = broker.submit_entry(PAIR, 1.0, 100.0)
    assert refused is not None and refused.note == "risk: position notional 1000.00 over the maximum 500.00"
    assert gateway.sent == [] and machine.events[-1][0] == "rejected"
    small, _, _ = _broker(RiskLimits(max_orders_per_minute=2), stop=None)
    small.attach(("t", "BTC-USD"), Machine(), EntrySpec(1, "fixed", 100.0))
    small.submit_entry(("t", "BTC-USD"), 1.0, 100.0)
    request = small._sent["s_1-1"].order
    assert request.status is OrderStatus.PENDING
    small.exchange_update(
        _report(OrderRequest("s_1-1", "BTC-USD", "buy", 1.0), OrderState.FILLED, 1.0, 100.0)
    )
    assert small.submit_exit(("t", "BTC-USD"), 2.0, 100.0, "ze1") is not None  # the second order
    third = small.submit_entry(PAIR, 3.0, 100.0)
    assert third is not None and third.note == "risk: at most 2 orders per minute"
    fourth = small.submit_entry(PAIR, 62.0, 100.0)  # a minute after the first
    assert fourth is not None and fourth.status is OrderStatus.PENDING


async def test_order_events_from_another_thread_reach_the_broker_on_the_loop_thread() -> None:
    """An adapter delivering events on its own thread: the service hands them to the loop."""

    class Adapter:
        name = "threaded"

        def set_listener(self, listener: Any) -> None:
            self.listener = listener

    adapter = Adapter()
    service = ExchangeService(adapter, SymbolRegistry(), [], poll_interval=1.0, publish=lambda t, p: None)  # type: ignore[arg-type]
    service._loop, service._thread = asyncio.get_running_loop(), threading.get_ident()
    broker, _, machine = _broker()
    service._owners["s_1-1"] = broker  # as if the service had sent the order
    broker.submit_entry(PAIR, 1.0, 100.0)
    request = OrderRequest("s_1-1", "BTC-USD", "buy", 10.0)
    worker = threading.Thread(
        target=adapter.listener.order_updated, args=(_report(request, OrderState.FILLED, 10.0, 100.0),)
    )
    worker.start()
    await asyncio.to_thread(worker.join)
    for _ in range(100):
        if machine.events:
            break
        await asyncio.sleep(0.01)
    assert machine.events[-1][0] == "filled" and machine.events[-1][2] == threading.get_ident()
