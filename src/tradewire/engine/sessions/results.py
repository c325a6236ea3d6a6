"""Stored results: one canonical JSON document plus the equity curve as packed floats.

Canonical = sorted keys, orjson's shortest float repr, no wall-clock or session-id fields, so the
same bars and settings give byte-identical bytes and the same ``sha256`` (the determinism test
compares them). The equity curve is kept whole (float64 times, then float64 values) for the CSV
and JSON exports; replies over WebSocket get a bounded, shape-preserving sample.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from typing import Any

import orjson

HEADLINE = (
    "return_pct",
    "return_ann_pct",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown_pct",
    "win_rate_pct",
    "profit_factor",
    "trades",
    "equity_final",
    "exposure_pct",
    "sqn",
)


def pack(results: dict[str, Any], times: list[float], equity: list[float]) -> tuple[bytes, bytes, str]:
    """``(document, equity blob, sha256)`` of a results document and its equity curve."""
    document = orjson.dumps(results, option=orjson.OPT_SORT_KEYS)
    blob = array("d", times).tobytes() + array("d", equity).tobytes()
    return document, blob, hashlib.sha256(document + blob).hexdigest()


def unpack_equity(blob: bytes) -> tuple[list[float], list[float]]:
    values = array("d")
    values.frombytes(blob)
    half = len(values) // 2
    return values[:half].tolist(), values[half:].tolist()


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The few metrics a session list shows."""
    metrics = results.get("metrics") or {}
    return {key: metrics.get(key) for key in HEADLINE} | {"end_reason": results.get("end_reason")}


def sample(times: list[float], values: list[float], max_points: int) -> list[list[float]]:
    """At most ``max_points`` ``[time, equity]`` pairs keeping each bucket's low and high (so
    drawdowns stay visible), first and last points included."""
    n = len(times)
    if n <= max_points:
        return [[t, v] for t, v in zip(times, values, strict=True)]
    size = math.ceil(n / max(1, max_points // 2))
    out: list[list[float]] = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        low = min(range(start, stop), key=values.__getitem__)
        high = max(range(start, stop), key=values.__getitem__)
        for i in sorted({low, high}):
            out.append([times[i], values[i]])
    if out[0][0] != times[0]:
        out.insert(0, [times[0], values[0]])
    if out[-1][0] != times[-1]:
        out.append([times[-1], values[-1]])
    return out
