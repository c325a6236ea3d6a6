"""The state machine of one (strategy, symbol) pair (DESIGN §6.4), trading through a broker.

::

    inactive ─activate→ monitoring ─S1→ signal_detected ─Z1→ entry_evaluation ─filled→ position_active
        ↑                   ↑  ↑            │O1 (timeout, o1 conditions,   │rejected (O1)      │
        │                   │  └─ signal_cancelled ←┘ deactivation)  ←─────┘                   │
        │                   └──── exited ← close_order_evaluation ←─ ZE1 (conditions, stop-loss,
        │                                                           take-profit, end of data) ←┘
        └─ pause_strategy ── emergency_exit (E1, then cooldown) ←── signal_detected,
                                                                    entry_evaluation, position_active

The machine decides, the broker executes: Z1 submits a market entry and ZE1 a market exit to an
:class:`Executor` (the session's :class:`~tradewire.engine.broker.SimulatedBroker`), which calls
back when the order fills or is rejected and when a stop-loss or take-profit closes the position.
In a backtest an order decided on a bar fills at the next bar's open; in the live signal mode the
broker fills at once at the deciding tick's price (``trade_on_close``).

Rules of evaluation (each tick, after the broker has processed it):

* A monitoring machine checks ``s1_signal``; when S1 fires, ``z1_entry`` is evaluated on the
  **same tick** (so a strategy on daily or monthly bars can enter on the bar that signalled).
* A pending signal is cancelled (O1) when ``o1_cancel`` holds or ``timeoutSeconds`` of *data
  time* have passed since S1, checked before the entry on later ticks: a stale signal never enters.
* **E1** fires only when there is something to protect — a pending signal, a pending entry or an
  open position — and only on the tick its conditions *become* true (edge-triggered: a crash that
  lasts many ticks is one E1). Its ``actions`` run in the order listed: ``close_position`` (exit
  the position, or cancel an entry that has not filled), ``cancel_orders`` (cancel an unfilled
  entry), ``pause_strategy`` (the pair goes inactive until activated again), ``notify`` (an
  operator alert on ``health_check``). A pending signal is always dropped and new signals wait
  ``cooldownMinutes``. While merely monitoring, holding emergency conditions block S1 without an
  E1 (there is nothing to act on, and a signal into a crash is what the section prevents).
* ``crosses_above`` / ``crosses_below`` compare with the previous tick's values, which the
  machine records every tick whatever its state.

Every transition emits a ``strategy.state_changed`` event; S1, Z1, ZE1, O1 and E1 emit signals
with the indicator values that triggered them. Each Z1 that fills is followed by exactly one ZE1.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from tradewire.bus import topics
from tradewire.engine.broker import EntrySpec, Order, PairKey, Position, Trade
from tradewire.engine.ticks import Tick

Emit = Callable[[str, dict[str, Any]], None]  # (bus topic, payload)
Values = Mapping[Any, float | None]


class State(StrEnum):
    INACTIVE = "inactive"
    MONITORING = "monitoring"
    SIGNAL_DETECTED = "signal_detected"
    ENTRY_EVALUATION = "entry_evaluation"
    POSITION_ACTIVE = "position_active"
    CLOSE_ORDER_EVALUATION = "close_order_evaluation"
    EXITED = "exited"
    SIGNAL_CANCELLED = "signal_cancelled"
    EMERGENCY_EXIT = "emergency_exit"


class Executor(Protocol):
    """Where the machine's orders go (the broker of its session)."""

    def attach(self, pair: PairKey, listener: Any, spec: EntrySpec) -> None: ...

    def submit_entry(self, pair: PairKey, ts: float, price: float, reason: str = ...) -> Order | None: ...

    def submit_exit(self, pair: PairKey, ts: float, price: float, reason: str) -> Order | None: ...

    def cancel_pending(self, pair: PairKey, reason: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled condition: ``values[key] <op> (value | values[threshold_key])``."""

    id: str
    indicator: str  # the document's indicatorId, for reporting
    key: Hashable  # indicator bank key
    test: Callable[[float, float], bool]  # the comparison that must hold now
    value: float  # constant threshold, when threshold_key is None
    threshold_key: Hashable | None = None  # another indicator as the threshold
    cross: bool = False  # crosses_above / crosses_below: the opposite held on the previous tick


@dataclass(frozen=True, slots=True)
class CompiledStrategy:
    """What a state machine needs from a validated strategy document."""

    name: str
    version: int
    direction: str  # LONG | SHORT
    signal: tuple[Rule, ...]
    entry: tuple[Rule, ...]
    close: tuple[Rule, ...]
    cancel: tuple[Rule, ...]
    emergency: tuple[Rule, ...]
    cancel_timeout: float | None  # data seconds after S1 without entry
    cooldown_seconds: float
    actions: tuple[str, ...]  # emergency actions, in document order
    entry_spec: EntrySpec
    position: dict[str, Any] = field(default_factory=dict)  # position_size and leverage, for Z1
    cross_keys: tuple[Hashable, ...] = ()  # indicator keys whose previous value a cross rule needs


def _threshold(rule: Rule, values: Values) -> float | None:
    return rule.value if rule.threshold_key is None else values.get(rule.threshold_key)


def _holds(rules: tuple[Rule, ...], values: Values, previous: Values) -> bool:
    """All rules true (an empty section never fires); a missing value makes a rule false."""
    if not rules:
        return False
    for rule in rules:
        value = values.get(rule.key)
        if value is None:
            return False
        threshold = rule.value if rule.threshold_key is None else values.get(rule.threshold_key)
        if threshold is None or not rule.test(value, threshold):
            return False
        if rule.cross:
            before = previous.get(rule.key)
            before_threshold = rule.value if rule.threshold_key is None else previous.get(rule.threshold_key)
            if before is None or before_threshold is None or not rule.test(before_threshold, before):
                return False
    return True


class StrategyStateMachine:
    """State of one strategy on one symbol (see the module docstring)."""

    __slots__ = (
        "_armed",
        "_closing",
        "_context",
        "_detailed",
        "_emit",
        "_executor",
        "_previous",
        "cooldown_until",
        "entry_price",
        "exposed",
        "holding",
        "last_tick",
        "pair",
        "signal_at",
        "signals",
        "state",
        "strategy",
        "symbol",
        "transitions",
    )

    def __init__(
        self,
        strategy: CompiledStrategy,
        symbol: str,
        emit: Emit,
        executor: Executor,
        context: dict[str, Any] | None = None,
        *,
        detailed: bool = True,
    ) -> None:
        self.strategy = strategy
        self.symbol = symbol
        self.pair: PairKey = (strategy.name, symbol)
        self._emit = emit
        self._executor = executor
        self._context = context or {}  # extra fields of every event (a session's id)
        # Full events (state changes; signals with their conditions). Off for a backtest nobody
        # watches live: it records only the signals' essentials, and building per-transition
        # payloads was ~15 % of its time.
        self._detailed = detailed
        self.state = State.INACTIVE
        self.signal_at = 0.0
        self.entry_price = 0.0  # the fill of the open position
        self.cooldown_until = 0.0
        self.signals = 0
        self.transitions = 0
        self.exposed = False  # an order waits or a position is open: the broker must see prices
        self.holding = False  # a position is open (it may outlive a pause)
        self._closing = False  # an exit was decided (ZE1 sent): the fill needs no second ZE1
        self.last_tick: Tick | None = None
        self._armed = True  # emergency conditions were false since the last E1
        self._previous: dict[Hashable, float | None] = {}  # cross keys' values at the last tick
        executor.attach(self.pair, self, strategy.entry_spec)

    # ------------------------------------------------------------------ lifecycle
    def activate(self, ts: float) -> None:
        """Start (or resume after a pause: a position still open is managed again)."""
        if self.state is State.INACTIVE:
            self._enter(State.POSITION_ACTIVE if self.holding else State.MONITORING, ts, "activated")

    def deactivate(self, ts: float, reason: str = "deactivated") -> None:
        """Stop: a pending signal or unfilled entry ends with O1, an open position is closed (ZE1
        now with an immediate broker, or when its exit fills)."""
        state = self.state
        tick = self.last_tick
        if state is State.SIGNAL_DETECTED or state is State.ENTRY_EVALUATION:
            self._executor.cancel_pending(self.pair, reason)
            self.exposed = False
            self._cancel_signal(ts, reason, tick)
        elif state is State.POSITION_ACTIVE and tick is not None:
            self._decide_exit(tick, (), {}, reason)
        if self.state is not State.INACTIVE:
            self._enter(State.INACTIVE, ts, reason)

    # ------------------------------------------------------------------ ticks
    def on_tick(self, tick: Tick, values: Values) -> None:
        self.last_tick = tick
        state = self.state
        strategy = self.strategy
        if state is State.MONITORING:
            if (
                tick.ts >= self.cooldown_until
                and not (strategy.emergency and self._emergency_holds(values))
                and _holds(strategy.signal, values, self._previous)
            ):
                self._signal_detected(tick, values)
                self._evaluate_signal(tick, values)
        elif state is State.SIGNAL_DETECTED:
            self._evaluate_signal(tick, values)
        elif state is State.POSITION_ACTIVE:
            self._evaluate_position(tick, values)
        elif state is State.ENTRY_EVALUATION:
            self._check_emergency(tick, values)
        if strategy.cross_keys:
            previous = self._previous
            for key in strategy.cross_keys:
                previous[key] = values.get(key)

    def _signal_detected(self, tick: Tick, values: Values) -> None:
        self.signal_at = tick.ts
        self._enter(State.SIGNAL_DETECTED, tick.ts, "s1_signal conditions met")
        self._signal("S1", tick, self.strategy.signal, values)

    def _evaluate_signal(self, tick: Tick, values: Values) -> None:
        strategy = self.strategy
        if self._check_emergency(tick, values):
            return
        timed_out = (
            strategy.cancel_timeout is not None and tick.ts - self.signal_at >= strategy.cancel_timeout
        )
        if timed_out or _holds(strategy.cancel, values, self._previous):
            reason = "timeout" if timed_out else "o1_cancel conditions met"
            self._cancel_signal(tick.ts, reason, tick, strategy.cancel, values)
            self._enter(State.MONITORING, tick.ts, "signal cancelled")
        elif _holds(strategy.entry, values, self._previous):
            self._enter(State.ENTRY_EVALUATION, tick.ts, "z1_entry conditions met")
            self._signal("Z1", tick, strategy.entry, values, self._entry_details(tick.price))
            self.exposed = True
            if self._executor.submit_entry(self.pair, tick.ts, tick.price) is None:
                self.exposed = False  # the broker refused outright (e.g. the account is bankrupt)
                self._cancel_signal(tick.ts, "entry refused", tick)
                self._enter(State.MONITORING, tick.ts, "entry refused")

    def _evaluate_position(self, tick: Tick, values: Values) -> None:
        if self._check_emergency(tick, values):
            return
        if _holds(self.strategy.close, values, self._previous):
            self._decide_exit(tick, self.strategy.close, values, "ze1_close conditions met")

    def _decide_exit(self, tick: Tick, rules: tuple[Rule, ...], values: Values, reason: str) -> None:
        """ZE1 now; the position is gone when the broker fills the exit (at once, or next bar)."""
        self._closing = True
        self._enter(State.CLOSE_ORDER_EVALUATION, tick.ts, reason)
        self._signal(
            "ZE1",
            tick,
            rules,
            values,
            {"reason": reason, "pnl_pct": self._pnl_pct(tick.price)},
        )
        self._executor.submit_exit(self.pair, tick.ts, tick.price, reason)

    # ------------------------------------------------------------------ emergency
    def _emergency_holds(self, values: Values) -> bool:
        holds = _holds(self.strategy.emergency, values, self._previous)
        if not holds:
            self._armed = True
        return holds

    def _check_emergency(self, tick: Tick, values: Values) -> bool:
        """Fire E1 if the emergency conditions just became true; True if the tick is handled."""
        if not self.strategy.emergency or not self._emergency_holds(values) or not self._armed:
            return False
        self._armed = False
        self._emergency(tick, values)
        return True

    def _emergency(self, tick: Tick, values: Values) -> None:
        strategy = self.strategy
        was = self.state
        extra: dict[str, Any] = {
            "cooldown_seconds": strategy.cooldown_seconds,
            "actions": list(strategy.actions),
            "interrupted_state": was.value,
        }
        if was is State.POSITION_ACTIVE:
            extra["pnl_pct"] = self._pnl_pct(tick.price)
        self._enter(State.EMERGENCY_EXIT, tick.ts, "emergency_exit conditions met")
        self._signal("E1", tick, strategy.emergency, values, extra)
        self.cooldown_until = tick.ts + strategy.cooldown_seconds
        closing = False
        for action in strategy.actions:
            if action == "close_position" and was is State.POSITION_ACTIVE:
                closing = True
            elif action in ("close_position", "cancel_orders") and was is State.ENTRY_EVALUATION:
                self._executor.cancel_pending(self.pair, "emergency_exit")
                self.exposed = False
                was = State.MONITORING
            elif action == "notify":
                self._emit(topics.ALERT_STRATEGY_EMERGENCY, self._event(tick.ts, {"price": tick.price}))
        self._after_emergency(tick, was, closing)

    def _after_emergency(self, tick: Tick, was: State, closing: bool) -> None:
        if closing:
            self._decide_exit(tick, (), {}, "emergency_exit")
        elif was is State.POSITION_ACTIVE or was is State.ENTRY_EVALUATION:
            self._enter(was, tick.ts, "emergency handled, position kept")
        else:
            self._enter(State.MONITORING, tick.ts, "cooldown")
        if "pause_strategy" in self.strategy.actions:
            self._enter(State.INACTIVE, tick.ts, "paused by emergency_exit")

    # ------------------------------------------------------------------ broker callbacks
    def entry_filled(self, position: Position) -> None:
        self.entry_price = position.entry_price
        self.holding = True
        if self.state is State.ENTRY_EVALUATION:
            self._enter(State.POSITION_ACTIVE, position.entry_at, "entry filled")

    def entry_rejected(self, order: Order) -> None:
        self.exposed = False
        if self.state is State.ENTRY_EVALUATION:
            self._cancel_signal(order.submitted_at, f"entry rejected: {order.note}", self.last_tick)
            self._enter(State.MONITORING, order.submitted_at, "entry rejected")

    def position_closed(self, trade: Trade) -> None:
        """The exit filled (decided earlier) or the broker closed it (stop, take, end of data)."""
        self.exposed = self.holding = False
        ts = trade.exit_at
        if self._closing:
            self._closing = False
            if self.state is State.CLOSE_ORDER_EVALUATION:
                self._enter(State.EXITED, ts, "closed")
                self._enter(State.MONITORING, ts, "position closed")
            return
        details = {"reason": trade.exit_reason, "pnl_pct": trade.return_pct, "exit_price": trade.exit_price}
        tick = Tick(self.symbol, trade.exit_price, 0.0, ts)
        if self.state is State.POSITION_ACTIVE:
            self._enter(State.CLOSE_ORDER_EVALUATION, ts, trade.exit_reason)
            self._enter(State.EXITED, ts, "closed")
            self._signal("ZE1", tick, (), {}, details)
            self._enter(State.MONITORING, ts, "position closed")
        else:  # paused (inactive) with the position left open
            self._signal("ZE1", tick, (), {}, details)

    # ------------------------------------------------------------------ helpers
    def _cancel_signal(
        self,
        ts: float,
        reason: str,
        tick: Tick | None,
        rules: tuple[Rule, ...] = (),
        values: Values | None = None,
    ) -> None:
        self._enter(State.SIGNAL_CANCELLED, ts, reason)
        if tick is not None:
            self._signal("O1", tick, rules, values or {}, {"reason": reason})

    def _pnl_pct(self, price: float) -> float:
        if self.entry_price <= 0:
            return 0.0
        change = (price / self.entry_price - 1.0) * 100.0
        return change if self.strategy.direction == "LONG" else -change

    def _entry_details(self, price: float) -> dict[str, Any]:
        """Z1's indicative levels, from the deciding price (the broker's come from the fill)."""
        spec = self.strategy.entry_spec
        details: dict[str, Any] = {"entry_price": price, **self.strategy.position}
        if spec.stop_loss_pct is not None:
            details["stop_loss_price"] = price * (1 - spec.direction * spec.stop_loss_pct / 100)
        if spec.take_profit_pct is not None:
            details["take_profit_price"] = price * (1 + spec.direction * spec.take_profit_pct / 100)
        return details

    def _event(self, ts: float, fields: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "strategy_name": self.strategy.name,
            "strategy_version": self.strategy.version,
            "symbol": self.symbol,
            **fields,
            "timestamp": ts,
        }
        if self._context:
            payload.update(self._context)
        return payload

    def _enter(self, state: State, ts: float, reason: str) -> None:
        previous, self.state = self.state, state
        self.transitions += 1
        if not self._detailed:
            return
        self._emit(
            topics.STRATEGY_STATE_CHANGED,
            self._event(
                ts,
                {
                    "from_state": previous.value,
                    "to_state": state.value,
                    "state": state.value,
                    "reason": reason,
                },
            ),
        )

    def _signal(
        self,
        signal_type: str,
        tick: Tick,
        rules: tuple[Rule, ...],
        values: Values,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.signals += 1
        fields: dict[str, Any] = {"signal_type": signal_type, "price": tick.price}
        if self._detailed:
            fields["direction"] = self.strategy.direction
            fields["indicators"] = {rule.indicator: values.get(rule.key) for rule in rules}
            fields["conditions"] = [_describe(rule, values) for rule in rules]
            fields["state"] = self.state.value
        if extra:
            fields.update(extra)
        self._emit(topics.SIGNAL_GENERATED, self._event(tick.ts, fields))

    def status(self) -> dict[str, Any]:
        return {
            "strategy_name": self.strategy.name,
            "strategy_version": self.strategy.version,
            "symbol": self.symbol,
            "state": self.state.value,
            "signals": self.signals,
            "transitions": self.transitions,
            "entry_price": self.entry_price if self.state is State.POSITION_ACTIVE else None,
            "cooldown_until": self.cooldown_until or None,
        }


def _describe(rule: Rule, values: Values) -> dict[str, Any]:
    return {
        "id": rule.id,
        "indicator": rule.indicator,
        "params": dict(rule.key[1:]) if isinstance(rule.key, tuple) else {},
        "value": values.get(rule.key),
        "threshold": _threshold(rule, values),
    }
