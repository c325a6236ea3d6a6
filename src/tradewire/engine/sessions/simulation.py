"""One session's trading world: its own indicators, state machines and simulated broker.

The same code as the live strategy manager (:func:`compile_strategy`, the state machine, the
indicator bank), fed with a session's bars instead of the live feed, trading through one
:class:`SimulatedBroker` account. A backtest feeds stored bars as fast as it likes; a paper
session feeds live ticks (a tick is a bar with open = high = low = close). Time is the data's time
everywhere: timeouts, cooldowns and every timestamp recorded come from the bars, never the wall
clock, so the same bars and settings always give byte-identical results.

Per bar of a symbol: the broker fills waiting orders and brackets (open, high, low), the symbol's
indicators take the close, each state machine decides; the equity curve gets one point per
distinct bar time, taken when time moves on (after every symbol of that time was processed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tradewire.bus import topics
from tradewire.engine.broker import (
    Costs,
    EntrySpec,
    Order,
    OrderObserver,
    PairKey,
    Position,
    PositionListener,
    SimulatedBroker,
    Trade,
)
from tradewire.engine.compiler import compile_strategy
from tradewire.engine.indicators import IndicatorBank
from tradewire.engine.performance import compute_metrics, trade_metrics
from tradewire.engine.sessions.config import SessionConfig
from tradewire.engine.state_machine import StrategyStateMachine
from tradewire.engine.strategy_document import StrategyDocument
from tradewire.engine.ticks import Tick

Publish = Callable[[str, dict[str, Any]], None]


class SessionBroker(Protocol):
    """What a simulation needs of its broker: the simulated one (backtest, paper) or the live
    one (:class:`~tradewire.engine.sessions.live.LiveBroker`)."""

    orders: list[Order]
    trades: list[Trade]
    bankrupt: bool

    def attach(self, pair: PairKey, listener: PositionListener, spec: EntrySpec) -> None: ...

    def submit_entry(self, pair: PairKey, ts: float, price: float, reason: str = ...) -> Order | None: ...

    def submit_exit(self, pair: PairKey, ts: float, price: float, reason: str) -> Order | None: ...

    def cancel_pending(self, pair: PairKey, reason: str) -> bool: ...

    def on_bar(
        self, symbol: str, ts: float, o: float, h: float, low: float, c: float, index: int
    ) -> None: ...

    def equity(self) -> float: ...

    def open_positions(self) -> list[Position]: ...

    def liquidate(self, ts: float) -> None: ...

    def close_all(self, ts: float, reason: str) -> None: ...


BrokerFactory = Callable[[OrderObserver | None], SessionBroker]
MAX_RECORDED_SIGNALS = 100_000  # a results document stays bounded whatever the strategy does


@dataclass(slots=True)
class _SymbolState:
    machines: list[StrategyStateMachine] = field(default_factory=list)
    on_ticks: tuple[Callable[[Tick, Any], None], ...] = ()  # the machines' bound on_tick, for the bar loop
    bars: int = 0
    first_close: float | None = None  # close at the first bar where every indicator was warm
    last_close: float | None = None
    warm: bool = False


class Simulation:
    """Bank, broker and machines of one session (see the module docstring)."""

    def __init__(
        self,
        session_id: str,
        owner: str,
        strategies: dict[str, tuple[StrategyDocument, int, list[str]]],
        config: SessionConfig,
        publish: Publish | None,
        broker: BrokerFactory | None = None,
    ) -> None:
        self.session_id = session_id
        self.owner = owner
        self._publish = publish  # live event stream, or None (as-fast-as-possible backtests)
        self._context = {"session_id": session_id, "owner": owner}
        self.bank = IndicatorBank()
        observer = _Observer(self) if publish is not None else None
        self.broker: SessionBroker = (
            broker(observer)
            if broker is not None
            else SimulatedBroker(
                config.initial_capital,
                Costs(config.fee_bps, config.slippage_bps),
                whole_units=config.whole_units,
                observer=observer,
            )
        )
        self.symbols: dict[str, _SymbolState] = {}
        self.machines: list[StrategyStateMachine] = []
        for document, version, symbols in strategies.values():
            for symbol in symbols:
                compiled, _ = compile_strategy(document, version, symbol, self.bank)
                machine = StrategyStateMachine(
                    compiled, symbol, self._emit, self.broker, self._context, detailed=publish is not None
                )
                self.machines.append(machine)
                self.symbols.setdefault(symbol, _SymbolState()).machines.append(machine)
        self.signals: list[dict[str, Any]] = []
        self.signals_dropped = 0
        self.times: list[float] = []  # one per equity point
        self.equity: list[float] = []
        self._ts: float | None = None  # time of the bars being processed
        self.bars = 0
        self.started = False
        self._broker_bar = self.broker.on_bar
        self._update = self.bank.update
        for state in self.symbols.values():
            state.on_ticks = tuple(machine.on_tick for machine in state.machines)

    # ------------------------------------------------------------------ feeding
    def start(self, ts: float) -> None:
        """Activate every machine at data time ``ts``."""
        self.started = True
        for machine in self.machines:
            machine.activate(ts)

    def on_bar(self, symbol: str, ts: float, o: float, h: float, low: float, c: float, volume: float) -> bool:
        """Process one bar; False once the account is bankrupt (nothing more will trade).

        The per-bar cost of a backtest (bench/backtest_throughput.py): bound methods are kept
        on the instance, and the warm-up check stops once every indicator has a value."""
        state = self.symbols.get(symbol)
        if state is None:
            return True
        if ts != self._ts:
            if self._ts is not None and not self._record():
                return False
            self._ts = ts
        self.bars += 1
        state.bars += 1
        self._broker_bar(symbol, ts, o, h, low, c, len(self.equity))
        tick = Tick(symbol, c, volume, ts)
        values = self._update(tick)
        if not state.warm and None not in values.values():
            state.warm = True
            state.first_close = c
        state.last_close = c
        for on_tick in state.on_ticks:
            on_tick(tick, values)
        return True

    def _record(self) -> bool:
        """Close the equity point of the current time; liquidate a bankrupt account."""
        assert self._ts is not None
        equity = self.broker.equity()
        if equity <= 0 and not self.broker.bankrupt:
            self.broker.liquidate(self._ts)
            equity = self.broker.equity()
        self.times.append(self._ts)
        self.equity.append(equity)
        return not self.broker.bankrupt

    def finish(self, reason: str, close_positions: bool) -> dict[str, Any]:
        """End the session at the last bar's time and build its results document."""
        if self._ts is not None:
            if close_positions and not self.broker.bankrupt:
                self.broker.close_all(self._ts, reason)  # at the last close, exit fees included
            if not self.broker.bankrupt:
                self._record()
            for machine in self.machines:
                machine.deactivate(self._ts, reason)
        return self.results(reason)

    def release(self) -> None:
        """Drop what the session accumulated, once its results are stored.

        Machines, broker and this simulation reference each other (the broker's listeners, the
        machines' executor and event callback), so together they outlive the session until the
        garbage collector's next full pass — minutes away, and long after a big backtest's equity
        curve (two lists of one float per bar: ~64 MB for a million bars), orders and trades
        should have gone. Only the small skeleton of objects is left to the collector."""
        self.times = []
        self.equity = []
        self.signals = []
        self.broker.orders = []
        self.broker.trades = []

    # ------------------------------------------------------------------ results
    def results(self, end_reason: str) -> dict[str, Any]:
        """The results document (deterministic: data, settings and rules only)."""
        trades = self.broker.trades
        single = next(iter(self.symbols.values())) if len(self.symbols) == 1 else None
        metrics = (
            compute_metrics(self.equity, self.times, trades, _buy_and_hold(single) if single else None)
            if self.equity
            else None
        )
        by_symbol = {
            symbol: {
                **trade_metrics([t for t in trades if t.pair[1] == symbol]),
                "bars": state.bars,
                "buy_and_hold_return_pct": _buy_and_hold(state),
            }
            for symbol, state in sorted(self.symbols.items())
        }
        names = sorted({machine.strategy.name for machine in self.machines})
        by_strategy = {name: trade_metrics([t for t in trades if t.pair[0] == name]) for name in names}
        return {
            "end_reason": end_reason,
            "out_of_money": self.broker.bankrupt,
            "bars": self.bars,
            "metrics": metrics,
            "by_strategy": by_strategy,
            "by_symbol": by_symbol,
            "trades": [trade.to_dict() for trade in trades],
            "open_positions": [p.to_dict() for p in self.broker.open_positions()],
            "orders": [order.to_dict() for order in self.broker.orders],
            "signals": self.signals,
            "signals_dropped": self.signals_dropped,
        }

    def snapshot(self) -> dict[str, Any]:
        """Progress fields of ``execution_status``."""
        return {
            "processed": self.bars,
            "equity": self.broker.equity(),
            "open_positions": len(self.broker.open_positions()),
            "trades": len(self.broker.trades),
            "data_time": self._ts,
        }

    # ------------------------------------------------------------------ events
    def _emit(self, topic: str, payload: dict[str, Any]) -> None:
        if topic == topics.SIGNAL_GENERATED:
            if len(self.signals) < MAX_RECORDED_SIGNALS:
                self.signals.append(_signal_record(payload))
            else:
                self.signals_dropped += 1
        if self._publish is not None:
            self._publish(topic, payload)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self._publish is not None:
            self._publish(topic, {**payload, **self._context})


class _Observer:
    """Forwards the broker's order and position events to the session's streams."""

    def __init__(self, simulation: Simulation) -> None:
        self._sim = simulation

    def order_event(self, order: Order) -> None:
        topic = {
            "pending": topics.ORDER_SUBMITTED,
            "filled": topics.ORDER_FILLED,
            "cancelled": topics.ORDER_CANCELLED,
            "rejected": topics.ORDER_REJECTED,
        }[order.status.value]
        self._sim.publish(topic, {**order.to_dict(), "timestamp": order.filled_at or order.submitted_at})

    def position_opened(self, position: Position) -> None:
        self._sim.publish(topics.POSITION_OPENED, {**position.to_dict(), "timestamp": position.entry_at})

    def position_closed(self, trade: Trade) -> None:
        self._sim.publish(topics.POSITION_CLOSED, {**trade.to_dict(), "timestamp": trade.exit_at})


def _signal_record(payload: dict[str, Any]) -> dict[str, Any]:
    record = {
        "signal_type": payload["signal_type"],
        "strategy_name": payload["strategy_name"],
        "symbol": payload["symbol"],
        "price": payload["price"],
        "timestamp": payload["timestamp"],
    }
    if "reason" in payload:
        record["reason"] = payload["reason"]
    return record


def _buy_and_hold(state: _SymbolState) -> float | None:
    """backtesting.py's: from the close of the first bar the strategies could act on."""
    if state.first_close is None or state.last_close is None:
        return None
    return (state.last_close - state.first_close) / state.first_close * 100
