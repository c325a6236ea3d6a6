"""Live sessions: the state machines trade a real exchange account through :class:`LiveBroker`.

A live session is a paper session whose broker is the exchange: the same job controller, state
machines, streams (``orders``, ``positions``, ``execution_status``) and stored results, but each
order goes to the exchange (:class:`~tradewire.engine.exchange_service.ExchangeService`) and is
filled when the exchange says so, asynchronously. What differs from the simulated broker:

* **Fills arrive later.** A machine's entry waits in ``entry_evaluation`` until the exchange
  reports the order; :meth:`LiveBroker.exchange_update` runs on the event loop's thread (the
  service guarantees it) and calls the machine back exactly as the simulated broker would
  (``entry_filled``, ``entry_rejected``, ``position_closed``), at the exchange's average price
  and fee. An entry cancelled by its machine (O1, emergency) that fills anyway is closed at once
  and recorded, without telling the machine (it has moved on).
* **Sizes** follow the strategy's ``positionSize`` at the deciding tick's price (the fill price
  is not known before); the adapter rounds to the market's precision. Leverage sizes the order,
  it is not sent (spot orders: the account must hold the notional).
* **Stop-loss and take-profit** are watched by the engine on the exchange feed's prices and
  closed with market orders; they are not resting orders on the exchange (while the engine is
  disconnected they are not watched).
* **Risk limits** (``config.max_position_notional``, ``config.max_orders_per_minute``) refuse an
  entry before it leaves: the order is reported ``rejected`` with the reason on ``orders``. Exits
  are never refused (reducing exposure is always allowed) but count toward the minute.
* **Stop** (``session_stop``, ``max_duration_seconds``, server shutdown): entries waiting are
  cancelled and open positions closed with market orders, waiting up to :data:`FLATTEN_WAIT`;
  what could not be closed stays open on the exchange, is listed in the results'
  ``open_positions`` and alerted on ``health_check``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tradewire.bus import topics
from tradewire.engine.broker import (
    EntrySpec,
    Order,
    OrderKind,
    OrderObserver,
    OrderStatus,
    PairKey,
    Position,
    PositionListener,
    Trade,
)
from tradewire.engine.exchange import ExchangeOrder, OrderRequest
from tradewire.engine.sessions.jobs import PaperJob

FLATTEN_WAIT = 10.0  # s a stopping live session waits for its closing orders to fill
EXIT_RETRY = 5.0  # s (data time) before a refused or partial exit is sent again
WINDOW = 60.0  # s of the orders-per-minute limit


class OrderGateway(Protocol):
    """Where a live broker sends orders (the exchange service)."""

    def submit(self, owner: Any, request: OrderRequest) -> None: ...

    def cancel(self, order: ExchangeOrder) -> None: ...


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_position_notional: float | None = None  # quote currency, per position
    max_orders_per_minute: int | None = None

    def refusal(self, notional: float, recent: int) -> str | None:
        """Why an entry of ``notional`` must not be sent, after ``recent`` orders this minute."""
        if self.max_orders_per_minute is not None and recent >= self.max_orders_per_minute:
            return f"risk: at most {self.max_orders_per_minute} orders per minute"
        if self.max_position_notional is not None and notional > self.max_position_notional:
            return f"risk: position notional {notional:.2f} over the maximum {self.max_position_notional:.2f}"
        return None


@dataclass(slots=True)
class _Symbol:
    last_price: float = float("nan")
    last_ts: float = float("nan")
    bars: int = 0


@dataclass(slots=True, eq=False)
class _Pair:
    key: PairKey
    listener: PositionListener
    spec: EntrySpec
    symbol: _Symbol
    pending: Order | None = None  # the order at the exchange (entry or exit)
    exchange: ExchangeOrder | None = None  # its last report
    position: Position | None = None
    abandoned: bool = False  # the machine cancelled the pending entry
    exit_reason: str | None = None  # an exit is wanted (retried if refused or partial)
    exit_after: float = 0.0  # data time of the next retry
    filled_units: float = 0.0  # of the pending exit, already reported


@dataclass(slots=True)
class _Sent:
    pair: _Pair
    order: Order
    units: float = 0.0
    fills: list[tuple[float, float]] = field(default_factory=list)


class LiveBroker:
    """A live session's account on the exchange (see the module docstring)."""

    def __init__(
        self,
        session_id: str,
        initial_capital: float,
        gateway: OrderGateway,
        risk: RiskLimits,
        observer: OrderObserver | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session_id
        self._gateway = gateway
        self._risk = risk
        self._observer = observer
        self._clock = clock
        self.initial_capital = initial_capital
        self.cash = initial_capital
        self._pairs: dict[PairKey, _Pair] = {}
        self._symbols: dict[str, _Symbol] = {}
        self._sent: dict[str, _Sent] = {}  # client order id → what was sent
        self._recent: deque[float] = deque()  # data times of orders sent in the last minute
        self._next_id = 1
        self.index = 0
        self.orders: list[Order] = []
        self.trades: list[Trade] = []
        self.bankrupt = False
        self.frozen = False  # after the stop: no new orders
        self.refused = 0  # entries refused by the risk limits

    # ------------------------------------------------------------------ Executor
    def attach(self, pair: PairKey, listener: PositionListener, spec: EntrySpec) -> None:
        symbol = self._symbols.setdefault(pair[1], _Symbol())
        self._pairs[pair] = _Pair(pair, listener, spec, symbol)

    def submit_entry(self, pair: PairKey, ts: float, price: float, reason: str = "z1_entry") -> Order | None:
        state = self._pairs[pair]
        if state.position is not None or state.pending is not None or self.frozen or self.bankrupt:
            return None
        order = self._new_order(
            pair, OrderKind.ENTRY, "buy" if state.spec.direction > 0 else "sell", ts, reason
        )
        units = self._size(state.spec, price)
        refusal = (
            self._risk.refusal(units * price, self._window(ts)) if units > 0 else "size rounds to zero units"
        )
        if refusal is not None:
            self.refused += 1
            order.status, order.note = OrderStatus.REJECTED, refusal
            self._notify(order)
            state.listener.entry_rejected(order)
            return order
        self._send(state, order, units, ts)
        return order

    def submit_exit(self, pair: PairKey, ts: float, price: float, reason: str) -> Order | None:
        state = self._pairs[pair]
        if state.position is None or state.pending is not None or self.frozen:
            return None
        state.exit_reason = reason
        return self._exit(state, ts)

    def cancel_pending(self, pair: PairKey, reason: str) -> bool:
        """Ask the exchange to cancel ``pair``'s waiting entry; the machine moves on at once."""
        state = self._pairs.get(pair)
        if state is None or state.pending is None or state.pending.kind is not OrderKind.ENTRY:
            return False
        state.abandoned = True
        state.pending.note = reason
        if state.exchange is not None and state.exchange.id:
            self._gateway.cancel(state.exchange)
        return True

    # ------------------------------------------------------------------ market data
    def on_bar(self, symbol: str, ts: float, o: float, h: float, low: float, c: float, index: int) -> None:
        """Mark the price; close positions whose stop-loss or take-profit it reached."""
        sym = self._symbols.get(symbol)
        if sym is None:
            return
        self.index = index
        sym.bars += 1
        sym.last_price, sym.last_ts = c, ts
        for state in self._pairs.values():
            if state.symbol is sym and state.position is not None and state.pending is None:
                self._watch(state, ts, c)

    def _watch(self, state: _Pair, ts: float, price: float) -> None:
        pos = state.position
        assert pos is not None
        if state.exit_reason is not None:
            if ts >= state.exit_after:
                self._exit(state, ts)
            return
        long = pos.direction > 0
        if pos.stop_loss is not None and (price <= pos.stop_loss if long else price >= pos.stop_loss):
            state.exit_reason = "stop_loss"
        elif pos.take_profit is not None and (price >= pos.take_profit if long else price <= pos.take_profit):
            state.exit_reason = "take_profit"
        if state.exit_reason is not None:
            self._exit(state, ts)

    def equity(self) -> float:
        equity = self.cash
        for state in self._pairs.values():
            pos = state.position
            if pos is not None:
                equity += pos.direction * pos.units * (state.symbol.last_price - pos.entry_price)
        return equity

    def open_positions(self) -> list[Position]:
        return [state.position for state in self._pairs.values() if state.position is not None]

    def liquidate(self, ts: float) -> None:
        self.close_all(ts, "out_of_money")
        self.bankrupt = True

    def close_all(self, ts: float, reason: str) -> None:
        """Cancel waiting entries and send closing orders for every position."""
        for state in self._pairs.values():
            if state.pending is not None and state.pending.kind is OrderKind.ENTRY:
                self.cancel_pending(state.key, reason)
            elif state.position is not None and state.pending is None:
                state.exit_reason = reason
                self._exit(state, ts)

    async def flatten(self, reason: str, timeout: float = FLATTEN_WAIT) -> bool:
        """Close everything and wait (bounded) until no order waits and no position is open."""
        self.close_all(self._last_ts(), reason)
        deadline = asyncio.get_running_loop().time() + timeout
        while any(s.pending is not None or s.position is not None for s in self._pairs.values()):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.05)
            self._retry_exits()
        return True

    def freeze(self) -> None:
        self.frozen = True

    # ------------------------------------------------------------------ exchange events
    def exchange_update(self, report: ExchangeOrder) -> None:
        """The exchange reported one of this session's orders (event loop thread)."""
        sent = self._sent.get(report.client_id or "")
        if sent is None or sent.order.status is not OrderStatus.PENDING:
            return  # not ours, or already final (an older report arriving late)
        state = sent.pair
        state.exchange = report
        if not report.status.final:
            return
        del self._sent[report.client_id or ""]
        state.pending = None
        if sent.order.kind is OrderKind.ENTRY:
            self._entry_done(state, sent.order, report)
        else:
            self._exit_done(state, sent.order, report)

    def _entry_done(self, state: _Pair, order: Order, report: ExchangeOrder) -> None:
        if report.filled <= 0:
            order.status = OrderStatus.CANCELLED if state.abandoned else OrderStatus.REJECTED
            order.note = order.note if state.abandoned else report.reason or report.status.value
            self._notify(order)
            if not state.abandoned:
                state.listener.entry_rejected(order)
            state.abandoned = False
            return
        ts = self._now()
        price = report.average or state.symbol.last_price
        self.cash -= report.fee
        self._filled(order, ts, price, report.filled, report.fee)
        spec = state.spec
        sign = spec.direction
        position = Position(
            state.key,
            sign,
            report.filled,
            price,
            ts,
            self.index,
            state.symbol.bars,
            report.fee,
            spec.leverage,
            price * (1 - sign * spec.stop_loss_pct / 100) if spec.stop_loss_pct is not None else None,
            price * (1 + sign * spec.take_profit_pct / 100) if spec.take_profit_pct is not None else None,
        )
        state.position = position
        if self._observer is not None:
            self._observer.position_opened(position)
        if state.abandoned:  # the machine gave up on this entry: close what filled, quietly
            state.exit_reason = "entry cancelled but filled"
            self._exit(state, ts)
            return
        state.listener.entry_filled(position)

    def _exit_done(self, state: _Pair, order: Order, report: ExchangeOrder) -> None:
        pos = state.position
        assert pos is not None
        ts = self._now()
        if report.filled <= 0:
            order.status, order.note = OrderStatus.REJECTED, report.reason or report.status.value
            self._notify(order)
            state.exit_after = ts + EXIT_RETRY  # try again (exits are never given up)
            return
        price = report.average or state.symbol.last_price
        units = min(report.filled, pos.units)
        self._filled(order, ts, price, units, report.fee)
        self._close(state, pos, units, ts, price, report.fee)

    def _close(self, state: _Pair, pos: Position, units: float, ts: float, price: float, fee: float) -> None:
        share = units / pos.units
        entry_fee = pos.entry_fee * share
        gross = pos.direction * units * (price - pos.entry_price)
        self.cash += gross - fee
        reason = state.exit_reason or "exit"
        trade = Trade(
            pair=pos.pair,
            direction=pos.direction,
            units=units,
            entry_at=pos.entry_at,
            entry_price=pos.entry_price,
            entry_index=pos.entry_index,
            exit_at=ts,
            exit_price=price,
            exit_index=self.index,
            bars=state.symbol.bars - pos.entry_bar,
            fees=entry_fee + fee,
            pnl=gross - entry_fee - fee,
            return_pct=(
                pos.direction * (price / pos.entry_price - 1) - (entry_fee + fee) / (units * pos.entry_price)
            )
            * 100,
            exit_reason=reason,
            stop_loss=pos.stop_loss,
            take_profit=pos.take_profit,
        )
        self.trades.append(trade)
        if units < pos.units:  # partly closed: the rest goes out again
            pos.units -= units
            pos.entry_fee -= entry_fee
            state.exit_after = ts + EXIT_RETRY
            return
        state.position = None
        state.exit_reason = None
        abandoned, state.abandoned = state.abandoned, False
        if self._observer is not None:
            self._observer.position_closed(trade)
        if not abandoned:
            state.listener.position_closed(trade)

    # ------------------------------------------------------------------ helpers
    def _exit(self, state: _Pair, ts: float) -> Order | None:
        pos = state.position
        if pos is None or state.pending is not None:
            return None
        side = "sell" if pos.direction > 0 else "buy"
        order = self._new_order(state.key, OrderKind.EXIT, side, ts, state.exit_reason or "exit")
        self._window(ts)
        self._send(state, order, pos.units, ts)
        return order

    def _retry_exits(self) -> None:
        now = self._now()
        for state in self._pairs.values():
            if state.position is not None and state.pending is None and now >= state.exit_after:
                self._exit(state, now)

    def _send(self, state: _Pair, order: Order, units: float, ts: float) -> None:
        self._recent.append(ts)
        state.pending = order
        state.exchange = None
        client_id = f"{self._session}-{order.id}"
        self._sent[client_id] = _Sent(state, order, units)
        self._gateway.submit(self, OrderRequest(client_id, state.key[1], order.side, units))

    def _window(self, ts: float) -> int:
        """Orders sent in the minute before ``ts``."""
        recent = self._recent
        while recent and recent[0] <= ts - WINDOW:
            recent.popleft()
        return len(recent)

    def _size(self, spec: EntrySpec, price: float) -> float:
        if not price > 0:
            return 0.0
        if spec.size_type == "percentage":
            used = sum(
                s.position.units * s.symbol.last_price / s.position.leverage
                for s in self._pairs.values()
                if s.position is not None
            )
            budget = max(0.0, self.equity() - used) * spec.leverage * spec.size_value / 100.0
        else:
            budget = spec.size_value
        return budget / price

    def _new_order(self, pair: PairKey, kind: OrderKind, side: str, ts: float, reason: str) -> Order:
        order = Order(self._next_id, pair, kind, side, ts, reason)
        self._next_id += 1
        self.orders.append(order)
        self._notify(order)
        return order

    def _filled(self, order: Order, ts: float, price: float, units: float, fee: float) -> None:
        order.status = OrderStatus.FILLED
        order.filled_at, order.fill_price, order.units, order.fee = ts, price, units, fee
        self._notify(order)

    def _notify(self, order: Order) -> None:
        if self._observer is not None:
            self._observer.order_event(order)

    def _now(self) -> float:
        return self._clock()

    def _last_ts(self) -> float:
        stamps = [s.last_ts for s in self._symbols.values() if s.last_ts == s.last_ts]
        return max(stamps, default=self._now())


class LiveJob(PaperJob):
    """A paper job whose stop flattens the account on the exchange before the results are built."""

    async def run(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self._wake.wait(), self._max_duration)
        except TimeoutError:
            self.end_reason = "max_duration"
        broker = self.sim.broker
        assert isinstance(broker, LiveBroker)
        reason = self.end_reason or "stopped"
        if not await broker.flatten(reason):
            left = [
                {"symbol": p.pair[1], "strategy_name": p.pair[0], "units": p.units}
                for p in broker.open_positions()
            ]
            self.sim.publish(
                topics.ALERT_LIVE_POSITION_LEFT_OPEN, {"positions": left, "timestamp": broker._now()}
            )
        broker.freeze()
        self._report(0.0, force=True)
        return self.sim.finish(reason, close_positions=False)
