"""Performance metrics of a session, with backtesting.py's definitions (``backtesting/_stats.py``).

Inputs: the equity curve (one point per distinct bar time, in account currency) with its times
(epoch seconds), and the closed trades. Every definition below is backtesting.py's
``compute_stats`` with ``risk_free_rate = 0``, so a user can check a tradewire backtest against
the tool they know; a test computes both on the same data. Percentages are in percent, fractions
are not used in the output. A value that is undefined (no trades, a zero denominator) is ``None``.

* ``return_pct`` = (E_last − E_first) / E_first × 100.
* Drawdown at i: ``dd_i = 1 − E_i / max(E_0..E_i)``; ``max_drawdown_pct`` = −max(dd) × 100
  (negative, as backtesting.py prints it). Drawdown periods run between consecutive points where
  dd = 0 (and the last point); ``avg_drawdown_pct`` is −mean of their peaks × 100, durations in
  seconds.
* Periodic returns: the equity's last value per calendar day (per week, month or year when the
  data's median spacing of the last 100 points is 7, 31 or 365 days), then percent changes.
  ``N`` periods per year: 52, 12, 1, or 365 when weekends trade (> 2/7 × 0.6 of points fall on
  weekends) else 252. ``g`` = geometric mean of the returns (0 if any return ≤ −100 %).
* ``return_ann_pct`` = ((1 + g)^N − 1) × 100; ``volatility_ann_pct`` =
  √((var(r) + (1 + g)²)^N − (1 + g)^(2N)) × 100 (sample variance); ``cagr_pct`` from calendar
  time (365.25-day years).
* ``sharpe`` = return_ann / volatility_ann; ``sortino`` = annual return / (√mean(min(r, 0)²) × √N);
  ``calmar`` = annual return / max drawdown (both as fractions).
* Trades: ``win_rate_pct`` (P&L > 0), ``best/worst_trade_pct``, ``avg_trade_pct`` (geometric
  mean of trade returns), ``profit_factor`` = Σ positive returns / |Σ negative returns| (of the
  trades' percentage returns, as backtesting.py), ``expectancy_pct`` (arithmetic mean return),
  ``sqn`` = √n × mean(P&L) / stdev(P&L) (Van Tharp), ``kelly``, durations in seconds.
* ``exposure_pct``: share of equity points at which a (closed) trade was open, its entry and exit
  points included.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from tradewire.engine.broker import Trade

DAY = 86_400.0
_NAN = math.nan


def _num(value: float) -> float | None:
    """JSON-safe: NaN and infinities become None."""
    return value if math.isfinite(value) else None


def _geometric_mean(returns: Sequence[float]) -> float:
    if not returns:
        return _NAN
    if any(1 + r <= 0 for r in returns):
        return 0.0
    return math.exp(math.fsum(math.log1p(r) for r in returns) / len(returns)) - 1


def _divide(numerator: float, denominator: float) -> float:
    """numpy's float division: x/0 is ±inf, 0/0 and NaN operands are NaN."""
    if math.isnan(numerator) or math.isnan(denominator):
        return _NAN
    if denominator == 0:
        return _NAN if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / denominator


def _power(base: float, exponent: float) -> float:
    """numpy's ``**`` on floats: overflow is ``inf``, not an exception."""
    try:
        return float(base**exponent)
    except OverflowError:
        return math.inf


def _epoch_day(ts: float) -> int:
    return math.floor(ts / DAY)


def _period_key(freq_days: int) -> Callable[[float], object]:
    """The resampling bucket of a time: calendar day, week ending Sunday, month or year (UTC)."""
    if freq_days == 7:
        return lambda ts: _epoch_day(ts) + 6 - (_epoch_day(ts) + 3) % 7  # 1970-01-01 was a Thursday
    if freq_days == 31:

        def month(ts: float) -> object:
            moment = datetime.fromtimestamp(ts, UTC)
            return (moment.year, moment.month)

        return month
    if freq_days == 365:
        return lambda ts: datetime.fromtimestamp(ts, UTC).year
    return _epoch_day


def periodic_returns(equity: Sequence[float], times: Sequence[float]) -> tuple[list[float], int]:
    """The equity's returns per period and the number of periods per year (see the module doc)."""
    if len(times) < 2:
        return [], 252
    tail = times[-100:]
    freq_days = math.floor(statistics.median(b - a for a, b in itertools.pairwise(tail)) / DAY)
    weekend = sum(1 for ts in times if (_epoch_day(ts) + 3) % 7 >= 5) / len(times)
    per_year = {7: 52, 31: 12, 365: 1}.get(freq_days, 365 if weekend > 2 / 7 * 0.6 else 252)
    key = _period_key(freq_days)
    lasts: list[float] = []
    current: object = None
    for ts, value in zip(times, equity, strict=True):
        bucket = key(ts)
        if bucket != current or not lasts:
            lasts.append(value)
            current = bucket
        else:
            lasts[-1] = value
    returns = [b / a - 1 if a else _NAN for a, b in itertools.pairwise(lasts)]
    return [r for r in returns if not math.isnan(r)], per_year


def drawdowns(equity: Sequence[float], times: Sequence[float]) -> tuple[float, list[float], list[float]]:
    """Max drawdown (fraction), and each drawdown period's peak (fraction) and duration (s)."""
    peak = -math.inf
    dd: list[float] = []
    for value in equity:
        peak = max(peak, value)
        dd.append(1 - value / peak if peak else 0.0)
    zeros = [i for i, d in enumerate(dd) if d == 0]
    if not zeros or zeros[-1] != len(dd) - 1:
        zeros.append(len(dd) - 1)
    peaks: list[float] = []
    durations: list[float] = []
    for prev, cur in itertools.pairwise(zeros):
        if cur > prev + 1:
            peaks.append(max(dd[prev : cur + 1]))
            durations.append(times[cur] - times[prev])
    return (max(dd) if dd else _NAN), peaks, durations


def _exposure(trades: Sequence[Trade], points: int) -> float:
    held = bytearray(points)
    for trade in trades:
        low, high = trade.entry_index, min(trade.exit_index + 1, points)
        if high > low:
            held[low:high] = b"\x01" * (high - low)
    return sum(held) / points * 100 if points else _NAN


def compute_metrics(
    equity: Sequence[float],
    times: Sequence[float],
    trades: Sequence[Trade],
    buy_and_hold_pct: float | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring, JSON-ready (``None`` where undefined)."""
    if not equity:
        raise ValueError("no equity points: the session saw no data")
    first, last = equity[0], equity[-1]
    returns, per_year = periodic_returns(equity, times)
    g = _geometric_mean(returns)
    annual = _power(1 + g, per_year) - 1
    variance = statistics.variance(returns) if len(returns) > 1 else _NAN
    spread = _power(variance + (1 + g) ** 2, per_year) - _power(1 + g, 2 * per_year)
    volatility = math.sqrt(spread) if spread >= 0 else _NAN  # NaN in, NaN out (as numpy)
    max_dd, dd_peaks, dd_durations = drawdowns(equity, times)
    years = (times[-1] - times[0]) / DAY / 365.25
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns)) if returns else _NAN
    out: dict[str, Any] = {
        "start_time": times[0],
        "end_time": times[-1],
        "duration_seconds": times[-1] - times[0],
        "equity_start": first,
        "equity_final": last,
        "equity_peak": max(equity),
        "return_pct": (last - first) / first * 100,
        "buy_and_hold_return_pct": buy_and_hold_pct,
        "return_ann_pct": _num(annual * 100),
        "volatility_ann_pct": _num(volatility * 100),
        "cagr_pct": _num((_power(last / first, 1 / years) - 1) * 100) if years and last > 0 else None,
        "sharpe": _num(_divide(annual * 100, volatility * 100 or _NAN)),
        "sortino": _num(_divide(annual, downside * math.sqrt(per_year))),
        "calmar": _num(_divide(annual, max_dd or _NAN)),
        "max_drawdown_pct": _num(-max_dd * 100),
        "avg_drawdown_pct": _num(-statistics.fmean(dd_peaks) * 100) if dd_peaks else None,
        "max_drawdown_duration_seconds": max(dd_durations) if dd_durations else None,
        "avg_drawdown_duration_seconds": statistics.fmean(dd_durations) if dd_durations else None,
        "exposure_pct": _num(_exposure(trades, len(equity))),
        "commissions": math.fsum(t.fees for t in trades),
    }
    out.update(trade_metrics(trades))
    return out


def trade_metrics(trades: Sequence[Trade]) -> dict[str, Any]:
    """The metrics of a list of closed trades (also used per strategy and per symbol)."""
    n = len(trades)
    pnl = [t.pnl for t in trades]
    returns = [t.return_pct / 100 for t in trades]
    durations = [t.exit_at - t.entry_at for t in trades]
    if not n:
        return {
            "trades": 0,
            "pnl": 0.0,
            "win_rate_pct": None,
            "best_trade_pct": None,
            "worst_trade_pct": None,
            "avg_trade_pct": None,
            "max_trade_duration_seconds": None,
            "avg_trade_duration_seconds": None,
            "profit_factor": None,
            "expectancy_pct": None,
            "sqn": None,
            "kelly": None,
        }
    win_rate = sum(1 for p in pnl if p > 0) / n
    wins = [p for p in pnl if p > 0]
    losses = [p for p in pnl if p < 0]
    stdev = statistics.stdev(pnl) if n > 1 else _NAN
    mean_pnl = statistics.fmean(pnl)
    gain = math.fsum(r for r in returns if r > 0)
    loss = abs(math.fsum(r for r in returns if r < 0))
    payoff = _divide(statistics.fmean(wins) if wins else _NAN, -statistics.fmean(losses) if losses else _NAN)
    return {
        "trades": n,
        "pnl": math.fsum(pnl),
        "win_rate_pct": win_rate * 100,
        "best_trade_pct": max(returns) * 100,
        "worst_trade_pct": min(returns) * 100,
        "avg_trade_pct": _num(_geometric_mean(returns) * 100),
        "max_trade_duration_seconds": max(durations),
        "avg_trade_duration_seconds": statistics.fmean(durations),
        "profit_factor": _num(_divide(gain, loss or _NAN)),
        "expectancy_pct": statistics.fmean(returns) * 100,
        "sqn": _num(_divide(math.sqrt(n) * mean_pnl, stdev or _NAN)),
        "kelly": _num(win_rate - _divide(1 - win_rate, payoff)),
    }
