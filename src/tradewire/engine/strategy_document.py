"""The strategy document (DESIGN §6.3, the seed system's format): validation, typed form, and back.

A strategy arrives as decoded JSON, which may be any value at all (``null``, a list, wrong types,
huge strings). :func:`validate_strategy` never raises on it: it walks the whole document and
returns every error and warning at once, each an :class:`Issue` whose ``path`` names the field as
a client would write it (``z1_entry.stopLoss.offsetPercent``, ``s1_signal.conditions[2].operator``;
the document itself is ``""``). :func:`parse_strategy` makes the same walk and returns a frozen
:class:`StrategyDocument` for the engine, or raises :class:`StrategyValidationError` carrying the
:class:`ValidationResult`. :func:`to_document` gives back the *normalised* JSON document, so
``to_document(parse_strategy(d, known)) == normalised(d)``.

Normalised means: unknown fields dropped, numbers (except ``params`` values) as ``float``, a
``null`` optional field treated as absent, and these defaults written out: ``description ""``,
``symbols []``, ``enabled true``, ``leverage 1``, ``params {}``. ``stopLoss`` and ``takeProfit``
have no neutral default and stay absent when not given.

Strings are accepted byte for byte or rejected, never escaped, trimmed or normalised: escaping is
the renderer's job (DESIGN §9, "HTML-escaping input"). Control characters are rejected.

The document::

    {
      "strategy_name": "Pump catcher",   1-128 chars: letters, digits, space, _ - . :
      "direction": "LONG",               exactly LONG or SHORT
      "description": "...",              optional, ≤ 2000 printable chars, newline and tab allowed
      "symbols": ["BTC_USDT"],           optional, ≤ 100 distinct symbols
      "enabled": true,                   optional
      "s1_signal": {"conditions": [C, ...]},                      at least one condition
      "z1_entry": {"conditions": [C, ...],                        at least one condition
                   "positionSize": {"type": "fixed" | "percentage", "value": > 0, ≤ 100 if %},
                   "stopLoss": {"offsetPercent": 0 < x ≤ 100},    optional
                   "takeProfit": {"offsetPercent": 0 < x ≤ 1000}, optional
                   "leverage": 1 ≤ x ≤ 10},                       optional
      "ze1_close": {"conditions": [C, ...]},
      "o1_cancel": {"conditions": [C, ...], "timeoutSeconds": 1 ≤ x ≤ 31622400 (366 days)},
      "emergency_exit": {"conditions": [C, ...], "cooldownMinutes": 0 ≤ x ≤ 1440,
                         "actions": ["close_position" | "cancel_orders" | "pause_strategy" | "notify"]}
    }
    C = {"id": "c1", "indicatorId": "rsi", "operator": OP, "value": 70 | REF, "params": {"period": 14}}
        ids unique per section; params optional, scalar values only (checked against the
        indicator's schema when the caller passes one, see ``validate_strategy``)
    OP = > < >= <= == != crosses_above crosses_below
    REF = {"indicatorId": "sma", "params": {"period": 30}}   another indicator as the threshold

Every list and object has a size cap, so even a hostile document yields a bounded number of
issues, and an over-long string is rejected on its length before its characters are read.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from operator import eq, ge, gt, le, lt, ne
from typing import Any, Final

__all__ = [
    "CROSS_OPERATORS",
    "OPERATORS",
    "CancelRules",
    "Condition",
    "Direction",
    "EmergencyExit",
    "EntryRules",
    "ExitAction",
    "IndicatorRef",
    "Issue",
    "IssueCode",
    "ParamValue",
    "ParamsCheck",
    "PositionSize",
    "PositionSizeType",
    "Section",
    "StrategyDocument",
    "StrategyValidationError",
    "ValidationResult",
    "compare",
    "parse_strategy",
    "to_document",
    "validate_strategy",
]

ParamValue = str | int | float | bool
"""A value in a condition's ``params`` (kept exactly as given, ints stay ints)."""

MAX_CONDITIONS: Final = 50  # per section
MAX_SYMBOLS: Final = 100
MAX_ACTIONS: Final = 10
MAX_PARAMS: Final = 20  # per condition
MAX_UNKNOWN_KEYS_REPORTED: Final = 10  # per object; the rest become one summary warning
LEVERAGE_WARNING: Final = 3.0  # above this: high_leverage
LEVERAGE_STRONG_WARNING: Final = 5.0  # above this: very_high_leverage (instead of high_leverage)


class IssueCode(StrEnum):
    """The closed registry of ``Issue.code`` values; the first group are errors, then warnings."""

    # Errors: the document is refused.
    WRONG_TYPE = "wrong_type"  # not the JSON type the field needs (bool is never a number)
    REQUIRED = "required"  # a required field is absent
    NOT_FINITE = "not_finite"  # NaN, ±Infinity, or an integer too large for a float
    OUT_OF_RANGE = "out_of_range"  # a number outside its limits; the message states them
    TOO_SHORT = "too_short"  # empty string, or a section without its required condition
    TOO_LONG = "too_long"  # string, list or object above its size cap
    INVALID_CHARACTERS = "invalid_characters"  # a control character, or one outside the allowed set
    INVALID_CHOICE = "invalid_choice"  # not one of a closed set (direction, operator, type, action)
    UNKNOWN_INDICATOR = "unknown_indicator"  # indicatorId not among the known indicators
    DUPLICATE = "duplicate"  # repeated condition id (per section), symbol or action
    INVALID_PARAMS = "invalid_params"  # params the indicator's schema rejects (unknown name, bad value)
    # Warnings: the document is accepted; a client should show them.
    UNKNOWN_KEY = "unknown_key"  # a field this format does not define; ignored and dropped
    HIGH_LEVERAGE = "high_leverage"  # leverage above 3
    VERY_HIGH_LEVERAGE = "very_high_leverage"  # leverage above 5 (replaces high_leverage)
    MISSING_STOP_LOSS = "missing_stop_loss"  # leverage above 1 with no stopLoss
    TAKE_PROFIT_NOT_ABOVE_STOP_LOSS = "take_profit_not_above_stop_loss"  # takeProfit ≤ stopLoss offset


class Direction(StrEnum):
    """The side a strategy trades."""

    LONG = "LONG"
    SHORT = "SHORT"


class PositionSizeType(StrEnum):
    """How ``positionSize.value`` is read: an amount, or a percentage of the balance."""

    FIXED = "fixed"
    PERCENTAGE = "percentage"


class ExitAction(StrEnum):
    """What ``emergency_exit`` does when its conditions hold, in the order listed."""

    CLOSE_POSITION = "close_position"
    CANCEL_ORDERS = "cancel_orders"
    PAUSE_STRATEGY = "pause_strategy"
    NOTIFY = "notify"


_COMPARATORS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": gt,
    "<": lt,
    ">=": ge,
    "<=": le,
    "==": eq,
    "!=": ne,
}
CROSS_OPERATORS: Final = ("crosses_above", "crosses_below")
"""``a crosses_above b``: ``a`` was below ``b`` on the previous tick and is above it now (strictly,
as ``backtesting.lib.crossover``); ``crosses_below`` mirrors it."""
OPERATORS: Final = (*_COMPARATORS, *CROSS_OPERATORS)

ParamsCheck = Callable[[str, dict[str, Any]], tuple[str, str] | None]
"""``check(indicator, params)`` → ``(path below params, message)`` of the first problem, or None."""


def compare(operator: str) -> Callable[[float, float], bool]:
    """The function for ``indicator_value <operator> threshold``; ``ValueError`` if unknown.

    ``==`` and ``!=`` compare floats exactly, as the seed system did. For the cross operators it is
    the comparison that must hold *now* (``>`` for ``crosses_above``); the state machine checks
    the previous tick itself.
    """
    if operator in CROSS_OPERATORS:
        return gt if operator == "crosses_above" else lt
    try:
        return _COMPARATORS[operator]
    except KeyError:
        raise ValueError(f"unknown operator {_preview(operator)}") from None


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    """One error or warning: where (dotted path), what (for people) and which (``IssueCode``)."""

    path: str
    message: str
    code: str

    def to_dict(self) -> dict[str, str]:
        """The wire form ``{path, message, code}``."""
        return {"path": self.path, "message": self.message, "code": str(self.code)}


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Every error and warning of one document, in document order; valid when no errors."""

    errors: list[Issue]
    warnings: list[Issue]

    @property
    def valid(self) -> bool:
        """True when the document has no errors (warnings do not count)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The wire form ``{"valid", "errors": [...], "warnings": [...]}``."""
        return {
            "valid": self.valid,
            "errors": [issue.to_dict() for issue in self.errors],
            "warnings": [issue.to_dict() for issue in self.warnings],
        }


class StrategyValidationError(ValueError):
    """:func:`parse_strategy` got an invalid document; ``result`` holds every issue."""

    def __init__(self, result: ValidationResult) -> None:
        first = result.errors[0] if result.errors else Issue("", "no errors", "")
        super().__init__(
            f"invalid strategy ({len(result.errors)} errors), first at '{first.path}': {first.message}"
        )
        self.result = result


# --- the typed form ------------------------------------------------------------------------------
# Built only by parse_strategy, which guarantees every limit above; the classes do not re-check.


@dataclass(frozen=True, slots=True)
class IndicatorRef:
    """Another indicator used as a condition's threshold, e.g. the ``sma(30)`` of ``sma(10) > sma(30)``."""

    indicator: str
    params: dict[str, ParamValue]


@dataclass(frozen=True, slots=True)
class Condition:
    """``indicator`` (computed with ``params``) ``operator`` ``value``, e.g. rsi > 70, or
    sma(10) crosses_above sma(30) when ``value`` is an :class:`IndicatorRef`."""

    id: str
    indicator: str
    params: dict[str, ParamValue]  # a copy of the document's; not hashable because of it
    operator: str  # one of OPERATORS; evaluate with compare(operator)
    value: float | IndicatorRef


@dataclass(frozen=True, slots=True)
class Section:
    """A section that is only conditions (``s1_signal``, ``ze1_close``); all must hold."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class PositionSize:
    """How much to enter with."""

    type: PositionSizeType
    value: float


@dataclass(frozen=True, slots=True)
class EntryRules:
    """``z1_entry``: when and how to open a position."""

    conditions: tuple[Condition, ...]
    position_size: PositionSize
    leverage: float = 1.0
    stop_loss_percent: float | None = None  # offset from the entry price, in percent
    take_profit_percent: float | None = None


@dataclass(frozen=True, slots=True)
class CancelRules:
    """``o1_cancel``: drop a pending signal when the conditions hold or after the timeout."""

    conditions: tuple[Condition, ...]
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class EmergencyExit:
    """``emergency_exit``: the actions, then no new entries for ``cooldown_minutes``."""

    conditions: tuple[Condition, ...]
    cooldown_minutes: float
    actions: tuple[ExitAction, ...]


@dataclass(frozen=True, slots=True)
class StrategyDocument:
    """A validated strategy, as the state machine (DESIGN §6.4) reads it."""

    name: str
    direction: Direction
    signal: Section  # s1_signal
    entry: EntryRules  # z1_entry
    close: Section  # ze1_close
    cancel: CancelRules  # o1_cancel
    emergency_exit: EmergencyExit
    description: str = ""
    symbols: tuple[str, ...] = ()  # the default symbols; a session may choose others
    enabled: bool = True


# --- public functions ----------------------------------------------------------------------------


def validate_strategy(
    doc: object, known_indicators: Collection[str], check_params: ParamsCheck | None = None
) -> ValidationResult:
    """Every error and warning of ``doc``; never raises on any value of ``doc``.

    ``check_params`` (the engine passes its indicator registry's) checks each condition's
    ``params`` in the same walk, so a misspelt parameter is reported together with every other
    error instead of after they are fixed.
    """
    return _Walker(known_indicators, check_params).run(doc)[0]


def parse_strategy(
    doc: object, known_indicators: Collection[str], check_params: ParamsCheck | None = None
) -> StrategyDocument:
    """The typed strategy; raises :class:`StrategyValidationError` if ``doc`` has any error."""
    result, strategy = _Walker(known_indicators, check_params).run(doc)
    if strategy is None:
        raise StrategyValidationError(result)
    return strategy


def to_document(strategy: StrategyDocument) -> dict[str, Any]:
    """The normalised JSON document of ``strategy`` (see the module docstring)."""
    return {
        "strategy_name": strategy.name,
        "direction": strategy.direction.value,
        "description": strategy.description,
        "symbols": list(strategy.symbols),
        "enabled": strategy.enabled,
        "s1_signal": {"conditions": _conditions_document(strategy.signal.conditions)},
        "z1_entry": _entry_document(strategy.entry),
        "ze1_close": {"conditions": _conditions_document(strategy.close.conditions)},
        "o1_cancel": {
            "conditions": _conditions_document(strategy.cancel.conditions),
            "timeoutSeconds": strategy.cancel.timeout_seconds,
        },
        "emergency_exit": {
            "conditions": _conditions_document(strategy.emergency_exit.conditions),
            "cooldownMinutes": strategy.emergency_exit.cooldown_minutes,
            "actions": [action.value for action in strategy.emergency_exit.actions],
        },
    }


def _entry_document(entry: EntryRules) -> dict[str, Any]:
    document: dict[str, Any] = {
        "conditions": _conditions_document(entry.conditions),
        "positionSize": {"type": entry.position_size.type.value, "value": entry.position_size.value},
        "leverage": entry.leverage,
    }
    if entry.stop_loss_percent is not None:
        document["stopLoss"] = {"offsetPercent": entry.stop_loss_percent}
    if entry.take_profit_percent is not None:
        document["takeProfit"] = {"offsetPercent": entry.take_profit_percent}
    return document


def _conditions_document(conditions: tuple[Condition, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "indicatorId": c.indicator,
            "operator": c.operator,
            "value": (
                {"indicatorId": c.value.indicator, "params": dict(c.value.params)}
                if isinstance(c.value, IndicatorRef)
                else c.value
            ),
            "params": dict(c.params),
        }
        for c in conditions
    ]


# --- field rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Range:
    """Limits of a number field; ``low_open`` excludes ``low`` itself (``0 < x``)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False

    def contains(self, number: float) -> bool:
        above = number > self.low if self.low_open else number >= self.low
        return above and number <= self.high

    def describe(self) -> str:
        text = f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        return text if self.high == math.inf else f"{text} and at most {self.high:g}"


@dataclass(frozen=True, slots=True)
class _Text:
    """Limits of a string field: length, and which characters may appear."""

    min_len: int
    max_len: int
    allowed: Callable[[str], bool]
    what: str  # for messages: "letters, digits, ..."


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char in " _-.:"


def _is_id_char(char: str) -> bool:
    return char.isalnum() or char in "_-.:"


def _is_symbol_char(char: str) -> bool:
    return char.isalnum() or char in "_-.:/"


def _is_line_char(char: str) -> bool:
    """Printable: no control, format, surrogate, private-use, unassigned or line-separator chars."""
    category = unicodedata.category(char)
    return not category.startswith("C") and category not in ("Zl", "Zp")


def _is_text_char(char: str) -> bool:
    return char in "\n\t" or _is_line_char(char)


_NAME: Final = _Text(1, 128, _is_name_char, "letters, digits, space and _-.:")
_ID: Final = _Text(1, 64, _is_id_char, "letters, digits and _-.:")
_SYMBOL: Final = _Text(1, 32, _is_symbol_char, "letters, digits and _-.:/")
_DESCRIPTION: Final = _Text(0, 2000, _is_text_char, "printable characters, newline and tab")
_PARAM_TEXT: Final = _Text(0, 256, _is_line_char, "printable characters")

_ANY_NUMBER: Final = _Range()
_LEVERAGE: Final = _Range(1, 10)
_STOP_LOSS: Final = _Range(0, 100, low_open=True)
_TAKE_PROFIT: Final = _Range(0, 1000, low_open=True)
_FIXED_SIZE: Final = _Range(0, low_open=True)
_PERCENT_SIZE: Final = _Range(0, 100, low_open=True)
_TIMEOUT: Final = _Range(1, 366 * 86400)  # daily and monthly bars need signals that live for days
_COOLDOWN: Final = _Range(0, 1440)

_DIRECTIONS: Final = tuple(d.value for d in Direction)
_SIZE_TYPES: Final = tuple(t.value for t in PositionSizeType)
_ACTIONS: Final = tuple(a.value for a in ExitAction)

_TOP_KEYS: Final = frozenset(
    {"strategy_name", "direction", "description", "symbols", "enabled"}
    | {"s1_signal", "z1_entry", "ze1_close", "o1_cancel", "emergency_exit"}
)
_SECTION_KEYS: Final = frozenset({"conditions"})
_ENTRY_KEYS: Final = frozenset({"conditions", "positionSize", "stopLoss", "takeProfit", "leverage"})
_CANCEL_KEYS: Final = frozenset({"conditions", "timeoutSeconds"})
_EMERGENCY_KEYS: Final = frozenset({"conditions", "cooldownMinutes", "actions"})
_CONDITION_KEYS: Final = frozenset({"id", "indicatorId", "operator", "value", "params"})
_REF_KEYS: Final = frozenset({"indicatorId", "params"})
_SIZE_KEYS: Final = frozenset({"type", "value"})
_OFFSET_KEYS: Final = frozenset({"offsetPercent"})

_ABSENT: Final = object()  # a field not given (or null where null means "not given")
_REQUIRED: Final = object()  # the default of a field that must be given

_JSON_TYPES: Final[tuple[tuple[type | tuple[type, ...], str], ...]] = (
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _preview(value: str, limit: int = 40) -> str:
    """A short quoted form of client text for messages (control characters shown escaped)."""
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _key_path(prefix: str, key: object) -> str:
    """The path of an arbitrary (possibly unknown, odd or huge) key; plain keys stay dotted."""
    if isinstance(key, str) and 0 < len(key) <= 64 and all(map(_is_id_char, key)):
        return _join(prefix, key)
    label = json.dumps(key[:40]) if isinstance(key, str) else f"<{type(key).__name__}>"
    return f"{prefix}[{label}]"


def _finite(number: int | float) -> float | None:
    try:
        as_float = float(number)
    except OverflowError:  # an int beyond the float range
        return None
    return as_float if math.isfinite(as_float) else None


def _first_bad_char(text: str, allowed: Callable[[str], bool]) -> int | None:
    return next((i for i, char in enumerate(text) if not allowed(char)), None)


def _describe_char(char: str) -> str:
    code = f"U+{ord(char):04X}"
    return f"'{char}' ({code})" if _is_line_char(char) else code


# --- the walk ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Header:
    name: str
    direction: Direction
    description: str
    symbols: tuple[str, ...]
    enabled: bool


class _Walker:
    """One pass over a document: records issues and builds typed parts (``None`` where invalid).

    Each checker takes a raw value (``_ABSENT`` when a required field was missing, already
    reported) and its path, reports what is wrong with it and returns the typed value or ``None``.
    """

    def __init__(self, known_indicators: Collection[str], check_params: ParamsCheck | None = None) -> None:
        if isinstance(known_indicators, str):
            raise TypeError("known_indicators must be a collection of names, not one string")
        self._known = known_indicators  # indicatorId values that exist
        self._check_params = check_params
        self._errors: list[Issue] = []  # in document order
        self._warnings: list[Issue] = []

    def run(self, doc: object) -> tuple[ValidationResult, StrategyDocument | None]:
        strategy = self._document(doc)
        result = ValidationResult(self._errors, self._warnings)
        return result, strategy if result.valid else None

    def _error(self, path: str, code: IssueCode, message: str) -> None:
        self._errors.append(Issue(path, message, code))

    def _warn(self, path: str, code: IssueCode, message: str) -> None:
        self._warnings.append(Issue(path, message, code))

    # generic checkers

    def _value(self, obj: dict[Any, Any], key: str, prefix: str, default: object = _REQUIRED) -> object:
        """``obj[key]``; for an optional field absent or null, ``default``; else ``_ABSENT``."""
        value = obj.get(key, _ABSENT)
        if value is None and default is not _REQUIRED:
            value = _ABSENT
        if value is not _ABSENT:
            return value
        if default is _REQUIRED:
            self._error(_join(prefix, key), IssueCode.REQUIRED, f"'{key}' is required")
            return _ABSENT
        return default

    def _object(self, value: object, path: str, allowed: frozenset[str]) -> dict[Any, Any] | None:
        if value is _ABSENT:
            return None
        if not isinstance(value, dict):
            self._error(path, IssueCode.WRONG_TYPE, f"expected an object, got {_json_type(value)}")
            return None
        self._unknown_keys(value, allowed, path)
        return value

    def _unknown_keys(self, obj: dict[Any, Any], allowed: frozenset[str], path: str) -> None:
        unknown = [key for key in obj if key not in allowed]
        for key in unknown[:MAX_UNKNOWN_KEYS_REPORTED]:
            self._warn(_key_path(path, key), IssueCode.UNKNOWN_KEY, "unknown field, ignored")
        if len(unknown) > MAX_UNKNOWN_KEYS_REPORTED:
            more = len(unknown) - MAX_UNKNOWN_KEYS_REPORTED
            self._warn(path, IssueCode.UNKNOWN_KEY, f"{more} more unknown fields, ignored")

    def _list(self, value: object, path: str, min_items: int, max_items: int) -> list[Any] | None:
        if value is _ABSENT:
            return None
        if not isinstance(value, list):
            self._error(path, IssueCode.WRONG_TYPE, f"expected an array, got {_json_type(value)}")
            return None
        if len(value) < min_items:
            self._error(path, IssueCode.TOO_SHORT, f"at least {min_items} item(s) required")
            return None
        if len(value) > max_items:
            self._error(path, IssueCode.TOO_LONG, f"at most {max_items} items allowed")
            return None
        return value

    def _number(self, value: object, path: str, limits: _Range) -> float | None:
        if value is _ABSENT:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._error(path, IssueCode.WRONG_TYPE, f"expected a number, got {_json_type(value)}")
            return None
        number = _finite(value)
        if number is None:
            self._error(path, IssueCode.NOT_FINITE, "must be a finite number")
            return None
        if not limits.contains(number):
            self._error(path, IssueCode.OUT_OF_RANGE, f"must be {limits.describe()}")
            return None
        return number

    def _text(self, value: object, path: str, rule: _Text) -> str | None:
        if value is _ABSENT:
            return None
        if not isinstance(value, str):
            self._error(path, IssueCode.WRONG_TYPE, f"expected a string, got {_json_type(value)}")
            return None
        if len(value) < rule.min_len:
            self._error(path, IssueCode.TOO_SHORT, "must not be empty")
            return None
        if len(value) > rule.max_len:  # checked before reading characters: cheap for huge strings
            self._error(path, IssueCode.TOO_LONG, f"at most {rule.max_len} characters allowed")
            return None
        bad = _first_bad_char(value, rule.allowed)
        if bad is not None:
            where = f"character {_describe_char(value[bad])} at position {bad}"
            self._error(path, IssueCode.INVALID_CHARACTERS, f"{where} is not allowed; use {rule.what}")
            return None
        return value

    def _choice(self, value: object, path: str, choices: tuple[str, ...]) -> str | None:
        if value is _ABSENT:
            return None
        if not isinstance(value, str):
            self._error(path, IssueCode.WRONG_TYPE, f"expected a string, got {_json_type(value)}")
            return None
        if value not in choices:
            self._error(path, IssueCode.INVALID_CHOICE, f"must be one of {', '.join(choices)}")
            return None
        return value

    def _boolean(self, value: object, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self._error(path, IssueCode.WRONG_TYPE, f"expected a boolean, got {_json_type(value)}")
        return None

    def _unique(
        self, value: object, path: str, max_items: int, check: Callable[[object, str], str | None]
    ) -> tuple[str, ...] | None:
        """A list of distinct strings, each passing ``check``; repeats are ``duplicate``."""
        items = self._list(value, path, 0, max_items)
        if items is None:
            return None
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            text = check(item, f"{path}[{index}]")
            if text is not None and text in first_index:
                self._error(f"{path}[{index}]", IssueCode.DUPLICATE, f"repeats item {first_index[text]}")
            elif text is not None:
                first_index[text] = index
        return tuple(first_index) if len(first_index) == len(items) else None

    # conditions

    def _conditions(
        self, section: dict[Any, Any], prefix: str, min_items: int
    ) -> tuple[Condition, ...] | None:
        path = _join(prefix, "conditions")
        items = self._list(self._value(section, "conditions", prefix), path, min_items, MAX_CONDITIONS)
        if items is None:
            return None
        first_index: dict[str, int] = {}
        parsed = [self._condition(item, path, index, first_index) for index, item in enumerate(items)]
        conditions = tuple(c for c in parsed if c is not None)
        return conditions if len(conditions) == len(parsed) else None

    def _condition(
        self, value: object, prefix: str, index: int, first_index: dict[str, int]
    ) -> Condition | None:
        """Condition ``index`` of the list at ``prefix``; ``first_index`` maps ids seen to their index."""
        path = f"{prefix}[{index}]"
        obj = self._object(value, path, _CONDITION_KEYS)
        if obj is None:
            return None
        cid = self._condition_id(self._value(obj, "id", path), _join(path, "id"), index, first_index)
        indicator = self._indicator(self._value(obj, "indicatorId", path), _join(path, "indicatorId"))
        operator = self._choice(self._value(obj, "operator", path), _join(path, "operator"), OPERATORS)
        threshold = self._threshold(self._value(obj, "value", path), _join(path, "value"))
        params = self._indicator_params(indicator, self._value(obj, "params", path, default={}), path)
        if cid is None or indicator is None or operator is None or threshold is None or params is None:
            return None
        return Condition(cid, indicator, params, operator, threshold)

    def _threshold(self, value: object, path: str) -> float | IndicatorRef | None:
        """A number, or ``{"indicatorId", "params"}`` naming the indicator to compare with."""
        if not isinstance(value, dict):
            return self._number(value, path, _ANY_NUMBER)
        obj = self._object(value, path, _REF_KEYS)
        if obj is None:
            return None
        indicator = self._indicator(self._value(obj, "indicatorId", path), _join(path, "indicatorId"))
        params = self._indicator_params(indicator, self._value(obj, "params", path, default={}), path)
        if indicator is None or params is None:
            return None
        return IndicatorRef(indicator, params)

    def _indicator_params(
        self, indicator: str | None, value: object, prefix: str
    ) -> dict[str, ParamValue] | None:
        """``params`` at ``prefix.params``: scalar values, then the indicator's own schema."""
        path = _join(prefix, "params")
        params = self._params(value, path)
        if params is None or indicator is None or self._check_params is None:
            return params
        problem = self._check_params(indicator, params)
        if problem is None:
            return params
        where, message = problem
        self._error(_join(path, where) if where else path, IssueCode.INVALID_PARAMS, message)
        return None

    def _condition_id(self, value: object, path: str, index: int, first_index: dict[str, int]) -> str | None:
        cid = self._text(value, path, _ID)
        if cid is None:
            return None
        if cid in first_index:
            self._error(
                path, IssueCode.DUPLICATE, f"id {cid!r} is already used by conditions[{first_index[cid]}]"
            )
            return None
        first_index[cid] = index
        return cid

    def _indicator(self, value: object, path: str) -> str | None:
        if value is _ABSENT:
            return None
        if not isinstance(value, str):
            self._error(path, IssueCode.WRONG_TYPE, f"expected a string, got {_json_type(value)}")
            return None
        if value not in self._known:
            self._error(path, IssueCode.UNKNOWN_INDICATOR, f"unknown indicator {_preview(value)}")
            return None
        return value

    def _params(self, value: object, path: str) -> dict[str, ParamValue] | None:
        if not isinstance(value, dict):
            self._error(path, IssueCode.WRONG_TYPE, f"expected an object, got {_json_type(value)}")
            return None
        if len(value) > MAX_PARAMS:
            self._error(path, IssueCode.TOO_LONG, f"at most {MAX_PARAMS} parameters allowed")
            return None
        checks = [self._param(key, item, path) for key, item in value.items()]  # all, not any
        return dict(value) if all(checks) else None

    def _param(self, key: object, item: object, prefix: str) -> bool:
        path = _key_path(prefix, key)
        if self._text(key, path, _ID) is None:
            return False
        if isinstance(item, str):
            return self._text(item, path, _PARAM_TEXT) is not None
        if isinstance(item, bool):
            return True
        if isinstance(item, int | float):
            return self._number(item, path, _ANY_NUMBER) is not None
        self._error(
            path, IssueCode.WRONG_TYPE, f"expected a string, number or boolean, got {_json_type(item)}"
        )
        return False

    # sections

    def _document(self, doc: object) -> StrategyDocument | None:
        if not isinstance(doc, dict):
            self._error("", IssueCode.WRONG_TYPE, f"the strategy must be an object, got {_json_type(doc)}")
            return None
        self._unknown_keys(doc, _TOP_KEYS, "")
        header = self._header(doc)
        signal = self._plain_section(doc, "s1_signal", min_conditions=1)
        entry = self._entry(doc)
        close = self._plain_section(doc, "ze1_close", min_conditions=0)
        cancel = self._cancel(doc)
        emergency = self._emergency(doc)
        if (
            header is None
            or signal is None
            or entry is None
            or close is None
            or cancel is None
            or emergency is None
        ):
            return None
        return StrategyDocument(
            header.name,
            header.direction,
            signal,
            entry,
            close,
            cancel,
            emergency,
            header.description,
            header.symbols,
            header.enabled,
        )

    def _header(self, doc: dict[Any, Any]) -> _Header | None:
        name = self._text(self._value(doc, "strategy_name", ""), "strategy_name", _NAME)
        direction = self._choice(self._value(doc, "direction", ""), "direction", _DIRECTIONS)
        description = self._text(self._value(doc, "description", "", default=""), "description", _DESCRIPTION)
        symbols = self._unique(
            self._value(doc, "symbols", "", default=[]),
            "symbols",
            MAX_SYMBOLS,
            lambda item, path: self._text(item, path, _SYMBOL),
        )
        enabled = self._boolean(self._value(doc, "enabled", "", default=True), "enabled")
        if name is None or direction is None or description is None or symbols is None or enabled is None:
            return None
        return _Header(name, Direction(direction), description, symbols, enabled)

    def _plain_section(self, doc: dict[Any, Any], key: str, min_conditions: int) -> Section | None:
        obj = self._object(self._value(doc, key, ""), key, _SECTION_KEYS)
        if obj is None:
            return None
        conditions = self._conditions(obj, key, min_conditions)
        return None if conditions is None else Section(conditions)

    def _entry(self, doc: dict[Any, Any]) -> EntryRules | None:
        key = "z1_entry"
        obj = self._object(self._value(doc, key, ""), key, _ENTRY_KEYS)
        if obj is None:
            return None
        conditions = self._conditions(obj, key, min_items=1)
        size = self._position_size(self._value(obj, "positionSize", key), _join(key, "positionSize"))
        leverage = self._number(
            self._value(obj, "leverage", key, default=1.0), _join(key, "leverage"), _LEVERAGE
        )
        stop_ok, stop = self._offset(obj, "stopLoss", _STOP_LOSS)
        take_ok, take = self._offset(obj, "takeProfit", _TAKE_PROFIT)
        self._risk_warnings(obj, leverage, stop, take)
        if conditions is None or size is None or leverage is None or not (stop_ok and take_ok):
            return None
        return EntryRules(conditions, size, leverage, stop, take)

    def _position_size(self, value: object, path: str) -> PositionSize | None:
        obj = self._object(value, path, _SIZE_KEYS)
        if obj is None:
            return None
        kind = self._choice(self._value(obj, "type", path), _join(path, "type"), _SIZE_TYPES)
        limits = _PERCENT_SIZE if kind == PositionSizeType.PERCENTAGE else _FIXED_SIZE
        amount = self._number(self._value(obj, "value", path), _join(path, "value"), limits)
        if kind is None or amount is None:
            return None
        return PositionSize(PositionSizeType(kind), amount)

    def _offset(self, entry: dict[Any, Any], key: str, limits: _Range) -> tuple[bool, float | None]:
        """(valid, offset percent); an absent or null ``stopLoss``/``takeProfit`` is valid, ``None``."""
        if entry.get(key) is None:
            return True, None
        path = _join("z1_entry", key)
        obj = self._object(entry[key], path, _OFFSET_KEYS)
        if obj is None:
            return False, None
        number = self._number(self._value(obj, "offsetPercent", path), _join(path, "offsetPercent"), limits)
        return number is not None, number

    def _risk_warnings(
        self, entry: dict[Any, Any], leverage: float | None, stop: float | None, take: float | None
    ) -> None:
        if leverage is not None:
            self._leverage_warning(leverage)
        if leverage is not None and leverage > 1 and entry.get("stopLoss") is None:
            self._warn(
                "z1_entry.stopLoss",
                IssueCode.MISSING_STOP_LOSS,
                f"no stop loss with leverage {leverage:g}: a move against the position is not limited",
            )
        if stop is not None and take is not None and take <= stop:
            self._warn(
                "z1_entry.takeProfit.offsetPercent",
                IssueCode.TAKE_PROFIT_NOT_ABOVE_STOP_LOSS,
                f"take profit {take:g}% is not above stop loss {stop:g}%: each win is at most one loss",
            )

    def _leverage_warning(self, leverage: float) -> None:
        path = "z1_entry.leverage"
        if leverage > LEVERAGE_STRONG_WARNING:
            message = f"leverage {leverage:g} is very high: a {100 / leverage:.3g}% move wipes out the margin"
            self._warn(path, IssueCode.VERY_HIGH_LEVERAGE, message)
        elif leverage > LEVERAGE_WARNING:
            self._warn(
                path, IssueCode.HIGH_LEVERAGE, f"leverage {leverage:g} is high: losses grow as fast as gains"
            )

    def _cancel(self, doc: dict[Any, Any]) -> CancelRules | None:
        key = "o1_cancel"
        obj = self._object(self._value(doc, key, ""), key, _CANCEL_KEYS)
        if obj is None:
            return None
        conditions = self._conditions(obj, key, min_items=0)
        timeout = self._number(
            self._value(obj, "timeoutSeconds", key), _join(key, "timeoutSeconds"), _TIMEOUT
        )
        if conditions is None or timeout is None:
            return None
        return CancelRules(conditions, timeout)

    def _emergency(self, doc: dict[Any, Any]) -> EmergencyExit | None:
        key = "emergency_exit"
        obj = self._object(self._value(doc, key, ""), key, _EMERGENCY_KEYS)
        if obj is None:
            return None
        conditions = self._conditions(obj, key, min_items=0)
        cooldown = self._number(
            self._value(obj, "cooldownMinutes", key), _join(key, "cooldownMinutes"), _COOLDOWN
        )
        actions = self._unique(
            self._value(obj, "actions", key),
            _join(key, "actions"),
            MAX_ACTIONS,
            lambda item, path: self._choice(item, path, _ACTIONS),
        )
        if conditions is None or cooldown is None or actions is None:
            return None
        return EmergencyExit(conditions, cooldown, tuple(ExitAction(a) for a in actions))
