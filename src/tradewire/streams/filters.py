"""Subscription filters: parsed once from ``params``, then applied to every message cheaply.

The symbol filter is applied by the subscription index (a publish only visits subscribers of its
symbol); :meth:`StreamFilter.matches` checks the rest. Unknown keys are rejected so a typo
(``symbol`` for ``symbols``) is a ``validation_error``, not a silent "everything".

Session streams are private: on streams whose catalog entry is ``owner_scoped`` a non-admin
subscriber's filter also requires ``data.owner`` to be absent (live signals) or the subscriber
(:func:`parse_filter`'s ``owner``), so one user never sees another's orders or results. (An earlier
``min_confidence`` filter was dropped: signals carry no confidence, and a filter that can never
match a real signal is worse than none.)
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tradewire.errors import RequestError
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import Symbol, Text64

_Names = Annotated[list[Text64], msgspec.Meta(max_length=50)]


class FilterParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``params`` of a ``subscribe`` message."""

    symbols: Annotated[list[Symbol], msgspec.Meta(max_length=500)] | None = None
    exclude_symbols: Annotated[list[Symbol], msgspec.Meta(max_length=500)] | None = None
    indicator_types: _Names | None = None
    signal_types: _Names | None = None
    session_id: Text64 | None = None
    strategy_name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    latest: bool = False  # send the last message per matching symbol after `subscribed`


class StreamFilter:
    """Compiled filter: the symbol set for the index, the other checks as a tuple."""

    __slots__ = ("_checks", "checks", "latest", "owner", "params", "symbols")

    def __init__(self, params: FilterParams, owner: str | None = None) -> None:
        self.params = params
        self.owner = owner  # only this user's (or owner-less) messages pass; None: no such check
        self.symbols: frozenset[str] | None = frozenset(params.symbols) if params.symbols else None
        self.latest = params.latest
        checks: list[tuple[str, Any]] = []
        if params.exclude_symbols:
            checks.append(("!symbol", frozenset(params.exclude_symbols)))
        if params.indicator_types:
            checks.append(("indicator_type", frozenset(params.indicator_types)))
        if params.signal_types:
            checks.append(("signal_type", frozenset(params.signal_types)))
        if params.session_id is not None:
            checks.append(("session_id", frozenset((params.session_id,))))
        if params.strategy_name is not None:
            checks.append(("strategy_name", frozenset((params.strategy_name,))))
        if owner is not None:
            checks.append(("owner", frozenset((None, owner))))
        self._checks = tuple(checks)
        self.checks = bool(checks)  # False: everything passes (publish skips matches())

    @property
    def weight(self) -> int:
        """How many subscriptions this filter counts for against the per-client limit."""
        return len(self.symbols) if self.symbols else 1

    def matches(self, data: dict[str, Any]) -> bool:
        """Whether ``data`` passes every non-symbol check (the index did the symbol one)."""
        for key, expected in self._checks:
            if key == "!symbol":
                if data.get("symbol") in expected:
                    return False
            elif data.get(key) not in expected:
                return False
        return True

    def params_dict(self) -> dict[str, Any]:
        """The filter as ``params`` again (saved with a session, parsed back on restore)."""
        return msgspec.to_builtins(self.params)  # type: ignore[no-any-return]

    def describe(self) -> dict[str, Any]:
        """The effective filter, echoed in the ``subscribed`` reply."""
        return {k: v for k, v in msgspec.structs.asdict(self.params).items() if v not in (None, False)}


def parse_filter(params: dict[str, Any], owner: str | None = None) -> StreamFilter:
    """Validate ``params`` into a :class:`StreamFilter` (``validation_error`` with a path);
    ``owner`` restricts it to that user's messages (see the module docstring)."""
    try:
        return StreamFilter(msgspec.convert(params, FilterParams), owner)
    except msgspec.ValidationError as exc:
        reason, _, path = str(exc).partition(" - at ")
        json_path = "$.params" + path.strip("`").removeprefix("$")
        raise RequestError(
            ErrorCode.VALIDATION_ERROR, reason, {"path": json_path, "reason": reason[:200]}
        ) from exc
