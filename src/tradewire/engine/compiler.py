"""Strategy document → :class:`~tradewire.engine.state_machine.CompiledStrategy` for one symbol.

Shared by the live strategy manager and the sessions: both run the same rules on the same
indicator code. Compiling takes indicator holds from the symbol's :class:`IndicatorBank` (one
instance per distinct ``(name, params)``, shared) and gives them back if anything fails.
"""

from __future__ import annotations

from tradewire.engine.broker import EntrySpec
from tradewire.engine.indicators import IndicatorBank, IndicatorKey
from tradewire.engine.state_machine import CompiledStrategy, Rule
from tradewire.engine.strategy_document import (
    CROSS_OPERATORS,
    Condition,
    Direction,
    IndicatorRef,
    ParamValue,
    StrategyDocument,
    compare,
)


def compile_strategy(
    doc: StrategyDocument, version: int, symbol: str, bank: IndicatorBank
) -> tuple[CompiledStrategy, list[IndicatorKey]]:
    """The compiled rules and the indicator keys held for them (release them when done)."""
    keys: list[IndicatorKey] = []
    cross: list[IndicatorKey] = []

    def hold(name: str, params: dict[str, ParamValue]) -> IndicatorKey:
        key = bank.ensure(symbol, name, params)
        keys.append(key)
        return key

    def rule(condition: Condition) -> Rule:
        key = hold(condition.indicator, condition.params)
        threshold_key = None
        value = 0.0
        if isinstance(condition.value, IndicatorRef):
            threshold_key = hold(condition.value.indicator, condition.value.params)
        else:
            value = condition.value
        crossing = condition.operator in CROSS_OPERATORS
        if crossing:
            cross.extend(k for k in (key, threshold_key) if k is not None and k not in cross)
        return Rule(
            condition.id,
            condition.indicator,
            key,
            compare(condition.operator),
            value,
            threshold_key,
            crossing,
        )

    def rules(conditions: tuple[Condition, ...]) -> tuple[Rule, ...]:
        return tuple(rule(condition) for condition in conditions)

    try:
        entry = doc.entry
        compiled = CompiledStrategy(
            name=doc.name,
            version=version,
            direction=doc.direction.value,
            signal=rules(doc.signal.conditions),
            entry=rules(entry.conditions),
            close=rules(doc.close.conditions),
            cancel=rules(doc.cancel.conditions),
            emergency=rules(doc.emergency_exit.conditions),
            cancel_timeout=doc.cancel.timeout_seconds,
            cooldown_seconds=doc.emergency_exit.cooldown_minutes * 60.0,
            actions=tuple(action.value for action in doc.emergency_exit.actions),
            entry_spec=EntrySpec(
                direction=1 if doc.direction is Direction.LONG else -1,
                size_type=entry.position_size.type.value,
                size_value=entry.position_size.value,
                leverage=entry.leverage,
                stop_loss_pct=entry.stop_loss_percent,
                take_profit_pct=entry.take_profit_percent,
            ),
            position={
                "position_size": {"type": entry.position_size.type.value, "value": entry.position_size.value},
                "leverage": entry.leverage,
            },
            cross_keys=tuple(cross),
        )
    except BaseException:
        for key in keys:
            bank.release(symbol, key)
        raise
    return compiled, keys
