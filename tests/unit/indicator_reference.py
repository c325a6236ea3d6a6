"""Batch reference computations for the streaming indicators, written from their definitions.

Each function takes whole series and returns one value (or ``None``) per step, recomputing every
step from the raw lists with plain loops and exact sums (:func:`math.fsum`): no running state
shared with :mod:`tradewire.engine.indicators`. Windows hold the ticks with ``t - w < ts <= t``;
a window is covered (warm) once ``ts[0] <= t - w``; ``p(s)`` is the price of the last tick with
``ts <= s``.
"""

from __future__ import annotations

from itertools import pairwise
from math import fsum

Series = list[float | None]


def _window(ts: list[float], i: int, w: float) -> range:
    """Indices j <= i with ts[i] - w < ts[j] <= ts[i] (scanning back from i)."""
    j = i
    while j > 0 and ts[j - 1] > ts[i] - w:
        j -= 1
    return range(j, i + 1)


def _as_of(ts: list[float], i: int, s: float) -> int:
    """Index of the last tick (up to i) with ts <= s; ts[0] <= s must hold."""
    j = i
    while ts[j] > s:
        j -= 1
    return j


def sma_bars(prices: list[float], period: int) -> Series:
    return [
        None if i + 1 < period else fsum(prices[i + 1 - period : i + 1]) / period for i in range(len(prices))
    ]


def sma_window(ts: list[float], prices: list[float], w: float) -> Series:
    out: Series = []
    for i in range(len(ts)):
        idx = _window(ts, i, w)
        out.append(fsum(prices[j] for j in idx) / len(idx) if ts[0] <= ts[i] - w else None)
    return out


def ema(prices: list[float], period: int) -> Series:
    alpha = 2 / (period + 1)
    out: Series = []
    prev = 0.0
    for i, price in enumerate(prices):
        if i + 1 < period:
            out.append(None)
            continue
        prev = fsum(prices[:period]) / period if i + 1 == period else alpha * price + (1 - alpha) * prev
        out.append(prev)
    return out


def rsi(prices: list[float], period: int) -> Series:
    gains = [max(b - a, 0.0) for a, b in pairwise(prices)]
    losses = [max(a - b, 0.0) for a, b in pairwise(prices)]
    out: Series = [None] * min(period, len(prices))
    if len(prices) <= period:
        return out
    avg_gain = fsum(gains[:period]) / period
    avg_loss = fsum(losses[:period]) / period
    for k in range(period, len(prices)):  # k: index of the price; change k-1
        if k > period:
            avg_gain = (avg_gain * (period - 1) + gains[k - 1]) / period
            avg_loss = (avg_loss * (period - 1) + losses[k - 1]) / period
        if avg_loss == 0:
            out.append(100.0 if avg_gain > 0 else 50.0)
        else:
            out.append(100 - 100 / (1 + avg_gain / avg_loss))
    return out


def price_velocity(ts: list[float], prices: list[float], w: float) -> Series:
    out: Series = []
    for i in range(len(ts)):
        if ts[0] > ts[i] - w:
            out.append(None)
            continue
        ref = prices[_as_of(ts, i, ts[i] - w)]
        out.append((prices[i] - ref) / ref * 100 / w)
    return out


def volume_surge_ratio(ts: list[float], volumes: list[float], short: float, long: float) -> Series:
    out: Series = []
    for i in range(len(ts)):
        if ts[0] > ts[i] - long:
            out.append(None)
            continue
        v_short = fsum(volumes[j] for j in _window(ts, i, short))
        v_long = fsum(volumes[j] for j in _window(ts, i, long))
        out.append(v_short / (v_long * short / long) if v_long else 0.0)
    return out


def pump_magnitude_pct(ts: list[float], prices: list[float], w: float) -> Series:
    out: Series = []
    for i in range(len(ts)):
        low = min(prices[j] for j in _window(ts, i, w))
        out.append((prices[i] - low) / low * 100 if ts[0] <= ts[i] - w else None)
    return out


def twpa(ts: list[float], prices: list[float], w: float) -> Series:
    out: Series = []
    for i in range(len(ts)):
        start, end = ts[i] - w, ts[i]
        if ts[0] > start:
            out.append(None)
            continue
        area = fsum(
            prices[j] * (min(ts[j + 1], end) - max(ts[j], start)) for j in range(_as_of(ts, i, start), i)
        )
        out.append(area / w)
    return out


def price_to_twpa_ratio(ts: list[float], prices: list[float], w: float) -> Series:
    return [None if t is None else p / t for p, t in zip(prices, twpa(ts, prices, w), strict=True)]


def spread_pct(bids: list[float | None], asks: list[float | None]) -> Series:
    return [
        None if bid is None or ask is None else (ask - bid) / ((ask + bid) / 2) * 100
        for bid, ask in zip(bids, asks, strict=True)
    ]
