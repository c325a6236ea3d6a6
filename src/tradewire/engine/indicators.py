"""Streaming indicators: O(1) amortised per tick, equal to a batch computation on the same data.

Each indicator is a small class with ``update(tick) -> float | None`` and a ``value`` attribute
(the last result, ``None`` until the indicator is warm). Strategies ask for indicators by registry
name and params (:data:`INDICATORS`, :func:`create_indicator`); an :class:`IndicatorBank` keeps one
shared, reference-counted instance per ``(symbol, key)`` and updates all of a symbol's indicators
per tick.

Conventions shared by every indicator:

* **Ticks per symbol arrive in non-decreasing ``ts``** (the market-data layer orders them). Equal
  timestamps are fine; an older ``ts`` is not rejected but yields unspecified values.
* **Bar indicators** (``period``) count ticks: each tick is one bar with ``price`` as its close.
* **Time windows** of ``W`` seconds ending at a tick with timestamp ``t`` hold the ticks with
  ``t - W < ts <= t`` (half-open, so consecutive windows tile time). A time-window indicator is
  *warm* once the stream covers a whole window, i.e. once the first tick seen has
  ``ts <= t - W``; before that it returns ``None``. Warm stays warm.
* **The price as of time s**, ``p(s)``, is the price of the last tick with ``ts <= s`` (a step
  function; used by ``price_velocity`` and ``twpa``).
* A division by a price or volume that is zero yields ``None`` (or the documented neutral value)
  instead of raising: a bad tick must not stop the engine loop.

Running sums over windows are updated by add/subtract, which drifts when large values leave the
window. Every window re-sums its contents exactly with :func:`math.fsum` after ``len(window) + 64``
evictions (amortised O(1)), so the error is bounded by about one window's worth of roundings
instead of growing with the stream; a volume window that empties resets to exactly ``0.0``
(zero-volume ticks are not stored). EMA and RSI forget old errors geometrically.

Performance (measured on the 2-core dev container, CPython 3.11, 10 ticks/s, default windows):
:meth:`IndicatorBank.update` for one symbol holding one instance of each of the ten shapes (SMA
by bars and by time, and one of every other indicator) costs ≈3.4 µs per tick; alone, each
update costs ≈50 ns (EMA, spread) to ≈500 ns (volume surge, two windows), and the bank adds
≈100 ns per indicator (bound-method call and one dict store). No indicator allocates per tick
beyond deque appends; a time window stores every tick inside it (two floats each), so memory grows
with tick rate × window length.

Errors::

    TradewireError
    └── IndicatorError (also a ValueError)   unknown indicator name or invalid params; ``.path``
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from math import fsum, inf
from operator import mul, sub
from types import MappingProxyType
from typing import Annotated, Any, Protocol, Self

import msgspec

from tradewire.engine.ticks import Tick
from tradewire.errors import TradewireError

__all__ = [
    "INDICATORS",
    "MAX_PERIOD",
    "MAX_WINDOW_SECONDS",
    "Ema",
    "EmaParams",
    "Indicator",
    "IndicatorBank",
    "IndicatorError",
    "IndicatorKey",
    "IndicatorSpec",
    "NoParams",
    "PriceToTwpaRatio",
    "PriceVelocity",
    "PumpMagnitude",
    "Rsi",
    "RsiParams",
    "SmaBars",
    "SmaParams",
    "SmaWindow",
    "SpreadPct",
    "Twpa",
    "VelocityParams",
    "VolumeSurgeParams",
    "VolumeSurgeRatio",
    "WindowParams",
    "check_params",
    "create_indicator",
    "describe_indicators",
    "indicator_key",
]

MAX_PERIOD = 100_000  # bars
MAX_WINDOW_SECONDS = 366 * 86_400.0  # one (leap) year: monthly/daily series still fit a window
_RESYNC_SLACK = 64  # extra evictions before an exact re-sum, so tiny windows don't re-sum every tick

IndicatorKey = tuple[object, ...]
"""``(name, (field, value), ...)`` with defaults filled in and unused (``None``) fields left out."""


class IndicatorError(TradewireError, ValueError):
    """An unknown indicator name or invalid params; ``path`` names the culprit (``params.period``)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __reduce__(self) -> tuple[type[IndicatorError], tuple[str, str]]:
        return type(self), (self.message, self.path)  # keep `path` across pickling


class Indicator(Protocol):
    """What the bank and strategies rely on: feed ticks in, read the value."""

    value: float | None  # the last result; None until warm

    def update(self, tick: Tick) -> float | None:
        """Consume one tick of the indicator's symbol and return the new ``value``."""
        ...


# --------------------------------------------------------------------------------------------------
# Bar indicators


class SmaBars:
    """Simple moving average of the last ``period`` prices.

    ``value = (p[k-period+1] + ... + p[k]) / period`` at the k-th tick; ``None`` for the first
    ``period - 1`` ticks.
    """

    __slots__ = ("_left", "_period", "_prices", "_sum", "value")

    def __init__(self, period: int) -> None:
        self._period = period
        self._prices: deque[float] = deque(maxlen=period)  # the last `period` prices
        self._sum = 0.0  # running sum of `_prices`
        self._left = period + _RESYNC_SLACK  # evictions until the next exact re-sum
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        price = tick.price
        prices = self._prices
        if len(prices) == self._period:
            self._sum += price - prices[0]
            prices.append(price)  # maxlen drops prices[0]
            self._left -= 1
            if not self._left:
                self._sum = fsum(prices)
                self._left = self._period + _RESYNC_SLACK
        else:
            prices.append(price)
            self._sum += price
            if len(prices) < self._period:
                return None
        self.value = value = self._sum / self._period
        return value


class Ema:
    """Exponential moving average with ``alpha = 2 / (period + 1)``, seeded by an SMA.

    ``None`` for the first ``period - 1`` prices; at the ``period``-th price the value is the
    simple mean of the first ``period`` prices; afterwards ``ema = ema + alpha * (price - ema)``
    (i.e. ``alpha * price + (1 - alpha) * ema``).
    """

    __slots__ = ("_alpha", "_count", "_period", "_sum", "value")

    def __init__(self, period: int) -> None:
        self._period = period
        self._alpha = 2.0 / (period + 1)
        self._count = 0  # prices seen while seeding
        self._sum = 0.0  # their sum
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        ema = self.value
        if ema is None:
            self._count += 1
            self._sum += tick.price
            if self._count < self._period:
                return None
            self.value = value = self._sum / self._period
            return value
        self.value = value = ema + self._alpha * (tick.price - ema)
        return value


class Rsi:
    """Relative strength index with Wilder's smoothing, 0–100.

    With changes ``d[i] = p[i] - p[i-1]``, gains ``g[i] = max(d[i], 0)`` and losses
    ``l[i] = max(-d[i], 0)``: the first averages (after ``period + 1`` prices) are the simple means
    of the first ``period`` gains and losses; afterwards
    ``avg = (avg * (period - 1) + x) / period``. ``value = 100 - 100 / (1 + avg_gain / avg_loss)``,
    computed as ``100 * avg_gain / (avg_gain + avg_loss)``: 100 when there are no losses, 0 when
    there are no gains, and 50 when the price did not move at all (both averages zero).
    """

    __slots__ = ("_count", "_gain", "_last", "_loss", "_period", "value")

    def __init__(self, period: int) -> None:
        self._period = period
        self._last = inf  # previous price; inf until the first tick
        self._count = 0  # changes seen while seeding
        self._gain = 0.0  # average gain (a sum while seeding)
        self._loss = 0.0  # average loss (a sum while seeding)
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        price = tick.price
        change = price - self._last
        self._last = price
        if change == -inf:  # the first price: no change yet
            return None
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        n = self._period
        if self._count < n:
            self._count += 1
            self._gain += gain
            self._loss += loss
            if self._count < n:
                return None
            self._gain /= n
            self._loss /= n
        else:
            self._gain = (self._gain * (n - 1) + gain) / n
            self._loss = (self._loss * (n - 1) + loss) / n
        total = self._gain + self._loss
        self.value = value = 100.0 * self._gain / total if total > 0.0 else 50.0
        return value


# --------------------------------------------------------------------------------------------------
# Time-window indicators


class SmaWindow:
    """Simple moving average of the prices of the ticks in the last ``window`` seconds.

    ``value = mean(p[i] for ticks with t - window < ts[i] <= t)``; ``None`` until warm (the first
    tick has ``ts <= t - window``).
    """

    __slots__ = ("_left", "_prices", "_start", "_sum", "_times", "_window", "value")

    def __init__(self, window: float) -> None:
        self._window = window
        self._times: deque[float] = deque()  # ts of the ticks in the window
        self._prices: deque[float] = deque()  # their prices
        self._sum = 0.0  # running sum of `_prices`
        self._left = _RESYNC_SLACK  # evictions until the next exact re-sum
        self._start = inf  # ts of the first tick
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        ts = tick.ts
        times = self._times
        prices = self._prices
        times.append(ts)
        prices.append(tick.price)
        self._sum += tick.price
        cutoff = ts - self._window
        if times[0] <= cutoff:  # the new tick has ts > cutoff, so the loop stops before it
            while times[0] <= cutoff:
                times.popleft()
                self._sum -= prices.popleft()
                self._left -= 1
            if self._left <= 0:
                self._sum = fsum(prices)
                self._left = len(prices) + _RESYNC_SLACK
        elif cutoff < self._start:
            self._start = min(self._start, ts)
            return None
        self.value = value = self._sum / len(prices)
        return value


class PriceVelocity:
    """Percent change per second over the last ``window`` seconds.

    ``value = (p(t) - p(t - window)) / p(t - window) * 100 / window`` where ``p(s)`` is the price
    of the last tick with ``ts <= s``. ``None`` until such a tick exists (warm) or when
    ``p(t - window)`` is not positive.
    """

    __slots__ = ("_prices", "_scale", "_times", "_window", "value")

    def __init__(self, window: float) -> None:
        self._window = window
        self._scale = 100.0 / window
        self._times: deque[float] = deque()  # ts of the ticks after the one giving p(t - window)
        self._prices: deque[float] = deque()  # their prices
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        times = self._times
        prices = self._prices
        times.append(tick.ts)
        prices.append(tick.price)
        cutoff = tick.ts - self._window
        if times[0] > cutoff:
            return None
        while times[1] <= cutoff:  # keep the last tick with ts <= cutoff at the left
            times.popleft()
            prices.popleft()
        ref = prices[0]
        if ref <= 0.0:
            self.value = None
            return None
        self.value = value = (tick.price - ref) / ref * self._scale
        return value


class VolumeSurgeRatio:
    """Volume in the short window over the average volume per short-window length in the long one.

    With ``V(w)`` the summed volume of the ticks with ``t - w < ts <= t``:
    ``value = V(short) / (V(long) * short / long)``. The long window includes the short one, so
    the value is 1.0 for a steady flow and ``long / short`` at most. 0.0 when ``V(long)`` is 0.
    ``None`` until warm over the long window. Volumes are expected to be ``>= 0``.
    """

    __slots__ = (
        "_left_l",
        "_left_s",
        "_long",
        "_scale",
        "_short",
        "_start",
        "_sum_l",
        "_sum_s",
        "_times_l",
        "_times_s",
        "_vols_l",
        "_vols_s",
        "value",
    )

    def __init__(self, short: float, long: float) -> None:
        self._short = short
        self._long = long
        self._scale = long / short
        # Each window keeps its own (ts, volume) deques of the ticks with volume != 0, a running
        # sum and an eviction budget until an exact re-sum.
        self._times_s: deque[float] = deque()
        self._vols_s: deque[float] = deque()
        self._times_l: deque[float] = deque()
        self._vols_l: deque[float] = deque()
        self._sum_s = 0.0
        self._sum_l = 0.0
        self._left_s = _RESYNC_SLACK
        self._left_l = _RESYNC_SLACK
        self._start = inf  # ts of the first tick
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        ts = tick.ts
        volume = tick.volume
        times_s = self._times_s
        times_l = self._times_l
        if volume:
            times_s.append(ts)
            self._vols_s.append(volume)
            self._sum_s += volume
            times_l.append(ts)
            self._vols_l.append(volume)
            self._sum_l += volume
        cutoff = ts - self._short
        while times_s and times_s[0] <= cutoff:
            times_s.popleft()
            self._sum_s -= self._vols_s.popleft()
            self._left_s -= 1
        cutoff = ts - self._long
        while times_l and times_l[0] <= cutoff:
            times_l.popleft()
            self._sum_l -= self._vols_l.popleft()
            self._left_l -= 1
        if not times_s or not times_l or self._left_s <= 0 or self._left_l <= 0:
            self._resync()
        if cutoff < self._start:
            self._start = min(self._start, ts)
            return None
        total = self._sum_l
        self.value = value = self._sum_s / total * self._scale if total > 0.0 else 0.0
        return value

    def _resync(self) -> None:
        """Zero an emptied window exactly; re-sum a window whose eviction budget ran out."""
        if not self._vols_s:
            self._sum_s = 0.0
        elif self._left_s <= 0:
            self._sum_s = fsum(self._vols_s)
            self._left_s = len(self._vols_s) + _RESYNC_SLACK
        if not self._vols_l:
            self._sum_l = 0.0
        elif self._left_l <= 0:
            self._sum_l = fsum(self._vols_l)
            self._left_l = len(self._vols_l) + _RESYNC_SLACK


class PumpMagnitude:
    """How far the price is above the lowest price of the last ``window`` seconds, in percent.

    ``low = min(p[i] for ticks with t - window < ts[i] <= t)`` (the current tick included, so the
    value is ``>= 0``); ``value = (p(t) - low) / low * 100``. ``None`` until warm or when ``low``
    is not positive. The window minimum is kept in a monotonic deque (amortised O(1)).
    """

    __slots__ = ("_prices", "_start", "_times", "_window", "value")

    def __init__(self, window: float) -> None:
        self._window = window
        self._times: deque[float] = deque()  # ts of the window-minimum candidates
        self._prices: deque[float] = deque()  # their prices, strictly increasing left to right
        self._start = inf  # ts of the first tick
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        ts = tick.ts
        price = tick.price
        times = self._times
        prices = self._prices
        while prices and prices[-1] >= price:
            prices.pop()
            times.pop()
        times.append(ts)
        prices.append(price)
        cutoff = ts - self._window
        while times[0] <= cutoff:  # stops at the new tick at the latest
            times.popleft()
            prices.popleft()
        if cutoff < self._start:
            self._start = min(self._start, ts)
            return None
        low = prices[0]
        if low <= 0.0:
            self.value = None
            return None
        self.value = value = (price - low) / low * 100.0
        return value


class Twpa:
    """Time-weighted average price over the last ``window`` seconds.

    ``value = (1 / window) * integral of p(s) ds over [t - window, t]``: each price weighted by
    how long it was the last price inside the window (so a tick's own price has weight 0 at the
    instant it arrives). ``None`` until warm (a tick with ``ts <= t - window`` exists).
    """

    __slots__ = ("_area", "_left", "_prices", "_times", "_window", "value")

    def __init__(self, window: float) -> None:
        self._window = window
        self._times: deque[float] = deque()  # ts of the ticks from the one giving p(t - window)
        self._prices: deque[float] = deque()  # their prices
        self._area = 0.0  # sum of prices[i] * (times[i+1] - times[i]) over the deque
        self._left = _RESYNC_SLACK  # evictions until the next exact re-sum
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        ts = tick.ts
        times = self._times
        prices = self._prices
        area = self._area
        if times:
            area += prices[-1] * (ts - times[-1])
        times.append(ts)
        prices.append(tick.price)
        cutoff = ts - self._window
        start = times[0]
        if start > cutoff:
            self._area = area
            return None
        # times[-1] = ts > cutoff bounds the loop; `start` tracks times[0]
        while (after := times[1]) <= cutoff:
            area -= prices.popleft() * (after - start)
            times.popleft()
            start = after
            self._left -= 1
        if self._left <= 0:
            area = fsum(map(mul, prices, map(sub, islice(times, 1, None), times)))
            self._left = len(times) + _RESYNC_SLACK
        self._area = area
        self.value = value = (area - prices[0] * (cutoff - start)) / self._window
        return value


class PriceToTwpaRatio:
    """``price / twpa(window)`` for the current tick; ``None`` while the TWPA is ``None`` or 0."""

    __slots__ = ("_twpa", "value")

    def __init__(self, window: float) -> None:
        self._twpa = Twpa(window)
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        twpa = self._twpa.update(tick)
        if not twpa:
            self.value = None
            return None
        self.value = value = tick.price / twpa
        return value


class SpreadPct:
    """Bid/ask spread as a percent of the mid price: ``(ask - bid) / ((ask + bid) / 2) * 100``.

    Computed from the current tick only. ``None`` when the tick has no bid or no ask, or the mid
    is not positive; negative for a crossed book.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float | None = None

    def update(self, tick: Tick) -> float | None:
        bid = tick.bid
        ask = tick.ask
        if bid is None or ask is None or bid + ask <= 0.0:
            self.value = None
            return None
        self.value = value = (ask - bid) / (ask + bid) * 200.0
        return value


# --------------------------------------------------------------------------------------------------
# Params and registry

_Period = Annotated[int, msgspec.Meta(ge=1, le=MAX_PERIOD, description="number of ticks (bars)")]
_Window = Annotated[float, msgspec.Meta(gt=0, le=MAX_WINDOW_SECONDS, description="window in seconds")]


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    def normalised(self) -> Self:
        """Fill defaults that depend on other fields; raise :class:`IndicatorError` if inconsistent."""
        return self


class NoParams(_Params, frozen=True):
    """No parameters."""


class SmaParams(_Params, frozen=True):
    """Either ``period`` (bars) or ``window_seconds`` (time); ``period`` 20 when neither is given."""

    period: _Period | None = None
    window_seconds: _Window | None = None

    def normalised(self) -> Self:
        if self.period is not None and self.window_seconds is not None:
            raise IndicatorError(
                "sma: give either period or window_seconds, not both (at params.window_seconds)",
                "params.window_seconds",
            )
        if self.period is None and self.window_seconds is None:
            return msgspec.structs.replace(self, period=20)
        return self


class EmaParams(_Params, frozen=True):
    """EMA over ``period`` prices."""

    period: _Period = 20


class RsiParams(_Params, frozen=True):
    """RSI over ``period`` price changes."""

    period: Annotated[int, msgspec.Meta(ge=1, le=1000, description="number of price changes")] = 14


class WindowParams(_Params, frozen=True):
    """One time window."""

    window_seconds: _Window = 300.0


class VelocityParams(_Params, frozen=True):
    """One time window (shorter default: velocity is a fast signal)."""

    window_seconds: _Window = 60.0


class VolumeSurgeParams(_Params, frozen=True):
    """A short window compared with a strictly longer one."""

    short_window_seconds: _Window = 60.0
    long_window_seconds: _Window = 3600.0

    def normalised(self) -> Self:
        if self.long_window_seconds <= self.short_window_seconds:
            raise IndicatorError(
                "volume_surge_ratio: long_window_seconds must be greater than short_window_seconds "
                "(at params.long_window_seconds)",
                "params.long_window_seconds",
            )
        return self


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """A registry entry: the name strategies use, what it computes, its params and a factory."""

    name: str
    description: str
    params_type: type[_Params]
    factory: Callable[[Any], Indicator]  # called with a validated, normalised `params_type`


def _make_sma(p: SmaParams) -> Indicator:
    if p.window_seconds is not None:
        return SmaWindow(p.window_seconds)
    return SmaBars(p.period or 20)


def _make_surge(p: VolumeSurgeParams) -> Indicator:
    return VolumeSurgeRatio(p.short_window_seconds, p.long_window_seconds)


_SPECS = (
    IndicatorSpec(
        "sma",
        "Simple moving average: the mean of the last `period` prices, or of the prices of the ticks "
        "with t - window_seconds < ts <= t. None until `period` prices / a full window were seen.",
        SmaParams,
        _make_sma,
    ),
    IndicatorSpec(
        "ema",
        "Exponential moving average, alpha = 2 / (period + 1), seeded with the mean of the first "
        "`period` prices; then ema += alpha * (price - ema). None before the `period`-th price.",
        EmaParams,
        lambda p: Ema(p.period),
    ),
    IndicatorSpec(
        "rsi",
        "Relative strength index (0-100) with Wilder's smoothing: first average gain/loss = mean of "
        "the first `period` changes, then avg = (avg * (period - 1) + x) / period; value = "
        "100 * avg_gain / (avg_gain + avg_loss), 50 when both are 0. None before period + 1 prices.",
        RsiParams,
        lambda p: Rsi(p.period),
    ),
    IndicatorSpec(
        "price_velocity",
        "Percent change per second: (price - p0) / p0 * 100 / window_seconds, p0 = the price of the "
        "last tick with ts <= t - window_seconds. None until such a tick exists.",
        VelocityParams,
        lambda p: PriceVelocity(p.window_seconds),
    ),
    IndicatorSpec(
        "volume_surge_ratio",
        "V(short) / (V(long) * short / long), V(w) = summed volume of the ticks with "
        "t - w < ts <= t; 1.0 for a steady flow, 0.0 with no volume. None until the long window is "
        "covered.",
        VolumeSurgeParams,
        _make_surge,
    ),
    IndicatorSpec(
        "pump_magnitude_pct",
        "(price - low) / low * 100, low = the lowest price of the ticks with "
        "t - window_seconds < ts <= t. None until the window is covered.",
        WindowParams,
        lambda p: PumpMagnitude(p.window_seconds),
    ),
    IndicatorSpec(
        "spread_pct",
        "(ask - bid) / ((ask + bid) / 2) * 100 of the current tick; None without a bid and an ask.",
        NoParams,
        lambda _: SpreadPct(),
    ),
    IndicatorSpec(
        "twpa",
        "Time-weighted average price over [t - window_seconds, t]: each price weighted by how long "
        "it was the last price within the window. None until the window is covered.",
        WindowParams,
        lambda p: Twpa(p.window_seconds),
    ),
    IndicatorSpec(
        "price_to_twpa_ratio",
        "price / twpa(window_seconds); None while the TWPA is None or 0.",
        WindowParams,
        lambda p: PriceToTwpaRatio(p.window_seconds),
    ),
)

INDICATORS: dict[str, IndicatorSpec] = {spec.name: spec for spec in _SPECS}
"""Every indicator a strategy can name; keys are the names used in strategy documents."""


def _parse(name: str, params: dict[str, Any] | None) -> tuple[IndicatorSpec, _Params]:
    spec = INDICATORS.get(name) if isinstance(name, str) else None
    if spec is None:
        known = ", ".join(INDICATORS)
        raise IndicatorError(f"unknown indicator {name!r} (known: {known})", "name")
    try:
        parsed = msgspec.convert({} if params is None else params, spec.params_type)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at ")
        path = "params" + where.strip("`").removeprefix("$")
        unknown = reason.removeprefix("Object contains unknown field ")
        if unknown != reason:
            path += "." + unknown.strip("`")
        raise IndicatorError(f"{name}: {reason} (at {path})", path) from exc
    return spec, parsed.normalised()


def _key(name: str, params: _Params) -> IndicatorKey:
    fields = msgspec.structs.asdict(params).items()
    return (name, *((field, value) for field, value in fields if value is not None))


def indicator_key(name: str, params: dict[str, Any] | None = None) -> IndicatorKey:
    """The normalised key of ``name`` with ``params`` (defaults filled in, validated).

    Two requests for the same indicator get equal keys however the params were spelt
    (``{}`` vs the defaults, ``60`` vs ``60.0``), so they share one instance in a bank.
    """
    spec, parsed = _parse(name, params)
    return _key(spec.name, parsed)


def check_params(name: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """The first problem of ``params`` for indicator ``name`` as ``(path below params, message)``,
    or None (the strategy validator's ``check_params``)."""
    try:
        indicator_key(name, params)
    except IndicatorError as exc:
        return exc.path.removeprefix("params").lstrip("."), exc.message
    return None


def create_indicator(name: str, params: dict[str, Any] | None = None) -> Indicator:
    """A new indicator instance; :class:`IndicatorError` on an unknown name or bad params."""
    spec, parsed = _parse(name, params)
    return spec.factory(parsed)


def describe_indicators() -> list[dict[str, Any]]:
    """Name, description and JSON schema of the params of every indicator (for ``query``)."""
    out = []
    for spec in _SPECS:
        _, components = msgspec.json.schema_components((spec.params_type,))
        schema = components[spec.params_type.__name__]
        out.append({"name": spec.name, "description": spec.description, "params": schema})
    return out


# --------------------------------------------------------------------------------------------------
# Bank

_NO_VALUES: Mapping[IndicatorKey, float | None] = MappingProxyType({})


class _SymbolIndicators:
    """The indicators of one symbol."""

    __slots__ = ("indicators", "refs", "updaters", "values")

    def __init__(self) -> None:
        self.indicators: dict[IndicatorKey, Indicator] = {}
        self.refs: dict[IndicatorKey, int] = {}  # holders per key; an entry is dropped at 0
        self.values: dict[IndicatorKey, float | None] = {}  # the last value per key, in place
        # (key, bound update) pairs, rebuilt on ensure/release so the tick loop does no lookups
        self.updaters: tuple[tuple[IndicatorKey, Callable[[Tick], float | None]], ...] = ()

    def rebuild(self) -> None:
        self.updaters = tuple((key, ind.update) for key, ind in self.indicators.items())


class IndicatorBank:
    """Shared, reference-counted indicator instances per symbol, updated together per tick.

    ``ensure`` creates an instance on first use and counts holders; ``release`` drops it when the
    last holder lets go (a later ``ensure`` starts a fresh, cold instance). ``update(tick)``
    updates every indicator of ``tick.symbol`` in ``ensure`` order and writes the values into one
    dict per symbol, which it returns: the same object every tick while the symbol has
    indicators, so callers may keep it, but must not modify it. A newly ensured indicator sees
    ticks from the next ``update`` on. Not thread-safe: one engine loop owns a bank.
    """

    __slots__ = ("_symbols",)

    def __init__(self) -> None:
        self._symbols: dict[str, _SymbolIndicators] = {}

    def ensure(self, symbol: str, name: str, params: dict[str, Any] | None = None) -> IndicatorKey:
        """Hold the indicator ``name(params)`` of ``symbol``, creating it if new; returns its key."""
        spec, parsed = _parse(name, params)
        key = _key(spec.name, parsed)
        entry = self._symbols.get(symbol)
        if entry is None:
            entry = self._symbols[symbol] = _SymbolIndicators()
        if key in entry.refs:
            entry.refs[key] += 1
            return key
        entry.indicators[key] = spec.factory(parsed)
        entry.refs[key] = 1
        entry.values[key] = None
        entry.rebuild()
        return key

    def release(self, symbol: str, key: IndicatorKey) -> None:
        """Let go of one hold on ``key``; the instance goes with the last. ``KeyError`` if not held."""
        entry = self._symbols.get(symbol)
        if entry is None or key not in entry.refs:
            raise KeyError(f"{symbol}: indicator {key!r} is not held")
        entry.refs[key] -= 1
        if entry.refs[key]:
            return
        del entry.refs[key], entry.indicators[key], entry.values[key]
        if entry.refs:
            entry.rebuild()
        else:
            del self._symbols[symbol]

    def update(self, tick: Tick) -> Mapping[IndicatorKey, float | None]:
        """Feed ``tick`` to every indicator of its symbol; return that symbol's values."""
        entry = self._symbols.get(tick.symbol)
        if entry is None:
            return _NO_VALUES
        values = entry.values
        for key, update in entry.updaters:
            values[key] = update(tick)
        return values

    def values(self, symbol: str) -> Mapping[IndicatorKey, float | None]:
        """The last values of ``symbol``'s indicators (the dict ``update`` fills)."""
        entry = self._symbols.get(symbol)
        return _NO_VALUES if entry is None else entry.values

    def get(self, symbol: str, key: IndicatorKey) -> Indicator:
        """The shared instance (its ``value`` is the fastest read); ``KeyError`` if not held."""
        return self._symbols[symbol].indicators[key]

    def refcount(self, symbol: str, key: IndicatorKey) -> int:
        """How many holders ``key`` of ``symbol`` has (0 when none)."""
        entry = self._symbols.get(symbol)
        return 0 if entry is None else entry.refs.get(key, 0)
