"""One wire style for everything the server emits (docs/PROTOCOL.md, "Wire style").

* **Times** are ISO 8601 strings in UTC with milliseconds (``2026-11-26T10:04:27.298Z``), in
  fields named ``timestamp`` or ending in ``_at``, ``_time`` or ``_until``; durations are numbers
  of seconds in fields ending in ``_seconds``.
* **Keys** are ``snake_case``. The one exception is a strategy document, echoed exactly as stored
  in the seed system's own format (``indicatorId``, ``positionSize``, ...).

The engine keeps times as epoch seconds (floats are cheap to compare and store); the gateway
turns them into the wire form at its edge with :func:`to_wire`: the stream bridge for every
published event, and the handlers and REST routes for replies that carry engine data. Message
types answered on the hot path (heartbeat) build ISO strings themselves and never pass through
here.
"""

from __future__ import annotations

import math
from typing import Any, Final

from tradewire.clock import iso_from_ms

TIME_SUFFIXES: Final = ("_at", "_time", "_until")
VERBATIM_KEYS: Final = frozenset({"document"})  # a stored strategy document, as the user wrote it


def is_time_key(key: str) -> bool:
    return key == "timestamp" or key.endswith(TIME_SUFFIXES)


def iso_time(seconds: float) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds; None for NaN or infinity."""
    if not math.isfinite(seconds):
        return None
    return iso_from_ms(round(seconds * 1000))


def to_wire(value: Any) -> Any:
    """``value`` with every epoch-seconds time field (by name, see above) as an ISO string.

    Dicts are copied, never changed in place (a published payload may be shared)."""
    if isinstance(value, dict):
        return {key: _field(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_wire(item) for item in value]
    return value


def _field(key: Any, item: Any) -> Any:
    if isinstance(key, str):
        if key in VERBATIM_KEYS:
            return item
        if is_time_key(key) and isinstance(item, int | float) and not isinstance(item, bool):
            return iso_time(float(item))
    return to_wire(item)
