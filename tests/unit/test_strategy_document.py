"""The strategy document: validation (every issue at once), the typed form, and the round trip."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from typing import Any

import pytest

from tradewire.engine.strategy_document import (
    OPERATORS,
    Condition,
    Direction,
    ExitAction,
    IndicatorRef,
    Issue,
    IssueCode,
    PositionSizeType,
    StrategyDocument,
    StrategyValidationError,
    ValidationResult,
    compare,
    parse_strategy,
    to_document,
    validate_strategy,
)

KNOWN = frozenset({"rsi_14", "price_velocity", "volume_surge_ratio", "pump_magnitude_pct", "spread_pct"})
DELETE = object()  # marker: remove the field instead of setting it


def _long() -> dict[str, Any]:
    return {
        "strategy_name": "Pump catcher v2: BTC.spot",
        "direction": "LONG",
        "description": "Buys fast pumps.\nExits on reversal.",
        "symbols": ["BTC_USDT", "ETH/USDT"],
        "enabled": True,
        "s1_signal": {
            "conditions": [
                {"id": "c1", "indicatorId": "pump_magnitude_pct", "operator": ">=", "value": 5},
                {"id": "c2", "indicatorId": "volume_surge_ratio", "operator": ">", "value": 3.5},
                {
                    "id": "c3",
                    "indicatorId": "rsi_14",
                    "operator": "<",
                    "value": 80,
                    "params": {"window": 14, "source": "close", "smooth": False},
                },
            ]
        },
        "z1_entry": {
            "conditions": [{"id": "e1", "indicatorId": "spread_pct", "operator": "<=", "value": 0.2}],
            "positionSize": {"type": "percentage", "value": 10},
            "stopLoss": {"offsetPercent": 2},
            "takeProfit": {"offsetPercent": 6},
            "leverage": 2,
        },
        "ze1_close": {
            "conditions": [{"id": "x1", "indicatorId": "price_velocity", "operator": "<", "value": 0}]
        },
        "o1_cancel": {
            "conditions": [{"id": "k1", "indicatorId": "volume_surge_ratio", "operator": "<", "value": 1}],
            "timeoutSeconds": 300,
        },
        "emergency_exit": {
            "conditions": [{"id": "m1", "indicatorId": "price_velocity", "operator": "<", "value": -5}],
            "cooldownMinutes": 60,
            "actions": ["close_position", "cancel_orders", "notify"],
        },
    }


def _short() -> dict[str, Any]:
    return {
        "strategy_name": "Dump fader",
        "direction": "SHORT",
        "s1_signal": {
            "conditions": [{"id": "s", "indicatorId": "pump_magnitude_pct", "operator": "<", "value": -4}]
        },
        "z1_entry": {
            "conditions": [{"id": "e", "indicatorId": "rsi_14", "operator": "!=", "value": 50}],
            "positionSize": {"type": "fixed", "value": 250.5},
        },
        "ze1_close": {"conditions": []},
        "o1_cancel": {"conditions": [], "timeoutSeconds": 60},
        "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
    }


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _edit(doc: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of ``doc`` with ``path`` (``a.b[2].c``) set to ``value``, or removed for DELETE."""
    doc = copy.deepcopy(doc)
    steps: list[str | int] = [key if key else int(index) for key, index in _STEP.findall(path)]
    node: Any = doc
    for step in steps[:-1]:
        node = node[step]
    if value is DELETE:
        del node[steps[-1]]
    else:
        node[steps[-1]] = value
    return doc


def _errors(result: ValidationResult) -> list[tuple[str, str]]:
    return [(issue.path, issue.code) for issue in result.errors]


def _warnings(result: ValidationResult) -> list[tuple[str, str]]:
    return [(issue.path, issue.code) for issue in result.warnings]


# --- valid documents -----------------------------------------------------------------------------


def test_valid_long_document_has_no_errors_or_warnings() -> None:
    """A complete LONG document validates with no errors and no warnings."""
    result = validate_strategy(_long(), KNOWN)
    assert result.valid
    assert result.errors == []
    assert result.warnings == []


def test_valid_long_document_parses_into_the_typed_form() -> None:
    """Parsing a LONG document gives typed sections with floats, enums and copied params."""
    strategy = parse_strategy(_long(), KNOWN)
    assert strategy.name == "Pump catcher v2: BTC.spot"
    assert strategy.direction is Direction.LONG
    assert strategy.symbols == ("BTC_USDT", "ETH/USDT")
    assert strategy.signal.conditions[2] == Condition(
        "c3", "rsi_14", {"window": 14, "source": "close", "smooth": False}, "<", 80.0
    )
    assert strategy.entry.position_size.type is PositionSizeType.PERCENTAGE
    entry = strategy.entry
    assert (entry.leverage, entry.stop_loss_percent, entry.take_profit_percent) == (2.0, 2.0, 6.0)
    assert strategy.cancel.timeout_seconds == 300.0
    assert strategy.emergency_exit.actions == (
        ExitAction.CLOSE_POSITION,
        ExitAction.CANCEL_ORDERS,
        ExitAction.NOTIFY,
    )


def test_valid_short_document_with_empty_optional_sections() -> None:
    """A minimal SHORT document (no optional fields, empty close/cancel/exit conditions) parses."""
    result = validate_strategy(_short(), KNOWN)
    assert result.valid and result.warnings == []
    strategy = parse_strategy(_short(), KNOWN)
    assert strategy.direction is Direction.SHORT
    assert strategy.entry.position_size.type is PositionSizeType.FIXED
    assert strategy.entry.leverage == 1.0
    assert strategy.entry.stop_loss_percent is None and strategy.entry.take_profit_percent is None
    assert (strategy.description, strategy.symbols, strategy.enabled) == ("", (), True)
    assert strategy.close.conditions == () and strategy.emergency_exit.actions == ()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("strategy_name", "n" * 128),
        ("strategy_name", "Zażółć gęślą jaźń 42"),
        ("z1_entry.leverage", 1),
        ("z1_entry.leverage", 10.0),
        ("z1_entry.stopLoss.offsetPercent", 100),
        ("z1_entry.takeProfit.offsetPercent", 1000),
        ("z1_entry.positionSize.value", 100),
        ("z1_entry.stopLoss", None),
        ("description", ""),
        ("symbols", []),
        ("enabled", False),
        ("o1_cancel.timeoutSeconds", 1),
        ("o1_cancel.timeoutSeconds", 86400),
        ("emergency_exit.cooldownMinutes", 0),
        ("emergency_exit.cooldownMinutes", 1440),
        ("s1_signal.conditions[0].value", -1e300),
        ("s1_signal.conditions[0].params", {}),
    ],
)
def test_boundary_values_are_accepted(path: str, value: object) -> None:
    """Values on the edge of each limit are valid."""
    assert _errors(validate_strategy(_edit(_long(), path, value), KNOWN)) == []


# --- each rule broken alone ----------------------------------------------------------------------

C0 = "s1_signal.conditions[0]"

BROKEN: list[tuple[str, object, str, IssueCode]] = [
    # (field to change, new value or DELETE, expected error path, expected code)
    ("strategy_name", DELETE, "strategy_name", IssueCode.REQUIRED),
    ("strategy_name", "", "strategy_name", IssueCode.TOO_SHORT),
    ("strategy_name", "n" * 129, "strategy_name", IssueCode.TOO_LONG),
    ("strategy_name", 42, "strategy_name", IssueCode.WRONG_TYPE),
    ("strategy_name", None, "strategy_name", IssueCode.WRONG_TYPE),
    ("strategy_name", "a<b>", "strategy_name", IssueCode.INVALID_CHARACTERS),
    ("strategy_name", "tab\there", "strategy_name", IssueCode.INVALID_CHARACTERS),
    ("direction", DELETE, "direction", IssueCode.REQUIRED),
    ("direction", "long", "direction", IssueCode.INVALID_CHOICE),
    ("direction", "BUY", "direction", IssueCode.INVALID_CHOICE),
    ("direction", ["LONG"], "direction", IssueCode.WRONG_TYPE),
    ("description", 7, "description", IssueCode.WRONG_TYPE),
    ("description", "d" * 2001, "description", IssueCode.TOO_LONG),
    ("description", "bell\x07", "description", IssueCode.INVALID_CHARACTERS),
    ("symbols", "BTC_USDT", "symbols", IssueCode.WRONG_TYPE),
    ("symbols", ["BTC_USDT", "BTC_USDT"], "symbols[1]", IssueCode.DUPLICATE),
    ("symbols", ["BTC_USDT", ""], "symbols[1]", IssueCode.TOO_SHORT),
    ("symbols", ["BTC USDT"], "symbols[0]", IssueCode.INVALID_CHARACTERS),
    ("symbols", ["S"] * 101, "symbols", IssueCode.TOO_LONG),
    ("enabled", "yes", "enabled", IssueCode.WRONG_TYPE),
    ("enabled", 1, "enabled", IssueCode.WRONG_TYPE),
    ("s1_signal", DELETE, "s1_signal", IssueCode.REQUIRED),
    ("s1_signal", [], "s1_signal", IssueCode.WRONG_TYPE),
    ("s1_signal.conditions", DELETE, "s1_signal.conditions", IssueCode.REQUIRED),
    ("s1_signal.conditions", [], "s1_signal.conditions", IssueCode.TOO_SHORT),
    ("s1_signal.conditions", {}, "s1_signal.conditions", IssueCode.WRONG_TYPE),
    ("s1_signal.conditions[2]", "rsi_14 > 70", "s1_signal.conditions[2]", IssueCode.WRONG_TYPE),
    ("z1_entry.conditions", [], "z1_entry.conditions", IssueCode.TOO_SHORT),
    ("ze1_close", DELETE, "ze1_close", IssueCode.REQUIRED),
    ("o1_cancel", None, "o1_cancel", IssueCode.WRONG_TYPE),
    ("emergency_exit", "off", "emergency_exit", IssueCode.WRONG_TYPE),
    (f"{C0}.id", DELETE, f"{C0}.id", IssueCode.REQUIRED),
    (f"{C0}.id", 1, f"{C0}.id", IssueCode.WRONG_TYPE),
    (f"{C0}.id", "c 1", f"{C0}.id", IssueCode.INVALID_CHARACTERS),
    ("s1_signal.conditions[2].id", "c1", "s1_signal.conditions[2].id", IssueCode.DUPLICATE),
    (f"{C0}.indicatorId", "rsi_99", f"{C0}.indicatorId", IssueCode.UNKNOWN_INDICATOR),
    (f"{C0}.indicatorId", None, f"{C0}.indicatorId", IssueCode.WRONG_TYPE),
    (f"{C0}.indicatorId", DELETE, f"{C0}.indicatorId", IssueCode.REQUIRED),
    ("s1_signal.conditions[2].operator", "=>", "s1_signal.conditions[2].operator", IssueCode.INVALID_CHOICE),
    (f"{C0}.operator", "=", f"{C0}.operator", IssueCode.INVALID_CHOICE),
    (f"{C0}.operator", DELETE, f"{C0}.operator", IssueCode.REQUIRED),
    (f"{C0}.value", True, f"{C0}.value", IssueCode.WRONG_TYPE),
    (f"{C0}.value", "70", f"{C0}.value", IssueCode.WRONG_TYPE),
    (f"{C0}.value", None, f"{C0}.value", IssueCode.WRONG_TYPE),
    (f"{C0}.value", float("nan"), f"{C0}.value", IssueCode.NOT_FINITE),
    (f"{C0}.value", float("-inf"), f"{C0}.value", IssueCode.NOT_FINITE),
    (f"{C0}.value", 10**400, f"{C0}.value", IssueCode.NOT_FINITE),
    (f"{C0}.params", [14], f"{C0}.params", IssueCode.WRONG_TYPE),
    (f"{C0}.params", {"window": [14]}, f"{C0}.params.window", IssueCode.WRONG_TYPE),
    (f"{C0}.params", {"window": float("inf")}, f"{C0}.params.window", IssueCode.NOT_FINITE),
    (f"{C0}.params", {"source": "a\x00"}, f"{C0}.params.source", IssueCode.INVALID_CHARACTERS),
    (f"{C0}.params", {"bad key": 1}, f'{C0}.params["bad key"]', IssueCode.INVALID_CHARACTERS),
    (f"{C0}.params", {f"p{i}": i for i in range(21)}, f"{C0}.params", IssueCode.TOO_LONG),
    ("z1_entry", DELETE, "z1_entry", IssueCode.REQUIRED),
    ("z1_entry.leverage", 0, "z1_entry.leverage", IssueCode.OUT_OF_RANGE),
    ("z1_entry.leverage", 0.5, "z1_entry.leverage", IssueCode.OUT_OF_RANGE),
    ("z1_entry.leverage", 11, "z1_entry.leverage", IssueCode.OUT_OF_RANGE),
    ("z1_entry.leverage", "2", "z1_entry.leverage", IssueCode.WRONG_TYPE),
    ("z1_entry.leverage", False, "z1_entry.leverage", IssueCode.WRONG_TYPE),
    ("z1_entry.stopLoss.offsetPercent", 0, "z1_entry.stopLoss.offsetPercent", IssueCode.OUT_OF_RANGE),
    ("z1_entry.stopLoss.offsetPercent", -1, "z1_entry.stopLoss.offsetPercent", IssueCode.OUT_OF_RANGE),
    ("z1_entry.stopLoss.offsetPercent", 100.01, "z1_entry.stopLoss.offsetPercent", IssueCode.OUT_OF_RANGE),
    ("z1_entry.stopLoss.offsetPercent", DELETE, "z1_entry.stopLoss.offsetPercent", IssueCode.REQUIRED),
    ("z1_entry.stopLoss", 2, "z1_entry.stopLoss", IssueCode.WRONG_TYPE),
    ("z1_entry.takeProfit.offsetPercent", 0, "z1_entry.takeProfit.offsetPercent", IssueCode.OUT_OF_RANGE),
    (
        "z1_entry.takeProfit.offsetPercent",
        1000.5,
        "z1_entry.takeProfit.offsetPercent",
        IssueCode.OUT_OF_RANGE,
    ),
    ("z1_entry.positionSize", DELETE, "z1_entry.positionSize", IssueCode.REQUIRED),
    ("z1_entry.positionSize.type", "all_in", "z1_entry.positionSize.type", IssueCode.INVALID_CHOICE),
    ("z1_entry.positionSize.type", DELETE, "z1_entry.positionSize.type", IssueCode.REQUIRED),
    ("z1_entry.positionSize.value", 0, "z1_entry.positionSize.value", IssueCode.OUT_OF_RANGE),
    ("z1_entry.positionSize.value", 100.5, "z1_entry.positionSize.value", IssueCode.OUT_OF_RANGE),
    ("o1_cancel.timeoutSeconds", DELETE, "o1_cancel.timeoutSeconds", IssueCode.REQUIRED),
    ("o1_cancel.timeoutSeconds", 0, "o1_cancel.timeoutSeconds", IssueCode.OUT_OF_RANGE),
    ("o1_cancel.timeoutSeconds", 366 * 86400 + 1, "o1_cancel.timeoutSeconds", IssueCode.OUT_OF_RANGE),
    ("o1_cancel.conditions[0].value", [], "o1_cancel.conditions[0].value", IssueCode.WRONG_TYPE),
    ("emergency_exit.cooldownMinutes", -1, "emergency_exit.cooldownMinutes", IssueCode.OUT_OF_RANGE),
    ("emergency_exit.cooldownMinutes", 1441, "emergency_exit.cooldownMinutes", IssueCode.OUT_OF_RANGE),
    ("emergency_exit.cooldownMinutes", DELETE, "emergency_exit.cooldownMinutes", IssueCode.REQUIRED),
    ("emergency_exit.actions", DELETE, "emergency_exit.actions", IssueCode.REQUIRED),
    ("emergency_exit.actions", "notify", "emergency_exit.actions", IssueCode.WRONG_TYPE),
    ("emergency_exit.actions[1]", "sell_everything", "emergency_exit.actions[1]", IssueCode.INVALID_CHOICE),
    ("emergency_exit.actions[2]", "close_position", "emergency_exit.actions[2]", IssueCode.DUPLICATE),
    ("emergency_exit.actions[0]", 3, "emergency_exit.actions[0]", IssueCode.WRONG_TYPE),
]


@pytest.mark.parametrize(("field", "value", "path", "code"), BROKEN, ids=lambda v: repr(v)[:40])
def test_each_broken_rule_is_one_error_at_its_exact_path(
    field: str, value: object, path: str, code: str
) -> None:
    """Breaking one rule gives exactly one error, with that rule's path and code."""
    doc = _edit(_long(), field, value)
    result = validate_strategy(doc, KNOWN)
    assert _errors(result) == [(path, code)]
    assert not result.valid
    assert all(issue.message for issue in result.errors)
    with pytest.raises(StrategyValidationError):
        parse_strategy(doc, KNOWN)


def test_many_errors_are_all_returned_at_once() -> None:
    """A document broken in many places reports every error, in document order, in one result."""
    doc = _long()
    doc["direction"] = "SIDEWAYS"
    doc["symbols"] = ["BTC_USDT", 5]
    doc["s1_signal"]["conditions"][0]["operator"] = "~"
    doc["s1_signal"]["conditions"][1]["indicatorId"] = "nope"
    doc["s1_signal"]["conditions"][2]["value"] = "high"
    doc["z1_entry"]["leverage"] = 50
    doc["z1_entry"]["stopLoss"] = {"offsetPercent": 0}
    del doc["ze1_close"]
    doc["o1_cancel"]["timeoutSeconds"] = -5
    doc["emergency_exit"]["actions"] = ["panic"]
    doc["colour"] = "red"
    result = validate_strategy(doc, KNOWN)
    assert _errors(result) == [
        ("direction", "invalid_choice"),
        ("symbols[1]", "wrong_type"),
        ("s1_signal.conditions[0].operator", "invalid_choice"),
        ("s1_signal.conditions[1].indicatorId", "unknown_indicator"),
        ("s1_signal.conditions[2].value", "wrong_type"),
        ("z1_entry.leverage", "out_of_range"),
        ("z1_entry.stopLoss.offsetPercent", "out_of_range"),
        ("ze1_close", "required"),
        ("o1_cancel.timeoutSeconds", "out_of_range"),
        ("emergency_exit.actions[0]", "invalid_choice"),
    ]
    assert _warnings(result) == [("colour", "unknown_key")]
    with pytest.raises(StrategyValidationError) as caught:
        parse_strategy(doc, KNOWN)
    assert caught.value.result == result


def test_every_issue_code_in_use_is_registered() -> None:
    """Issue codes are plain strings from the closed IssueCode registry."""
    assert {code.value for code in IssueCode} >= {code for _, _, _, code in BROKEN}
    assert all(isinstance(code, str) for code in IssueCode)


# --- hostile and odd input -----------------------------------------------------------------------


@pytest.mark.parametrize("doc", [None, [], [_long()], "strategy", 0, 1.5, True, b"{}", object()])
def test_non_object_documents_are_one_error_at_the_root(doc: object) -> None:
    """Any non-object document is a single wrong_type error at path "" and never raises."""
    result = validate_strategy(doc, KNOWN)
    assert _errors(result) == [("", "wrong_type")]
    with pytest.raises(StrategyValidationError, match="invalid strategy"):
        parse_strategy(doc, KNOWN)


def test_empty_object_reports_every_required_field() -> None:
    """An empty object reports each required top-level field as required."""
    result = validate_strategy({}, KNOWN)
    assert _errors(result) == [
        (key, "required")
        for key in (
            "strategy_name",
            "direction",
            "s1_signal",
            "z1_entry",
            "ze1_close",
            "o1_cancel",
            "emergency_exit",
        )
    ]


def test_sections_of_every_wrong_type_are_reported_without_raising() -> None:
    """Sections and conditions of any JSON type give errors, not exceptions."""
    values: list[object] = [None, 1, "x", [], [None], True, {"conditions": [None, 1, "c", []]}]
    for value in values:
        doc = {key: value for key in ("s1_signal", "z1_entry", "ze1_close", "o1_cancel", "emergency_exit")}
        result = validate_strategy({**_short(), **doc}, KNOWN)
        assert not result.valid


def test_huge_inputs_are_rejected_by_size_with_bounded_issues() -> None:
    """Huge strings, lists and objects are refused on their size; issue counts stay small."""
    doc = _long()
    doc["strategy_name"] = "x" * 10_000_000
    doc["s1_signal"]["conditions"] = [{"id": "c"}] * 10_000
    doc["z1_entry"]["conditions"][0]["indicatorId"] = "i" * 1_000_000
    for index in range(1000):
        doc[f"extra_{index}"] = index
    result = validate_strategy(doc, KNOWN)
    assert _errors(result) == [
        ("strategy_name", "too_long"),
        ("s1_signal.conditions", "too_long"),
        ("z1_entry.conditions[0].indicatorId", "unknown_indicator"),
    ]
    assert len(result.warnings) == 11  # ten named, then one summary
    assert result.warnings[-1] == Issue("", "990 more unknown fields, ignored", "unknown_key")
    assert max(len(issue.message) for issue in result.errors) < 200


def test_odd_keys_get_bracketed_paths() -> None:
    """Unknown keys that are not plain names appear quoted in brackets, cut to 40 characters."""
    doc = _long()
    doc["z1_entry"]["stop loss"] = 1
    doc["z1_entry"]["k" * 100] = 1
    doc["z1_entry"][7] = 1
    assert _warnings(validate_strategy(doc, KNOWN)) == [
        ('z1_entry["stop loss"]', "unknown_key"),
        (f'z1_entry["{"k" * 40}"]', "unknown_key"),
        ("z1_entry[<int>]", "unknown_key"),
    ]


def test_known_indicators_must_not_be_a_single_string() -> None:
    """Passing one string as known_indicators is a programming error, not substring matching."""
    with pytest.raises(TypeError):
        validate_strategy(_long(), "rsi_14")


# --- strings kept byte for byte ------------------------------------------------------------------


def test_markup_is_preserved_exactly_and_never_escaped() -> None:
    """`<script>` and other markup in free text reach the typed form and the document unchanged."""
    text = "<script>alert(\"x\")</script> &amp; 'quotes' <b>é€😀</b>\n\tnext line"
    doc = _edit(
        _edit(_long(), "description", text), f"{C0}.params", {"label": "<img src=x onerror=alert(1)>"}
    )
    strategy = parse_strategy(doc, KNOWN)
    assert strategy.description == text
    assert strategy.description.encode() == text.encode()
    assert strategy.signal.conditions[0].params["label"] == "<img src=x onerror=alert(1)>"
    assert to_document(strategy)["description"] == text


def test_markup_in_the_name_is_rejected_not_escaped() -> None:
    """The name allows only letters, digits, space and _-.: so `<script>` is refused, not rewritten."""
    result = validate_strategy(_edit(_long(), "strategy_name", "<script>x</script>"), KNOWN)
    assert _errors(result) == [("strategy_name", "invalid_characters")]
    assert "'<' (U+003C) at position 0" in result.errors[0].message


@pytest.mark.parametrize(
    "bad", ["\x00", "\x1b[31m", "\r", "\x7f", "\u202e", "\u200b", "\u2028", "\ud800", "\ue000", "\x85"]
)
def test_control_and_invisible_characters_are_rejected(bad: str) -> None:
    """Control, format, separator, surrogate and private-use characters are refused everywhere."""
    for field in ("strategy_name", "description", f"{C0}.id", "symbols[0]"):
        result = validate_strategy(_edit(_long(), field, f"ok{bad}ok"), KNOWN)
        assert _errors(result) == [(field, "invalid_characters")]
        assert f"U+{ord(bad[0]):04X} at position 2" in result.errors[0].message


# --- warnings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leverage", "codes"),
    [
        *[(value, []) for value in (1, 3)],
        *[(value, ["high_leverage"]) for value in (3.5, 4, 5)],
        *[(value, ["very_high_leverage"]) for value in (5.5, 6, 10)],
    ],
)
def test_leverage_warnings(leverage: float, codes: list[str]) -> None:
    """Leverage above 3 warns high_leverage; above 5 the stronger very_high_leverage instead."""
    result = validate_strategy(_edit(_long(), "z1_entry.leverage", leverage), KNOWN)
    assert result.valid
    assert _warnings(result) == [("z1_entry.leverage", code) for code in codes]


def test_leverage_four_and_six_warn_with_distinct_messages() -> None:
    """Leverage 4 and 6 each produce one warning, the second one stronger."""
    four = validate_strategy(_edit(_long(), "z1_entry.leverage", 4), KNOWN).warnings
    six = validate_strategy(_edit(_long(), "z1_entry.leverage", 6), KNOWN).warnings
    assert [issue.code for issue in four] == ["high_leverage"]
    assert [issue.code for issue in six] == ["very_high_leverage"]
    assert "very high" in six[0].message and "16.7%" in six[0].message


@pytest.mark.parametrize(("leverage", "stop_loss"), [(2, DELETE), (2, None), (1.5, DELETE)])
def test_missing_stop_loss_with_leverage_warns(leverage: float, stop_loss: object) -> None:
    """Leverage above 1 without a stop loss (absent or null) warns missing_stop_loss."""
    doc = _edit(_edit(_long(), "z1_entry.leverage", leverage), "z1_entry.stopLoss", stop_loss)
    result = validate_strategy(doc, KNOWN)
    assert result.valid
    assert _warnings(result) == [("z1_entry.stopLoss", "missing_stop_loss")]


def test_no_stop_loss_warning_without_leverage_or_with_an_invalid_stop_loss() -> None:
    """No missing_stop_loss at leverage 1, nor when a stop loss is given but invalid (that is an error)."""
    no_leverage = _edit(_edit(_long(), "z1_entry.leverage", 1), "z1_entry.stopLoss", DELETE)
    assert _warnings(validate_strategy(no_leverage, KNOWN)) == []
    invalid = validate_strategy(_edit(_long(), "z1_entry.stopLoss", "2%"), KNOWN)
    assert _warnings(invalid) == []


@pytest.mark.parametrize("take_profit", [2, 1.5])
def test_take_profit_not_above_stop_loss_warns(take_profit: float) -> None:
    """A take profit at or below the stop-loss offset warns."""
    result = validate_strategy(_edit(_long(), "z1_entry.takeProfit.offsetPercent", take_profit), KNOWN)
    assert result.valid
    assert _warnings(result) == [("z1_entry.takeProfit.offsetPercent", "take_profit_not_above_stop_loss")]


def test_unknown_keys_warn_at_every_level_and_are_dropped() -> None:
    """Unknown fields are warnings (not errors) at the top, in sections and in conditions."""
    doc = _long()
    doc["author"] = "me"
    doc["z1_entry"]["stoploss"] = {"offsetPercent": 1}
    doc["s1_signal"]["conditions"][1]["comment"] = "why"
    doc["z1_entry"]["positionSize"]["currency"] = "USDT"
    result = validate_strategy(doc, KNOWN)
    assert result.valid
    assert _warnings(result) == [
        ("author", "unknown_key"),
        ("s1_signal.conditions[1].comment", "unknown_key"),
        ("z1_entry.stoploss", "unknown_key"),
        ("z1_entry.positionSize.currency", "unknown_key"),
    ]
    assert "author" not in to_document(parse_strategy(doc, KNOWN))


# --- wire form, round trip, typed form -----------------------------------------------------------


def test_result_to_dict_is_the_wire_shape() -> None:
    """to_dict gives {valid, errors:[{path,message,code}], warnings:[...]} with plain strings."""
    doc = _edit(_edit(_long(), "direction", "UP"), "z1_entry.leverage", 4)
    wire = validate_strategy(doc, KNOWN).to_dict()
    assert wire == {
        "valid": False,
        "errors": [{"path": "direction", "message": "must be one of LONG, SHORT", "code": "invalid_choice"}],
        "warnings": [
            {"path": "z1_entry.leverage", "message": wire["warnings"][0]["message"], "code": "high_leverage"}
        ],
    }
    assert type(wire["errors"][0]["code"]) is str
    assert json.loads(json.dumps(wire)) == wire
    assert validate_strategy(_long(), KNOWN).to_dict() == {"valid": True, "errors": [], "warnings": []}


def _normalised(doc: dict[str, Any]) -> dict[str, Any]:
    """What to_document should give back for a valid ``doc``: defaults filled, numbers as floats."""
    out = copy.deepcopy(doc)
    out.setdefault("description", "")
    out.setdefault("symbols", [])
    out.setdefault("enabled", True)
    out["z1_entry"].setdefault("leverage", 1)
    for key in ("s1_signal", "z1_entry", "ze1_close", "o1_cancel", "emergency_exit"):
        for condition in out[key]["conditions"]:
            condition.setdefault("params", {})
    return out


@pytest.mark.parametrize("make", [_long, _short])
def test_round_trip_gives_the_normalised_document(make: Any) -> None:
    """to_document(parse_strategy(d)) equals d with defaults filled, and parses back to the same value."""
    doc = make()
    strategy = parse_strategy(doc, KNOWN)
    document = to_document(strategy)
    assert document == _normalised(doc)
    assert json.loads(json.dumps(document)) == document
    assert parse_strategy(document, KNOWN) == strategy
    assert to_document(parse_strategy(document, KNOWN)) == document


def test_round_trip_turns_numbers_into_floats_and_drops_nulls() -> None:
    """Numbers come back as floats (params untouched) and null optional fields as absent."""
    doc = _edit(_edit(_short(), "description", None), "z1_entry.takeProfit", None)
    document = to_document(parse_strategy(doc, KNOWN))
    assert document["description"] == "" and "takeProfit" not in document["z1_entry"]
    assert type(document["o1_cancel"]["timeoutSeconds"]) is float
    assert type(document["z1_entry"]["leverage"]) is float
    params = to_document(parse_strategy(_long(), KNOWN))["s1_signal"]["conditions"][2]["params"]
    assert type(params["window"]) is int


def test_parsed_strategy_is_frozen_slotted_and_independent_of_the_input() -> None:
    """Typed values are frozen and slotted; params are copied so later input changes do not leak."""
    doc = _long()
    strategy = parse_strategy(doc, KNOWN)
    assert isinstance(strategy, StrategyDocument)
    with pytest.raises(dataclasses.FrozenInstanceError):
        strategy.name = "other"  # type: ignore[misc]
    assert not hasattr(strategy, "__dict__")
    doc["s1_signal"]["conditions"][2]["params"]["window"] = 99
    assert strategy.signal.conditions[2].params["window"] == 14
    assert (
        to_document(strategy)["s1_signal"]["conditions"][2]["params"]
        is not strategy.signal.conditions[2].params
    )


def test_validation_error_is_a_value_error_carrying_the_result() -> None:
    """StrategyValidationError is a ValueError whose message names the first error."""
    with pytest.raises(ValueError, match="first at 'direction'") as caught:
        parse_strategy(_edit(_long(), "direction", None), KNOWN)
    assert isinstance(caught.value, StrategyValidationError)
    assert _errors(caught.value.result) == [("direction", "wrong_type")]


# --- operators -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "results"),
    [
        (">", (False, False, True)),
        ("<", (True, False, False)),
        (">=", (False, True, True)),
        ("<=", (True, True, False)),
        ("==", (False, True, False)),
        ("!=", (True, False, True)),
    ],
)
def test_compare_implements_each_operator(operator: str, results: tuple[bool, bool, bool]) -> None:
    """compare(op)(x, threshold) is x op threshold, for x below, at and above the threshold."""
    check = compare(operator)
    assert (check(1.0, 2.0), check(2.0, 2.0), check(3.0, 2.0)) == results
    assert operator in OPERATORS


@pytest.mark.parametrize("operator", ["=", "=>", "", "gt", ">" * 1000])
def test_compare_rejects_unknown_operators(operator: str) -> None:
    """An operator outside the six is a ValueError with a short message."""
    with pytest.raises(ValueError, match="unknown operator") as caught:
        compare(operator)
    assert len(str(caught.value)) < 80


def test_operators_are_the_six_of_the_seed_format_and_the_two_crosses() -> None:
    """OPERATORS lists exactly > < >= <= == != and crosses_above / crosses_below."""
    assert set(OPERATORS) == {">", "<", ">=", "<=", "==", "!=", "crosses_above", "crosses_below"}
    assert compare("crosses_above")(2.0, 1.0) and compare("crosses_below")(1.0, 2.0)


def test_a_threshold_may_be_another_indicator_and_round_trips() -> None:
    """`value` may be {indicatorId, params}: sma(10) crosses_above sma(30)."""
    doc = _long()
    doc["s1_signal"]["conditions"][0] = {
        "id": "cross",
        "indicatorId": "rsi_14",
        "operator": "crosses_above",
        "value": {"indicatorId": "price_velocity", "params": {"window": 30}},
    }
    strategy = parse_strategy(doc, KNOWN)
    condition = strategy.signal.conditions[0]
    assert condition.value == IndicatorRef("price_velocity", {"window": 30})
    assert to_document(strategy)["s1_signal"]["conditions"][0]["value"] == {
        "indicatorId": "price_velocity",
        "params": {"window": 30},
    }


def test_threshold_references_are_validated_like_conditions() -> None:
    """An unknown indicator or a bad param in a threshold reference is an error at its path."""
    doc = _long()
    doc["s1_signal"]["conditions"][0]["value"] = {"indicatorId": "nope", "params": {"x": [1]}, "extra": 1}
    result = validate_strategy(doc, KNOWN)
    assert [(e.path, e.code) for e in result.errors] == [
        ("s1_signal.conditions[0].value.indicatorId", IssueCode.UNKNOWN_INDICATOR),
        ("s1_signal.conditions[0].value.params.x", IssueCode.WRONG_TYPE),
    ]
    assert [w.path for w in result.warnings] == ["s1_signal.conditions[0].value.extra"]


def test_params_are_checked_by_the_given_schema_in_the_same_walk() -> None:
    """check_params reports indicator parameter problems together with every other error."""

    def check(name: str, params: dict[str, Any]) -> tuple[str, str] | None:
        return ("window", "must be positive") if params.get("window", 1) <= 0 else None

    doc = _long()
    doc["direction"] = "UP"
    doc["s1_signal"]["conditions"][2]["params"] = {"window": -1}
    result = validate_strategy(doc, KNOWN, check)
    assert [(e.path, e.code) for e in result.errors] == [
        ("direction", IssueCode.INVALID_CHOICE),
        ("s1_signal.conditions[2].params.window", IssueCode.INVALID_PARAMS),
    ]


def test_signals_may_wait_a_year_for_entry() -> None:
    """timeoutSeconds reaches 366 days (daily and monthly bars), not one day."""
    doc = _long()
    doc["o1_cancel"]["timeoutSeconds"] = 366 * 86400
    assert validate_strategy(doc, KNOWN).valid
    doc["o1_cancel"]["timeoutSeconds"] = 366 * 86400 + 1
    assert not validate_strategy(doc, KNOWN).valid
