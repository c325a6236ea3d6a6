"""The (strategy, symbol) state machine on scripted price paths, trading through a real broker."""

from __future__ import annotations

import operator
from typing import Any

from tradewire.engine.broker import EntrySpec, SimulatedBroker
from tradewire.engine.state_machine import CompiledStrategy, Rule, State, StrategyStateMachine
from tradewire.engine.ticks import Tick

GO = {"pump": 9.0, "surge": 3.0, "rsi": 50.0, "spread": 0.1}
QUIET = {"pump": 1.0, "surge": 1.0, "rsi": 50.0, "spread": 0.1}


def _strategy(**overrides: Any) -> CompiledStrategy:
    spec = overrides.pop("entry_spec", None) or EntrySpec(
        direction=-1 if overrides.get("direction") == "SHORT" else 1,
        size_type="percentage",
        size_value=10,
        leverage=2,
        stop_loss_pct=2.0,
        take_profit_pct=5.0,
    )
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
        "cooldown_seconds": 300.0,
        "actions": ("close_position", "notify"),
        "entry_spec": spec,
        "position": {"position_size": {"type": "percentage", "value": 10}, "leverage": 2},
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

    def signal(self, kind: str, nth: int = 0) -> dict[str, Any]:
        return [p for t, p in self.events if t == "signal_generated" and p["signal_type"] == kind][nth]

    def states(self) -> list[str]:
        return [p["to_state"] for t, p in self.events if t == "strategy.state_changed"]

    def topics(self) -> list[str]:
        return [t for t, _ in self.events]


def _live(strategy: CompiledStrategy | None = None) -> tuple[StrategyStateMachine, Recorder, SimulatedBroker]:
    """A machine in the live signal mode: its broker fills at the deciding tick."""
    rec = Recorder()
    broker = SimulatedBroker(10_000.0, trade_on_close=True)
    machine = StrategyStateMachine(strategy or _strategy(), "BTC", rec, broker)
    machine.activate(0.0)
    return machine, rec, broker


def _run(
    machine: StrategyStateMachine, broker: SimulatedBroker, path: list[tuple[float, float, Any]]
) -> None:
    """Feed ticks as the live manager does: the broker sees the price first, then the machine."""
    for ts, price, values in path:
        if machine.exposed:
            broker.on_bar("BTC", ts, price, price, price, price, 0)
        machine.on_tick(Tick("BTC", price, 1.0, ts), values)


def test_signal_entry_on_the_same_tick_and_take_profit() -> None:
    """S1 on a pump; entry conditions already hold, so Z1 on the same tick; ZE1 at the target."""
    machine, rec, broker = _live()
    _run(machine, broker, [(1, 100.0, QUIET), (2, 106.0, GO), (3, 110.0, QUIET), (4, 112.0, QUIET)])
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
    z1 = rec.signal("Z1")
    assert (z1["entry_price"], z1["take_profit_price"]) == (106.0, 106.0 * 1.05)
    assert z1["position_size"] == {"type": "percentage", "value": 10}
    ze1 = rec.signal("ZE1")
    assert ze1["reason"] == "take_profit"
    assert ze1["exit_price"] == 112.0  # a tick is a bar: a jump beyond the target fills at the tick
    assert ze1["pnl_pct"] == (112.0 / 106.0 - 1) * 100
    assert [t.exit_reason for t in broker.trades] == ["take_profit"]


def test_stop_loss_for_a_short_and_close_conditions() -> None:
    machine, rec, broker = _live(_strategy(direction="SHORT"))
    _run(machine, broker, [(1, 100.0, GO), (2, 102.5, QUIET)])
    assert rec.signals() == ["S1", "Z1", "ZE1"]
    assert rec.signal("ZE1")["reason"] == "stop_loss"  # price rose 2.5 % against the short
    _run(machine, broker, [(4, 100.0, GO), (6, 99.0, {**QUIET, "rsi": 85.0})])
    assert rec.signals()[-1] == "ZE1"
    assert rec.signal("ZE1", 1)["reason"] == "ze1_close conditions met"
    assert [t.exit_reason for t in broker.trades] == ["stop_loss", "ze1_close conditions met"]


def test_signal_cancelled_after_timeout_in_data_time() -> None:
    machine, rec, broker = _live()
    _run(
        machine, broker, [(10, 100.0, {"pump": 6.0}), (30, 100.0, {"pump": 1.0}), (70, 100.0, {"pump": 1.0})]
    )
    assert rec.signals() == ["S1", "O1"]
    assert rec.signal("O1")["reason"] == "timeout"
    assert machine.state is State.MONITORING


def test_timeout_wins_over_a_late_entry() -> None:
    """A signal older than the cancel timeout is cancelled even if entry conditions now hold."""
    machine, rec, broker = _live()
    _run(machine, broker, [(0, 100.0, {"pump": 6.0}), (86_400, 100.0, {"pump": 6.0, "surge": 5.0})])
    assert rec.signals() == ["S1", "O1"]


def test_daily_bars_enter_on_the_bar_that_signalled() -> None:
    """With bars a day apart and a one-hour timeout, a strategy still enters: Z1 is evaluated on
    the S1 bar itself (the old machine waited a bar, and every daily S1 timed out)."""
    machine, rec, broker = _live(_strategy(cancel_timeout=3600.0))
    day = 86_400.0
    _run(machine, broker, [(0, 100.0, QUIET), (day, 100.0, GO), (2 * day, 101.0, QUIET)])
    assert rec.signals() == ["S1", "Z1"]
    assert machine.state is State.POSITION_ACTIVE


def test_emergency_closes_the_position_notifies_and_cools_down() -> None:
    machine, rec, broker = _live()
    _run(machine, broker, [(1, 100.0, GO), (2, 99.0, {**GO, "spread": 4.0})])
    assert rec.signals() == ["S1", "Z1", "E1", "ZE1"]
    assert rec.signal("ZE1")["reason"] == "emergency_exit"
    assert "health.strategy_emergency" in rec.topics()
    assert machine.cooldown_until == 302.0
    assert [t.exit_reason for t in broker.trades] == ["emergency_exit"]
    _run(machine, broker, [(100, 100.0, GO)])
    assert rec.signals()[-1] == "ZE1"  # still cooling down: no S1
    _run(machine, broker, [(303, 100.0, GO)])
    assert rec.signals()[-2:] == ["S1", "Z1"]


def test_emergency_without_close_position_keeps_the_position_and_fires_once() -> None:
    """Actions run as listed: without close_position the position stays; E1 is edge-triggered."""
    machine, rec, broker = _live(_strategy(actions=("notify",)))
    crash = {**GO, "spread": 4.0}
    _run(machine, broker, [(1, 100.0, GO), (2, 99.5, crash), (3, 99.4, crash), (4, 99.6, crash)])
    assert rec.signals() == ["S1", "Z1", "E1"]
    assert machine.state is State.POSITION_ACTIVE
    assert broker.open_positions()
    _run(machine, broker, [(5, 99.6, GO), (6, 99.5, crash)])  # conditions went away and came back
    assert rec.signals() == ["S1", "Z1", "E1", "E1"]


def test_pause_strategy_stops_the_pair_until_activated_again() -> None:
    machine, rec, broker = _live(_strategy(actions=("pause_strategy",)))
    _run(machine, broker, [(1, 100.0, GO), (2, 99.5, {**GO, "spread": 4.0})])
    assert machine.state is State.INACTIVE
    assert broker.open_positions()  # no close_position: the position (and its stop) live on
    _run(machine, broker, [(3, 97.9, QUIET)])  # the stop-loss still works while paused
    assert rec.signals()[-1] == "ZE1"
    assert rec.signal("ZE1")["reason"] == "stop_loss"
    assert machine.state is State.INACTIVE
    machine.activate(4.0)
    assert machine.state is State.MONITORING


def test_emergency_while_monitoring_blocks_signals_without_an_e1() -> None:
    """With nothing to protect, holding emergency conditions only block S1 (no E1, no cooldown)."""
    machine, rec, broker = _live()
    _run(machine, broker, [(1, 100.0, {**GO, "spread": 5.0}), (2, 100.0, GO)])
    assert rec.signals() == ["S1", "Z1"]
    assert machine.cooldown_until == 0.0


def test_missing_indicator_values_never_fire() -> None:
    rec = Recorder()
    broker = SimulatedBroker(10_000.0, trade_on_close=True)
    machine = StrategyStateMachine(_strategy(), "BTC", rec, broker)
    _run(machine, broker, [(1, 100.0, {"pump": 9.0})])
    assert rec.events == []  # inactive: nothing evaluated
    machine.activate(2.0)
    _run(machine, broker, [(3, 100.0, {"pump": None}), (4, 100.0, {})])
    assert rec.signals() == []


def test_deactivation_ends_a_pending_signal_with_o1_and_closes_a_position() -> None:
    machine, rec, broker = _live(_strategy(entry=(Rule("z1", "surge", "surge", operator.ge, 99.0),)))
    _run(machine, broker, [(1, 100.0, GO)])
    machine.deactivate(2.0)
    assert rec.signals() == ["S1", "O1"]
    assert rec.signal("O1")["reason"] == "deactivated"
    assert machine.state is State.INACTIVE
    machine2, rec2, broker2 = _live()
    _run(machine2, broker2, [(1, 100.0, GO), (2, 101.0, QUIET)])
    machine2.deactivate(3.0)
    assert rec2.signals() == ["S1", "Z1", "ZE1"]
    assert (rec2.signal("ZE1")["reason"], rec2.signal("ZE1")["price"]) == ("deactivated", 101.0)
    assert broker2.trades[0].exit_price == 101.0


def test_crosses_compare_with_the_previous_tick_and_an_indicator_threshold() -> None:
    """fast crosses_above slow: below on the previous tick, above now — whatever the state was."""
    cross_up = Rule("up", "fast", "fast", operator.gt, 0.0, threshold_key="slow", cross=True)
    cross_down = Rule("down", "fast", "fast", operator.lt, 0.0, threshold_key="slow", cross=True)
    strategy = _strategy(
        signal=(cross_up,),
        entry=(Rule("z1", "fast", "fast", operator.gt, 0.0, threshold_key="slow"),),
        close=(cross_down,),
        emergency=(),
        entry_spec=EntrySpec(1, "percentage", 50),
        cross_keys=("fast", "slow"),
    )
    machine, rec, broker = _live(strategy)
    path = [
        (1, 10.0, {"fast": 1.0, "slow": 2.0}),
        (2, 10.0, {"fast": 1.5, "slow": 2.0}),  # still below: nothing
        (3, 11.0, {"fast": 2.5, "slow": 2.0}),  # crossed above: S1 and Z1
        (4, 12.0, {"fast": 3.0, "slow": 2.0}),  # above, no cross
        (5, 11.5, {"fast": 1.9, "slow": 2.0}),  # crossed below: ZE1
        (6, 11.0, {"fast": 1.8, "slow": 2.0}),
    ]
    _run(machine, broker, path)
    assert rec.signals() == ["S1", "Z1", "ZE1"]
    assert [(s["signal_type"], s["timestamp"]) for _, s in rec.events if "signal_type" in s] == [
        ("S1", 3),
        ("Z1", 3),
        ("ZE1", 5),
    ]
    assert rec.signal("S1")["conditions"][0]["threshold"] == 2.0


def test_bar_mode_fills_at_the_next_open_and_reports_one_ze1() -> None:
    """In a session (not trade_on_close) Z1 and ZE1 are decisions; fills come with the next bar."""
    rec = Recorder()
    broker = SimulatedBroker(10_000.0)
    machine = StrategyStateMachine(_strategy(), "BTC", rec, broker, {"session_id": "s_1"})
    machine.activate(0.0)
    bars = [
        (1, (100, 101, 99, 100), GO),  # S1, Z1 at the close
        (2, (100.5, 102, 100, 101), QUIET),  # entry fills at 100.5
        (3, (101, 103, 100, 102), {**QUIET, "rsi": 85.0}),  # ZE1 decided
        (4, (101.5, 102, 101, 101.8), QUIET),  # exit fills at 101.5
    ]
    for ts, (o, h, low, c), values in bars:
        broker.on_bar("BTC", ts, o, h, low, c, ts)
        machine.on_tick(Tick("BTC", c, 1.0, ts), values)
    assert rec.signals() == ["S1", "Z1", "ZE1"]
    trade = broker.trades[0]
    assert (trade.entry_price, trade.exit_price, trade.entry_index, trade.exit_index) == (100.5, 101.5, 2, 4)
    assert machine.state is State.MONITORING
    assert all(p["session_id"] == "s_1" for _, p in rec.events)
