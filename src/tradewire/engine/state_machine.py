"""The state machine of one (strategy, symbol) pair (DESIGN §6.4).

::

    inactive ─activate→ monitoring ─S1→ signal_detected ─Z1→ entry_evaluation → position_active
                  ↑            ↑             │O1 (timeout/cancel conditions)          │ZE1 / stop / take
                  │            └─ signal_cancelled ←┘        exited ← close_order_evaluation ←┘
                  └──────────── emergency_exit (E1, then cooldown) ←── any active state

Each tick is evaluated against the section that matters in the current state only, so a
monitoring machine costs one pass over the ``s1_signal`` conditions. Transitions emit a signal
(``S1`` detected, ``Z1`` entry, ``ZE1`` close, ``O1`` cancel, ``E1`` emergency) with the
indicator values that triggered it, and one ``state_machines`` event per state entered.
Conditions read indicator values by key; a value that is not yet available makes the condition
false.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tradewire.engine.ticks import Tick

Emit = Callable[[str, dict[str, Any]], None]  # (bus topic, payload)


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


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled condition: ``test(values[key], value)``."""

    id: str
    indicator: str  # the document's indicatorId, for reporting
    key: Hashable  # indicator bank key
    test: Callable[[float, float], bool]
    value: float


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
    cancel_timeout: float | None  # seconds after S1 without entry
    stop_loss_pct: float | None
    take_profit_pct: float | None
    cooldown_seconds: float
    position: dict[str, Any]  # positionSize and leverage, reported with Z1


def _holds(rules: tuple[Rule, ...], values: Mapping[Any, float | None]) -> bool:
    """All rules true (an empty section never fires)."""
    if not rules:
        return False
    for rule in rules:
        value = values.get(rule.key)
        if value is None or not rule.test(value, rule.value):
            return False
    return True


class StrategyStateMachine:
    """State of one strategy on one symbol."""

    __slots__ = (
        "_emit",
        "cooldown_until",
        "entry_price",
        "last_tick",
        "signal_at",
        "signals",
        "state",
        "strategy",
        "symbol",
        "transitions",
    )

    def __init__(self, strategy: CompiledStrategy, symbol: str, emit: Emit) -> None:
        self.strategy = strategy
        self.symbol = symbol
        self._emit = emit
        self.state = State.INACTIVE
        self.signal_at = 0.0
        self.entry_price = 0.0
        self.cooldown_until = 0.0
        self.signals = 0
        self.transitions = 0
        self.last_tick: Tick | None = None

    # ------------------------------------------------------------------ lifecycle
    def activate(self, ts: float) -> None:
        if self.state is State.INACTIVE:
            self._enter(State.MONITORING, ts, "activated")

    def deactivate(self, ts: float, reason: str = "deactivated") -> None:
        """Stop; an open position is reported closed (ZE1 with ``reason``) at the last price, so
        consumers tracking positions from signals never keep a phantom one."""
        if self.state is State.POSITION_ACTIVE and self.last_tick is not None:
            tick = self.last_tick
            self._enter(State.CLOSE_ORDER_EVALUATION, ts, reason)
            self._enter(State.EXITED, ts, "closed")
            self._signal("ZE1", tick, (), {}, {"reason": reason, "pnl_pct": self._pnl_pct(tick.price)})
        if self.state is not State.INACTIVE:
            self._enter(State.INACTIVE, ts, reason)

    # ------------------------------------------------------------------ ticks
    def on_tick(self, tick: Tick, values: Mapping[Any, float | None]) -> None:
        self.last_tick = tick
        state = self.state
        if state is State.MONITORING:
            if tick.ts < self.cooldown_until:
                return
            if _holds(self.strategy.emergency, values):  # e.g. a crash: arm the cooldown, no S1
                self._emergency(tick, values)
            elif _holds(self.strategy.signal, values):
                self._signal_detected(tick, values)
        elif state is State.SIGNAL_DETECTED:
            self._evaluate_signal(tick, values)
        elif state is State.POSITION_ACTIVE:
            self._evaluate_position(tick, values)

    def _signal_detected(self, tick: Tick, values: Mapping[Any, float | None]) -> None:
        self.signal_at = tick.ts
        self._enter(State.SIGNAL_DETECTED, tick.ts, "s1_signal conditions met")
        self._signal("S1", tick, self.strategy.signal, values)

    def _evaluate_signal(self, tick: Tick, values: Mapping[Any, float | None]) -> None:
        strategy = self.strategy
        timed_out = (
            strategy.cancel_timeout is not None and tick.ts - self.signal_at >= strategy.cancel_timeout
        )
        if _holds(strategy.emergency, values):
            self._emergency(tick, values)
        elif timed_out or _holds(strategy.cancel, values):  # a stale signal never enters
            reason = "timeout" if timed_out else "o1_cancel conditions met"
            self._enter(State.SIGNAL_CANCELLED, tick.ts, reason)
            self._signal("O1", tick, strategy.cancel, values, {"reason": reason})
            self._enter(State.MONITORING, tick.ts, "signal cancelled")
        elif _holds(strategy.entry, values):
            self.entry_price = tick.price
            self._enter(State.ENTRY_EVALUATION, tick.ts, "z1_entry conditions met")
            self._enter(State.POSITION_ACTIVE, tick.ts, "entered")
            self._signal("Z1", tick, strategy.entry, values, self._entry_details(tick.price))

    def _evaluate_position(self, tick: Tick, values: Mapping[Any, float | None]) -> None:
        if _holds(self.strategy.emergency, values):
            self._emergency(tick, values)
            return
        reason = self._exit_reason(tick, values)
        if reason is None:
            return
        self._enter(State.CLOSE_ORDER_EVALUATION, tick.ts, reason)
        self._enter(State.EXITED, tick.ts, "closed")
        self._signal(
            "ZE1", tick, self.strategy.close, values, {"reason": reason, "pnl_pct": self._pnl_pct(tick.price)}
        )
        self._enter(State.MONITORING, tick.ts, "position closed")

    def _exit_reason(self, tick: Tick, values: Mapping[Any, float | None]) -> str | None:
        pnl = self._pnl_pct(tick.price)
        strategy = self.strategy
        if strategy.stop_loss_pct is not None and pnl <= -strategy.stop_loss_pct:
            return "stop_loss"
        if strategy.take_profit_pct is not None and pnl >= strategy.take_profit_pct:
            return "take_profit"
        if _holds(strategy.close, values):
            return "ze1_close conditions met"
        return None

    def _emergency(self, tick: Tick, values: Mapping[Any, float | None]) -> None:
        extra: dict[str, Any] = {"cooldown_seconds": self.strategy.cooldown_seconds}
        if self.state is State.POSITION_ACTIVE:
            extra["pnl_pct"] = self._pnl_pct(tick.price)
        self._enter(State.EMERGENCY_EXIT, tick.ts, "emergency_exit conditions met")
        self._signal("E1", tick, self.strategy.emergency, values, extra)
        self.cooldown_until = tick.ts + self.strategy.cooldown_seconds
        self._enter(State.MONITORING, tick.ts, "cooldown")

    # ------------------------------------------------------------------ helpers
    def _pnl_pct(self, price: float) -> float:
        if self.entry_price <= 0:
            return 0.0
        change = (price / self.entry_price - 1.0) * 100.0
        return change if self.strategy.direction == "LONG" else -change

    def _entry_details(self, price: float) -> dict[str, Any]:
        strategy, sign = self.strategy, 1.0 if self.strategy.direction == "LONG" else -1.0
        details: dict[str, Any] = {"entry_price": price, **strategy.position}
        if strategy.stop_loss_pct is not None:
            details["stop_loss_price"] = price * (1 - sign * strategy.stop_loss_pct / 100)
        if strategy.take_profit_pct is not None:
            details["take_profit_price"] = price * (1 + sign * strategy.take_profit_pct / 100)
        return details

    def _enter(self, state: State, ts: float, reason: str) -> None:
        previous, self.state = self.state, state
        self.transitions += 1
        self._emit(
            "strategy.state_changed",
            {
                "strategy_name": self.strategy.name,
                "strategy_version": self.strategy.version,
                "symbol": self.symbol,
                "from_state": previous.value,
                "to_state": state.value,
                "state": state.value,
                "reason": reason,
                "timestamp": ts,
            },
        )

    def _signal(
        self,
        signal_type: str,
        tick: Tick,
        rules: tuple[Rule, ...],
        values: Mapping[Any, float | None],
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.signals += 1
        payload: dict[str, Any] = {
            "signal_type": signal_type,
            "strategy_name": self.strategy.name,
            "strategy_version": self.strategy.version,
            "symbol": self.symbol,
            "direction": self.strategy.direction,
            "price": tick.price,
            "indicators": {rule.indicator: values.get(rule.key) for rule in rules},
            "conditions": [
                {
                    "id": rule.id,
                    "indicator": rule.indicator,
                    "params": dict(rule.key[1:]) if isinstance(rule.key, tuple) else {},
                    "value": values.get(rule.key),
                    "threshold": rule.value,
                }
                for rule in rules
            ],
            "state": self.state.value,
            "timestamp": tick.ts,
        }
        if extra:
            payload.update(extra)
        self._emit("signal_generated", payload)

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
