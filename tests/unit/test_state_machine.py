"""The (strategy, symbol) state machine on scripted price paths."""

from __future__ import annotations

import operator
from typing import Any

from tradewire.engine.state_machine import CompiledStrategy, Rule, State, StrategyStateMachine
from tradewire.engine.ticks import Tick


def _strategy(**overrides: Any) -> CompiledStrategy:
    values: dict[str, Any] = {
        "name": "pump",
        "version": 3,
        "direction": "LONG",
        "signal": (Rule("s1", "pump_magnitude_pct", "pump", operator.gt, 5.0),),
        "entry": (Rule("z1", "volume_surge_ratio", "surge", operator.ge, 2.0),),
        "close": (Rule("ze1", "rsi", "rsi", operator.gt, 80.0),),
        "cancel": (),
        "emergency": (Rule("e1", "spread_pct", "spread", operator.gt, 3.0),),
        "cancel_timeout": 60.0,
        "stop_loss_pct": 2.0,
        "take_profit_pct": 5.0,
        "cooldown_seconds": 300.0,
        "position": {"positionSize": {"type": "percentage", "value": 10}, "leverage": 2},
    }
    values.update(overrides)
    return CompiledStrategy(**values)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        self.events.append((topic, payload))

    def signals(self) -> list[str]:
        return [p["signal_type"] for t, p in self.events if t == "signal_generated"]

    def states(self) -> list[str]:
        return [p["to_state"] for t, p in self.events if t == "strategy.state_changed"]


def _run(machine: StrategyStateMachine, path: list[tuple[float, float, dict[str, float | None]]]) -> None:
    for ts, price, values in path:
        machine.on_tick(Tick("BTC", price, 1.0, ts), values)


def test_signal_entry_and_take_profit() -> None:
    """S1 on a pump, Z1 on a volume surge, ZE1 when the take-profit is reached."""
    rec = Recorder()
    machine = StrategyStateMachine(_strategy(), "BTC", rec)
    machine.activate(0.0)
    quiet = {"pump": 1.0, "surge": 1.0, "rsi": 50.0, "spread": 0.1}
    _run(
        machine,
        [
            (1, 100.0, quiet),
            (2, 106.0, {**quiet, "pump": 6.0}),
            (3, 106.5, {**quiet, "pump": 6.5}),
            (4, 107.0, {**quiet, "surge": 2.5}),
            (5, 110.0, quiet),
            (6, 112.5, quiet),
        ],
    )
    assert rec.signals() == ["S1", "Z1", "ZE1"]
    assert rec.states() == [
        "monitoring",
        "signal_detected",
        "entry_evaluation",
        "position_active",
        "close_order_evaluation",
        "exited",
        "monitoring",
    ]
    z1 = next(p for t, p in rec.events if p.get("signal_type") == "Z1")
    assert z1["entry_price"] == 107.0
    assert z1["take_profit_price"] == 107.0 * 1.05
    assert z1["indicators"] == {"volume_surge_ratio": 2.5}
    ze1 = next(p for t, p in rec.events if p.get("signal_type") == "ZE1")
    assert ze1["reason"] == "take_profit"
    assert ze1["pnl_pct"] == (112.5 / 107.0 - 1) * 100


def test_stop_loss_for_a_short_and_close_conditions() -> None:
    rec = Recorder()
    machine = StrategyStateMachine(_strategy(direction="SHORT"), "BTC", rec)
    machine.activate(0.0)
    go = {"pump": 9.0, "surge": 3.0, "rsi": 50.0, "spread": 0.1}
    _run(machine, [(1, 100.0, go), (2, 100.0, go), (3, 102.5, go)])
    assert rec.signals() == ["S1", "Z1", "ZE1"]
    assert rec.events[-2][1]["reason"] == "stop_loss"  # price rose 2.5 % against the short
    _run(machine, [(4, 100.0, go), (5, 100.0, go), (6, 99.0, {**go, "rsi": 85.0})])
    assert rec.signals()[-1] == "ZE1"
    assert rec.events[-2][1]["reason"] == "ze1_close conditions met"


def test_signal_cancelled_after_timeout() -> None:
    rec = Recorder()
    machine = StrategyStateMachine(_strategy(), "BTC", rec)
    machine.activate(0.0)
    _run(machine, [(10, 100.0, {"pump": 6.0}), (30, 100.0, {"pump": 1.0}), (70, 100.0, {"pump": 1.0})])
    assert rec.signals() == ["S1", "O1"]
    assert machine.state is State.MONITORING


def test_emergency_exit_then_cooldown() -> None:
    rec = Recorder()
    machine = StrategyStateMachine(_strategy(), "BTC", rec)
    machine.activate(0.0)
    go = {"pump": 9.0, "surge": 3.0, "rsi": 50.0, "spread": 0.1}
    _run(machine, [(1, 100.0, go), (2, 100.0, go), (3, 99.0, {**go, "spread": 4.0})])
    assert rec.signals() == ["S1", "Z1", "E1"]
    assert machine.cooldown_until == 303.0
    _run(machine, [(100, 100.0, go)])
    assert rec.signals()[-1] == "E1"  # still cooling down
    _run(machine, [(304, 100.0, go)])
    assert rec.signals()[-1] == "S1"


def test_missing_indicator_values_never_fire_and_deactivate_stops() -> None:
    rec = Recorder()
    machine = StrategyStateMachine(_strategy(), "BTC", rec)
    _run(machine, [(1, 100.0, {"pump": 9.0})])
    assert rec.events == []  # inactive: nothing evaluated
    machine.activate(2.0)
    _run(machine, [(3, 100.0, {"pump": None}), (4, 100.0, {})])
    assert rec.signals() == []
    machine.deactivate(5.0)
    assert machine.state is State.INACTIVE
    assert machine.status()["state"] == "inactive"


def test_timeout_wins_over_a_late_entry() -> None:
    """A signal older than the cancel timeout is cancelled even if entry conditions now hold."""
    rec = Recorder()
    machine = StrategyStateMachine(_strategy(), "BTC", rec)
    machine.activate(0.0)
    _run(machine, [(0, 100.0, {"pump": 6.0}), (86_400, 100.0, {"pump": 6.0, "surge": 5.0})])
    assert rec.signals() == ["S1", "O1"]
    assert rec.events[-2][1]["reason"] == "timeout"


def test_emergency_while_monitoring_blocks_new_signals() -> None:
    """Emergency conditions hold before any signal: E1, then no S1 until the cooldown ends."""
    rec = Recorder()
    machine = StrategyStateMachine(_strategy(), "BTC", rec)
    machine.activate(0.0)
    _run(machine, [(1, 100.0, {"pump": 9.0, "spread": 5.0}), (2, 100.0, {"pump": 9.0, "spread": 0.1})])
    assert rec.signals() == ["E1"]
    _run(machine, [(302, 100.0, {"pump": 9.0, "spread": 0.1})])
    assert rec.signals() == ["E1", "S1"]
