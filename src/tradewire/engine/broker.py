"""The simulated broker: fills a session's orders against bars, with backtesting.py's conventions.

One account per session (cash, equity, margin) holding one position per (strategy, symbol) pair.
No I/O and no clock: the caller feeds bars (``on_bar``) in time order and submits orders; the
broker tells each pair's listener (its state machine) about fills, rejections and closes, and
records orders and closed trades. The conventions, chosen to match backtesting.py
(kernc/backtesting.py ``_Broker``), which traders use as the reference:

* **Market orders** decided on a bar fill at the **next bar's open** of that symbol (the next
  tick for tick data, a bar with open = high = low = close). With ``trade_on_close`` they fill at
  once at the price given (the live signal mode: a decision at a tick is filled at that tick).
* **Stop-loss** (a stop order) fills at its level when the bar's low (long) or high (short)
  touches it, or at the **open when the bar gaps through** it. **Take-profit** (a limit order)
  fills at its level, or at the open when the bar gaps beyond it. When both are touched in one
  bar, the **stop-loss fills first** (nobody knows the path inside a bar: assume the worse). A
  position entered at a bar's open is checked against that same bar's range.
* **Fees** (``fee_bps``) are charged on the notional at entry and at exit: ``units × price ×
  fee``. **Slippage** (``slippage_bps``) worsens market and stop fills on both sides (buy higher,
  sell lower); take-profit limit fills get their level (backtesting.py's ``spread`` applies at
  entry only: with ``slippage_bps = 0`` the two agree).
* **Position size** is computed at the fill: ``percentage`` = that share of the available margin
  (equity minus the margin other positions hold) times leverage; ``fixed`` = a notional in quote
  currency. Units = budget / (fill price + fee per unit), floored with ``whole_units``
  (backtesting.py always floors). An order the margin cannot cover, or that rounds to zero
  units, is **rejected**.
* **Leverage** ``L`` means a position holds ``notional / L`` of margin. **Equity** = cash +
  unrealised P&L, marked to each bar's close. Equity at or below zero closes everything at the
  last price and ends trading (``bankrupt``).

Shapes: prices in quote currency per unit, ``units`` ≥ 0 with the side in ``direction`` (+1 long,
-1 short), times in the data's epoch seconds, ``index`` the caller's bar counter (equity points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

PairKey = tuple[str, str]  # (strategy name, symbol)

BPS = 10_000.0


class OrderKind(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


class OrderStatus(StrEnum):
    PENDING = "pending"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Costs:
    """Trading costs, each in basis points per side (1 bp = 0.01 %)."""

    fee_bps: float = 0.0
    slippage_bps: float = 0.0


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """How a pair enters: side, size rule, leverage and bracket offsets (percent of the fill)."""

    direction: int  # +1 long, -1 short
    size_type: str  # "fixed" (quote notional) | "percentage" (of available margin)
    size_value: float
    leverage: float = 1.0
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None


@dataclass(slots=True)
class Order:
    """One order and what became of it (kept in submission order for the results)."""

    id: int
    pair: PairKey
    kind: OrderKind
    side: str  # "buy" | "sell"
    submitted_at: float
    reason: str
    status: OrderStatus = OrderStatus.PENDING
    filled_at: float | None = None
    fill_price: float | None = None
    units: float = 0.0
    fee: float = 0.0
    note: str = ""  # why it was rejected or cancelled

    def to_dict(self) -> dict[str, object]:
        return {
            "order_id": self.id,
            "strategy_name": self.pair[0],
            "symbol": self.pair[1],
            "kind": self.kind.value,
            "side": self.side,
            "status": self.status.value,
            "reason": self.reason,
            "submitted_at": self.submitted_at,
            "filled_at": self.filled_at,
            "fill_price": self.fill_price,
            "units": self.units,
            "fee": self.fee,
            "note": self.note,
        }


@dataclass(slots=True)
class Position:
    """An open position of one pair."""

    pair: PairKey
    direction: int
    units: float
    entry_price: float  # the fill, slippage included
    entry_at: float
    entry_index: int  # equity point of the entry
    entry_bar: int  # the symbol's own bar count at the entry
    entry_fee: float
    leverage: float
    stop_loss: float | None
    take_profit: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "strategy_name": self.pair[0],
            "symbol": self.pair[1],
            "direction": _side_name(self.direction),
            "units": self.units,
            "entry_price": self.entry_price,
            "entry_time": self.entry_at,
            "stop_loss": self.stop_loss,
            "take_profit": self.take_profit,
            "leverage": self.leverage,
        }


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed position. ``pnl`` is net of both fees; ``return_pct`` as backtesting.py's
    ``Trade.pl_pct`` × 100: side × (exit / entry − 1) − fees / (units × entry)."""

    pair: PairKey
    direction: int
    units: float
    entry_at: float
    entry_price: float
    entry_index: int
    exit_at: float
    exit_price: float
    exit_index: int
    bars: int  # bars of its symbol from entry to exit
    fees: float
    pnl: float
    return_pct: float
    exit_reason: str
    stop_loss: float | None
    take_profit: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "strategy_name": self.pair[0],
            "symbol": self.pair[1],
            "direction": _side_name(self.direction),
            "units": self.units,
            "entry_time": self.entry_at,
            "entry_price": self.entry_price,
            "exit_time": self.exit_at,
            "exit_price": self.exit_price,
            "fees": self.fees,
            "pnl": self.pnl,
            "return_pct": self.return_pct,
            "exit_reason": self.exit_reason,
            "stop_loss": self.stop_loss,
            "take_profit": self.take_profit,
            "bars": self.bars,
        }


class PositionListener(Protocol):
    """What a pair's decision maker (its state machine) hears from the broker."""

    def entry_filled(self, position: Position) -> None: ...

    def entry_rejected(self, order: Order) -> None: ...

    def position_closed(self, trade: Trade) -> None: ...


class OrderObserver(Protocol):
    """Optional: sees every order event and position change (the session publishes them)."""

    def order_event(self, order: Order) -> None: ...

    def position_opened(self, position: Position) -> None: ...

    def position_closed(self, trade: Trade) -> None: ...


@dataclass(slots=True)
class _Symbol:
    # pairs a bar must visit: a waiting order, or a position with a stop-loss or take-profit
    pairs: list[_Pair] = field(default_factory=list)
    last_price: float = math.nan
    last_ts: float = math.nan  # time of the last bar (positions left at the end close then)
    bars: int = 0  # bars of this symbol seen


@dataclass(slots=True, eq=False)
class _Pair:
    key: PairKey
    listener: PositionListener
    spec: EntrySpec
    symbol: _Symbol
    pending: Order | None = None  # the pair's market order waiting for the next bar
    position: Position | None = None


class SimulatedBroker:
    """One session's account (see the module docstring for the fill conventions)."""

    def __init__(
        self,
        initial_capital: float,
        costs: Costs = Costs(),
        *,
        trade_on_close: bool = False,
        whole_units: bool = False,
        observer: OrderObserver | None = None,
        record: bool = True,
    ) -> None:
        if not initial_capital > 0:
            raise ValueError("initial capital must be positive")
        self.initial_capital = initial_capital
        self.cash = initial_capital  # initial capital − fees ± realised P&L
        self._fee = costs.fee_bps / BPS
        self._slip = costs.slippage_bps / BPS
        self._on_close = trade_on_close
        self._whole = whole_units
        self._observer = observer
        self._record = record  # keep every order and trade (sessions); off for endless live signals
        self._pairs: dict[PairKey, _Pair] = {}
        self._symbols: dict[str, _Symbol] = {}
        self._open: dict[PairKey, _Pair] = {}  # pairs holding a position, in opening order
        self._next_id = 1
        self.index = 0  # the caller's current equity-point index (set by on_bar)
        self.orders: list[Order] = []  # every order, in submission order
        self.trades: list[Trade] = []  # closed positions, in closing order
        self.bankrupt = False

    # ------------------------------------------------------------------ registration
    def attach(self, pair: PairKey, listener: PositionListener, spec: EntrySpec) -> None:
        """Let ``listener`` trade ``pair`` with ``spec``."""
        symbol = self._symbols.setdefault(pair[1], _Symbol())
        self._pairs[pair] = _Pair(pair, listener, spec, symbol)

    def position(self, pair: PairKey) -> Position | None:
        state = self._pairs.get(pair)
        return state.position if state is not None else None

    def open_positions(self) -> list[Position]:
        return [state.position for state in self._open.values() if state.position is not None]

    # ------------------------------------------------------------------ orders from listeners
    def submit_entry(self, pair: PairKey, ts: float, price: float, reason: str = "z1_entry") -> Order | None:
        """A market order opening ``pair``'s position (at the next bar's open, or at ``price`` now
        with ``trade_on_close``); None if the pair already has a position or an order."""
        state = self._pairs[pair]
        if state.position is not None or state.pending is not None or self.bankrupt:
            return None
        side = "buy" if state.spec.direction > 0 else "sell"
        order = self._new_order(pair, OrderKind.ENTRY, side, ts, reason)
        self._wait(state, order)
        if self._on_close:
            self._fill_entry(state, order, ts, price)
        return order

    def submit_exit(self, pair: PairKey, ts: float, price: float, reason: str) -> Order | None:
        """A market order closing ``pair``'s position; None if it has none or an order waits."""
        state = self._pairs[pair]
        position = state.position
        if position is None or state.pending is not None:
            return None
        order = self._new_order(pair, OrderKind.EXIT, _closing_side(position), ts, reason)
        self._wait(state, order)
        if self._on_close:
            self._fill_exit(state, order, ts, price)
        return order

    def cancel_pending(self, pair: PairKey, reason: str) -> bool:
        """Cancel ``pair``'s waiting market order, if any."""
        state = self._pairs.get(pair)
        if state is None or state.pending is None:
            return False
        order, state.pending = state.pending, None
        order.status = OrderStatus.CANCELLED
        order.note = reason
        self._notify(order)
        self._settle(state)
        return True

    # ------------------------------------------------------------------ market data
    def on_bar(self, symbol: str, ts: float, o: float, h: float, low: float, c: float, index: int) -> None:
        """Process one bar of ``symbol`` before the strategies see its close.

        backtesting.py's order of work inside a bar: exits at the open and stop-losses of the
        positions held, then entries at the open (and the new positions' brackets against this
        same bar), then take-profits of the positions held; finally the close is the mark.
        """
        sym = self._symbols.get(symbol)
        if sym is None:
            return
        self.index = index
        sym.bars += 1
        if sym.pairs:
            self._process(list(sym.pairs), ts, o, h, low)
        sym.last_price = c
        sym.last_ts = ts

    def _process(self, pairs: list[_Pair], ts: float, o: float, h: float, low: float) -> None:
        entries: list[_Pair] = []
        held: list[_Pair] = []
        for state in pairs:
            order = state.pending
            if order is not None and order.kind is OrderKind.ENTRY:
                entries.append(state)
                continue
            if order is not None:
                self._fill_exit(state, order, ts, o)
            if state.position is not None:
                held.append(state)
                self._check_stop(state, ts, o, h, low)
        self._process_entries(entries, ts, o, h, low)
        for state in held:
            if state.position is not None:
                self._check_take(state, ts, o, h, low)

    def _process_entries(self, entries: list[_Pair], ts: float, o: float, h: float, low: float) -> None:
        for state in entries:
            assert state.pending is not None
            self._fill_entry(state, state.pending, ts, o)
            if state.position is not None and not self._check_stop(state, ts, o, h, low):
                self._check_take(state, ts, o, h, low)

    def mark(self, symbol: str, price: float) -> None:
        """The latest price of ``symbol`` without processing orders."""
        sym = self._symbols.get(symbol)
        if sym is not None:
            sym.last_price = price

    def equity(self) -> float:
        """Cash plus unrealised P&L at the last prices (O(1) while flat)."""
        equity = self.cash
        for state in self._open.values():
            pos = state.position
            assert pos is not None
            equity += pos.direction * pos.units * (state.symbol.last_price - pos.entry_price)
        return equity

    def liquidate(self, ts: float) -> None:
        """Equity reached zero: close everything at the last prices and stop trading."""
        self.close_all(ts, "out_of_money")
        self.cash = max(self.cash, 0.0)
        self.bankrupt = True

    def close_all(self, ts: float, reason: str) -> None:
        """Cancel waiting orders and close every position at its symbol's last price, at the time
        of that symbol's last bar (``ts`` if it had none): a symbol whose data ended earlier in a
        multi-symbol session is not closed years later."""
        for state in list(self._pairs.values()):
            if state.pending is not None:
                self.cancel_pending(state.key, reason)
            if state.position is not None:
                last = state.symbol.last_ts
                at = ts if math.isnan(last) else last
                order = self._new_order(state.key, OrderKind.EXIT, _closing_side(state.position), at, reason)
                self._close(state, order, at, state.symbol.last_price, reason)

    # ------------------------------------------------------------------ fills
    def _fill_entry(self, state: _Pair, order: Order, ts: float, price: float) -> None:
        spec = state.spec
        state.pending = None
        fill = price * (1 + spec.direction * self._slip)
        per_unit = fill + price * self._fee  # one unit with its entry fee (backtesting.py's sizing)
        margin_free = self._margin_available()
        if spec.size_type == "percentage":
            budget = margin_free * spec.leverage * (spec.size_value / 100.0)
        else:
            budget = spec.size_value
        units = budget // per_unit if self._whole else budget / per_unit
        if not (units > 0 and math.isfinite(units)):
            self._reject(state, order, "size rounds to zero units")
            return
        if units * per_unit > margin_free * spec.leverage:
            self._reject(state, order, "insufficient margin")
            return
        fee = units * fill * self._fee
        self.cash -= fee
        sign = spec.direction
        stop = fill * (1 - sign * spec.stop_loss_pct / 100) if spec.stop_loss_pct is not None else None
        take = fill * (1 + sign * spec.take_profit_pct / 100) if spec.take_profit_pct is not None else None
        position = Position(
            state.key, sign, units, fill, ts, self.index, state.symbol.bars, fee, spec.leverage, stop, take
        )
        state.position = position
        self._open[state.key] = state
        self._filled(order, ts, fill, units, fee)
        self._settle(state)
        if self._observer is not None:
            self._observer.position_opened(position)
        state.listener.entry_filled(position)

    def _fill_exit(self, state: _Pair, order: Order, ts: float, price: float) -> None:
        state.pending = None
        position = state.position
        if position is None:  # closed by a bracket meanwhile
            order.status = OrderStatus.CANCELLED
            order.note = "position already closed"
            self._notify(order)
            self._settle(state)
            return
        self._close(state, order, ts, price * (1 - position.direction * self._slip), order.reason)

    def _check_stop(self, state: _Pair, ts: float, o: float, h: float, low: float) -> bool:
        """Close at the stop-loss if this bar touched it (at the open if it gapped through)."""
        pos = state.position
        assert pos is not None
        stop = pos.stop_loss
        if stop is None:
            return False
        if pos.direction > 0:
            if low > stop:
                return False
            price = min(o, stop)
        else:
            if h < stop:
                return False
            price = max(o, stop)
        order = self._new_order(pos.pair, OrderKind.STOP_LOSS, _closing_side(pos), ts, "stop_loss")
        self._close(state, order, ts, price * (1 - pos.direction * self._slip), "stop_loss")
        return True

    def _check_take(self, state: _Pair, ts: float, o: float, h: float, low: float) -> None:
        """Close at the take-profit if this bar reached it (at the open if it gapped beyond)."""
        pos = state.position
        assert pos is not None
        take = pos.take_profit
        if take is None:
            return
        if pos.direction > 0:
            if h < take:
                return
            price = max(o, take)
        else:
            if low > take:
                return
            price = min(o, take)
        order = self._new_order(pos.pair, OrderKind.TAKE_PROFIT, _closing_side(pos), ts, "take_profit")
        self._close(state, order, ts, price, "take_profit")

    def _close(self, state: _Pair, order: Order, ts: float, price: float, reason: str) -> None:
        pos = state.position
        assert pos is not None
        fee = pos.units * price * self._fee
        gross = pos.direction * pos.units * (price - pos.entry_price)
        self.cash += gross - fee
        fees = pos.entry_fee + fee
        trade = Trade(
            pair=pos.pair,
            direction=pos.direction,
            units=pos.units,
            entry_at=pos.entry_at,
            entry_price=pos.entry_price,
            entry_index=pos.entry_index,
            exit_at=ts,
            exit_price=price,
            exit_index=self.index,
            bars=state.symbol.bars - pos.entry_bar,
            fees=fees,
            pnl=gross - fees,
            return_pct=(pos.direction * (price / pos.entry_price - 1) - fees / (pos.units * pos.entry_price))
            * 100,
            exit_reason=reason,
            stop_loss=pos.stop_loss,
            take_profit=pos.take_profit,
        )
        state.position = None
        del self._open[state.key]
        if self._record:
            self.trades.append(trade)
        self._filled(order, ts, price, pos.units, fee)
        self._settle(state)
        if self._observer is not None:
            self._observer.position_closed(trade)
        state.listener.position_closed(trade)

    # ------------------------------------------------------------------ helpers
    def _margin_available(self) -> float:
        """Equity minus the margin open positions hold (backtesting.py's ``margin_available``)."""
        used = 0.0
        for state in self._open.values():
            pos = state.position
            assert pos is not None
            used += pos.units * state.symbol.last_price / pos.leverage
        return max(0.0, self.equity() - used)

    def _new_order(self, pair: PairKey, kind: OrderKind, side: str, ts: float, reason: str) -> Order:
        order = Order(self._next_id, pair, kind, side, ts, reason)
        self._next_id += 1
        if self._record:
            self.orders.append(order)
        self._notify(order)
        return order

    def _filled(self, order: Order, ts: float, price: float, units: float, fee: float) -> None:
        order.status = OrderStatus.FILLED
        order.filled_at = ts
        order.fill_price = price
        order.units = units
        order.fee = fee
        self._notify(order)

    def _reject(self, state: _Pair, order: Order, note: str) -> None:
        order.status = OrderStatus.REJECTED
        order.note = note
        self._notify(order)
        self._settle(state)
        state.listener.entry_rejected(order)

    def _notify(self, order: Order) -> None:
        if self._observer is not None:
            self._observer.order_event(order)

    def _wait(self, state: _Pair, order: Order) -> None:
        state.pending = order
        if state not in state.symbol.pairs:
            state.symbol.pairs.append(state)

    def _settle(self, state: _Pair) -> None:
        """Stop visiting a pair on its symbol's bars once nothing of it can fill there: no order
        waits and no stop-loss or take-profit is set (a plain position only needs the mark)."""
        pos = state.position
        if (
            state.pending is None
            and (pos is None or (pos.stop_loss is None and pos.take_profit is None))
            and state in state.symbol.pairs
        ):
            state.symbol.pairs.remove(state)


def _side_name(direction: int) -> str:
    return "LONG" if direction > 0 else "SHORT"


def _closing_side(position: Position) -> str:
    return "sell" if position.direction > 0 else "buy"
