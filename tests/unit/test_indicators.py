"""Streaming indicators: equal to batch references on the sample data, registry, bank, bounds."""

from __future__ import annotations

import csv
import math
import pickle
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any

import msgspec
import pytest

from tests.unit import indicator_reference as ref
from tradewire.engine.indicators import (
    INDICATORS,
    Indicator,
    IndicatorBank,
    IndicatorError,
    SmaBars,
    SmaWindow,
    create_indicator,
    describe_indicators,
    indicator_key,
)
from tradewire.engine.ticks import Tick
from tradewire.errors import TradewireError

REL = 1e-9
DAY = 86_400.0


@dataclass(frozen=True)
class Series:
    """One sample data set as columns; windows are multiples of ``step`` seconds."""

    name: str
    step: float
    ts: list[float]
    prices: list[float]
    volumes: list[float]
    bids: list[float | None]
    asks: list[float | None]

    def ticks(self) -> list[Tick]:
        rows = zip(self.ts, self.prices, self.volumes, self.bids, self.asks, strict=True)
        return [Tick(self.name, p, v, t, b, a) for t, p, v, b, a in rows]


@cache
def load(name: str, step: float) -> Series:
    """Close as price, Volume as volume, the date as ts; bid/ask = Low/High, no book every 7th row."""
    text = (files("tradewire.engine") / "sample_data" / f"{name}.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    ts = [datetime.fromisoformat(r[""]).replace(tzinfo=UTC).timestamp() for r in rows]
    bids = [None if i % 7 == 3 else float(r["Low"]) for i, r in enumerate(rows)]
    asks = [None if i % 7 == 3 else float(r["High"]) for i, r in enumerate(rows)]
    prices = [float(r["Close"]) for r in rows]
    return Series(name, step, ts, prices, [float(r["Volume"]) for r in rows], bids, asks)


# window unit per data set: about one bar (BTCUSD: 9 days so that 40 units fit the 366-day maximum)
DATASETS = {"BTCUSD": 9 * DAY, "EURUSD": 3600.0, "GOOG": DAY}

Reference = Callable[[Series], list[float | None]]

# (name, params as a function of the bar length, batch reference)
CASES: list[tuple[str, Callable[[float], dict[str, Any]], Reference]] = [
    ("sma", lambda s: {"period": 1}, lambda d: ref.sma_bars(d.prices, 1)),
    ("sma", lambda s: {"period": 10}, lambda d: ref.sma_bars(d.prices, 10)),
    ("sma", lambda s: {"window_seconds": 5 * s}, lambda d: ref.sma_window(d.ts, d.prices, 5 * d.step)),
    ("sma", lambda s: {"window_seconds": 40 * s}, lambda d: ref.sma_window(d.ts, d.prices, 40 * d.step)),
    ("ema", lambda s: {"period": 1}, lambda d: ref.ema(d.prices, 1)),
    ("ema", lambda s: {"period": 12}, lambda d: ref.ema(d.prices, 12)),
    ("rsi", lambda s: {}, lambda d: ref.rsi(d.prices, 14)),
    ("rsi", lambda s: {"period": 3}, lambda d: ref.rsi(d.prices, 3)),
    (
        "price_velocity",
        lambda s: {"window_seconds": 3 * s},
        lambda d: ref.price_velocity(d.ts, d.prices, 3 * d.step),
    ),
    (
        "price_velocity",
        lambda s: {"window_seconds": 0.5 * s},
        lambda d: ref.price_velocity(d.ts, d.prices, 0.5 * d.step),
    ),
    (
        "volume_surge_ratio",
        lambda s: {"short_window_seconds": 3 * s, "long_window_seconds": 30 * s},
        lambda d: ref.volume_surge_ratio(d.ts, d.volumes, 3 * d.step, 30 * d.step),
    ),
    (
        "pump_magnitude_pct",
        lambda s: {"window_seconds": 10 * s},
        lambda d: ref.pump_magnitude_pct(d.ts, d.prices, 10 * d.step),
    ),
    ("spread_pct", lambda s: {}, lambda d: ref.spread_pct(d.bids, d.asks)),
    ("twpa", lambda s: {"window_seconds": 7 * s}, lambda d: ref.twpa(d.ts, d.prices, 7 * d.step)),
    ("twpa", lambda s: {"window_seconds": 0.5 * s}, lambda d: ref.twpa(d.ts, d.prices, 0.5 * d.step)),
    (
        "price_to_twpa_ratio",
        lambda s: {"window_seconds": 20 * s},
        lambda d: ref.price_to_twpa_ratio(d.ts, d.prices, 20 * d.step),
    ),
]


def assert_series_equal(got: list[float | None], want: list[float | None]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g is None or w is None:
            assert g is w, f"step {i}: {g} != {w}"
        else:
            assert math.isclose(g, w, rel_tol=REL, abs_tol=1e-15), f"step {i}: {g} != {w}"


def run(indicator: Indicator, ticks: list[Tick]) -> list[float | None]:
    out = []
    for tick in ticks:
        value = indicator.update(tick)
        assert indicator.value == value or (value is None and indicator.value is None)
        out.append(value)
    return out


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize(("name", "params", "reference"), CASES)
def test_indicator_equals_batch_reference_at_every_step(
    dataset: str, name: str, params: Callable[[float], dict[str, Any]], reference: Reference
) -> None:
    """Every indicator matches its batch reference to 1e-9 at every tick of every sample set."""
    data = load(dataset, DATASETS[dataset])
    want = reference(data)
    got = run(create_indicator(name, params(data.step)), data.ticks())
    assert_series_equal(got, want)
    assert any(v is not None for v in want)  # the case exercises warm values, not just warm-up


def test_every_registered_indicator_has_a_reference_case() -> None:
    """The reference cases cover every name in the registry."""
    assert {name for name, _, _ in CASES} == set(INDICATORS)


def test_bank_values_equal_standalone_instances() -> None:
    """Values read from the bank's dict equal those of standalone instances fed the same ticks."""
    data = load("GOOG", DAY)
    bank = IndicatorBank()
    pairs = []
    for name, params, _ in CASES:
        p = params(DAY)
        pairs.append((bank.ensure("GOOG", name, p), create_indicator(name, p)))
    for tick in data.ticks():
        values = bank.update(tick)
        for key, alone in pairs:
            assert values[key] == alone.update(tick)


# ---------------------------------------------------------------------------------------------
# Edge definitions


def tick(ts: float, price: float = 100.0, volume: float = 1.0, **book: float | None) -> Tick:
    return Tick("X", price, volume, ts, book.get("bid"), book.get("ask"))


def test_ema_is_seeded_with_the_sma_of_the_first_period_prices() -> None:
    """EMA is None for period-1 prices, then the plain mean, then the alpha recurrence."""
    ema = create_indicator("ema", {"period": 3})
    assert [ema.update(tick(i, p)) for i, p in enumerate([1.0, 2.0, 6.0])] == [None, None, 3.0]
    assert ema.update(tick(3, 5.0)) == pytest.approx(3.0 + 0.5 * (5.0 - 3.0))


def test_rsi_extremes_and_flat_prices() -> None:
    """RSI is 100 with no losses, 0 with no gains and 50 when the price never moves."""
    for prices, expected in (([1, 2, 3, 4], 100.0), ([4, 3, 2, 1], 0.0), ([5, 5, 5, 5], 50.0)):
        rsi = create_indicator("rsi", {"period": 3})
        values = [rsi.update(tick(i, p)) for i, p in enumerate(prices)]
        assert values == [None, None, None, expected]


def test_spread_is_none_without_a_book() -> None:
    """spread_pct is None when bid or ask is missing and (ask-bid)/mid*100 otherwise."""
    spread = create_indicator("spread_pct")
    assert spread.update(tick(0, bid=99.0)) is None
    assert spread.update(tick(1, bid=99.0, ask=101.0)) == pytest.approx(2.0)
    assert spread.update(tick(2, ask=101.0)) is None
    assert spread.value is None


def test_time_windows_are_half_open_and_warm_once_covered() -> None:
    """A window of W ending at t holds ts in (t-W, t] and warms when the first tick is <= t-W."""
    sma = create_indicator("sma", {"window_seconds": 10})
    assert sma.update(tick(0, 1.0)) is None
    assert sma.update(tick(9.5, 3.0)) is None
    assert sma.update(tick(10, 5.0)) == 4.0  # ts=0 is at t-W: outside, but the window is covered


def test_price_velocity_uses_the_price_as_of_the_window_start() -> None:
    """Velocity compares with the last price at or before t-W and divides by W."""
    velocity = create_indicator("price_velocity", {"window_seconds": 10})
    assert velocity.update(tick(0, 100.0)) is None
    velocity.update(tick(5, 200.0))
    assert velocity.update(tick(12, 110.0)) == pytest.approx((110 - 100) / 100 * 100 / 10)
    assert velocity.update(tick(16, 110.0)) == pytest.approx((110 - 200) / 200 * 100 / 10)


def test_twpa_weights_prices_by_time_held_inside_the_window() -> None:
    """TWPA integrates the last-price step function over [t-W, t]."""
    twpa = create_indicator("twpa", {"window_seconds": 10})
    twpa.update(tick(0, 100.0))
    twpa.update(tick(8, 200.0))
    assert twpa.update(tick(12, 50.0)) == pytest.approx((6 * 100 + 4 * 200) / 10)


def test_volume_surge_without_volume_is_exactly_zero() -> None:
    """After heavy volume leaves both windows the ratio is exactly 0.0, with no float residue."""
    surge = create_indicator("volume_surge_ratio", {"short_window_seconds": 5, "long_window_seconds": 20})
    for i in range(100):
        surge.update(tick(i, volume=1e15 + i * 0.37))
    values = [surge.update(tick(100 + i, volume=0.0)) for i in range(30)]
    assert values[-1] == 0.0
    assert surge.update(tick(130, volume=2.0)) == pytest.approx(20 / 5)


def test_window_sums_recover_precision_after_huge_values_leave() -> None:
    """Running sums re-sum exactly, so tiny values after huge ones still match an exact batch."""
    ts = [float(i) for i in range(3000)]
    prices = [1e12 + i * 0.123 if i < 1000 else 1.0 + (i % 7) * 1e-3 for i in range(3000)]
    volumes = [1e12 + i * 0.7 if i < 1000 else 1.0 + (i % 5) * 1e-3 for i in range(3000)]
    ticks = [Tick("X", p, v, t) for t, p, v in zip(ts, prices, volumes, strict=True)]
    checks: list[tuple[str, dict[str, Any], list[float | None]]] = [
        ("sma", {"period": 50}, ref.sma_bars(prices, 50)),
        ("sma", {"window_seconds": 50}, ref.sma_window(ts, prices, 50)),
        ("twpa", {"window_seconds": 50}, ref.twpa(ts, prices, 50)),
        (
            "volume_surge_ratio",
            {"short_window_seconds": 10, "long_window_seconds": 50},
            ref.volume_surge_ratio(ts, volumes, 10, 50),
        ),
    ]
    for name, params, want in checks:
        got = run(create_indicator(name, params), ticks)
        assert_series_equal(got[1200:], want[1200:])


# ---------------------------------------------------------------------------------------------
# Registry


LONG_PATH = "params.long_window_seconds"


@pytest.mark.parametrize(
    ("name", "params", "path"),
    [
        ("smaa", {}, "name"),
        ("sma", {"period": 0}, "params.period"),
        ("sma", {"period": 2.5}, "params.period"),
        ("sma", {"period": True}, "params.period"),
        ("sma", {"perod": 3}, "params.perod"),
        ("sma", {"period": 5, "window_seconds": 60}, "params.window_seconds"),
        ("ema", {"period": 100_001}, "params.period"),
        ("rsi", {"period": "14"}, "params.period"),
        ("twpa", {"window_seconds": 0}, "params.window_seconds"),
        ("twpa", {"window_seconds": math.nan}, "params.window_seconds"),
        ("twpa", {"window_seconds": math.inf}, "params.window_seconds"),
        ("volume_surge_ratio", {"short_window_seconds": 6, "long_window_seconds": 6}, LONG_PATH),
        ("spread_pct", {"window_seconds": 5}, "params.window_seconds"),
        ("pump_magnitude_pct", [1, 2], "params"),
    ],
)  # fmt: skip
def test_bad_names_and_params_raise_with_a_path(name: str, params: Any, path: str) -> None:
    """Unknown names and invalid params raise IndicatorError naming the offending path."""
    with pytest.raises(IndicatorError) as info:
        create_indicator(name, params)
    assert info.value.path == path
    assert path in str(info.value) or path == "name"
    with pytest.raises(IndicatorError):
        indicator_key(name, params)


def test_indicator_error_is_a_value_error_in_the_tree() -> None:
    """IndicatorError is a ValueError and a TradewireError, lists known names and pickles with its path."""
    with pytest.raises(ValueError, match="known: sma, ema") as info:
        create_indicator("nope")
    assert isinstance(info.value, TradewireError)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.path) == (str(info.value), "name")


def test_keys_are_normalised_with_defaults() -> None:
    """Keys fill defaults, unify int/float spellings and differ for different params."""
    assert indicator_key("rsi") == indicator_key("rsi", {"period": 14}) == ("rsi", ("period", 14))
    assert indicator_key("sma") == ("sma", ("period", 20))
    assert indicator_key("twpa", {"window_seconds": 60}) == indicator_key("twpa", {"window_seconds": 60.0})
    assert indicator_key("twpa", {"window_seconds": 60}) != indicator_key("twpa", {"window_seconds": 61})
    assert indicator_key("sma", {"window_seconds": 20}) == ("sma", ("window_seconds", 20.0))
    assert indicator_key("spread_pct") == ("spread_pct",)
    assert len({indicator_key(name) for name in INDICATORS}) == len(INDICATORS)


def test_sma_picks_bars_or_time_window() -> None:
    """sma with period builds a bar SMA; with window_seconds a time-window SMA."""
    assert isinstance(create_indicator("sma", {"period": 3}), SmaBars)
    assert isinstance(create_indicator("sma", {"window_seconds": 3}), SmaWindow)


def test_describe_lists_every_indicator_with_a_json_schema() -> None:
    """describe_indicators gives name, description and a closed JSON schema per indicator."""
    described = describe_indicators()
    assert [d["name"] for d in described] == list(INDICATORS)
    for entry in described:
        assert entry["description"]
        assert entry["params"]["type"] == "object"
        assert entry["params"]["additionalProperties"] is False
    rsi = next(d for d in described if d["name"] == "rsi")["params"]["properties"]["period"]
    assert (rsi["minimum"], rsi["maximum"], rsi["default"]) == (1, 1000, 14)
    msgspec.json.encode(described)


# ---------------------------------------------------------------------------------------------
# Bank


def test_bank_shares_instances_and_counts_references() -> None:
    """ensure shares one instance per key; release drops it with the last holder only."""
    bank = IndicatorBank()
    key = bank.ensure("BTC", "rsi", {})
    assert bank.ensure("BTC", "rsi", {"period": 14}) == key
    assert bank.refcount("BTC", key) == 2
    instance = bank.get("BTC", key)
    bank.release("BTC", key)
    assert bank.get("BTC", key) is instance
    bank.release("BTC", key)
    assert bank.refcount("BTC", key) == 0
    assert dict(bank.values("BTC")) == {}
    with pytest.raises(KeyError):
        bank.release("BTC", key)
    with pytest.raises(KeyError):
        bank.get("BTC", key)


def test_bank_update_fills_one_dict_per_symbol_in_place() -> None:
    """update returns the same per-symbol dict every tick and touches only that symbol."""
    bank = IndicatorBank()
    ema = bank.ensure("A", "ema", {"period": 1})
    bank.ensure("B", "ema", {"period": 1})
    first = bank.update(Tick("A", 10.0, 1.0, 0.0))
    second = bank.update(Tick("A", 20.0, 1.0, 1.0))
    assert first is second is bank.values("A")
    assert second == {ema: 20.0}
    assert bank.values("B") == {ema: None}
    assert bank.update(Tick("C", 1.0, 1.0, 0.0)) == {}


def test_bank_new_indicator_starts_cold_and_release_keeps_the_others() -> None:
    """An indicator ensured mid-stream warms from its first tick; releasing one keeps the rest."""
    bank = IndicatorBank()
    sma2 = bank.ensure("A", "sma", {"period": 2})
    for i in range(3):
        bank.update(Tick("A", float(i), 1.0, float(i)))
    sma3 = bank.ensure("A", "sma", {"period": 3})
    assert bank.update(Tick("A", 3.0, 1.0, 3.0)) == {sma2: 2.5, sma3: None}
    bank.release("A", sma2)
    assert bank.update(Tick("A", 4.0, 1.0, 4.0)) == {sma3: None}
    assert bank.update(Tick("A", 5.0, 1.0, 5.0)) == {sma3: 4.0}


def test_bank_rejects_bad_params_without_side_effects() -> None:
    """A failed ensure raises IndicatorError and creates nothing."""
    bank = IndicatorBank()
    with pytest.raises(IndicatorError):
        bank.ensure("A", "ema", {"period": -1})
    assert bank.values("A") == {}


# ---------------------------------------------------------------------------------------------
# O(1): bounded state


def deque_lengths(obj: object) -> Iterator[int]:
    """Lengths of every deque in an indicator's slots, nested indicators included."""
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            attr = getattr(obj, slot, None)
            if isinstance(attr, deque):
                yield len(attr)
            elif hasattr(attr, "__slots__") and hasattr(attr, "update"):
                yield from deque_lengths(attr)


def test_window_state_stays_bounded_over_a_long_series() -> None:
    """Over 20k one-per-second ticks no deque exceeds the ticks in its window and memory is flat."""
    params: dict[str, dict[str, Any]] = {
        "sma": {"window_seconds": 60},
        "price_velocity": {"window_seconds": 60},
        "volume_surge_ratio": {"short_window_seconds": 10, "long_window_seconds": 60},
        "pump_magnitude_pct": {"window_seconds": 60},
        "twpa": {"window_seconds": 60},
        "price_to_twpa_ratio": {"window_seconds": 60},
    }
    bank = IndicatorBank()
    keys = [bank.ensure("X", name, params.get(name)) for name in INDICATORS]
    ticks = [
        Tick("X", 100.0 + (i * 7919 % 101) / 10, float(i % 13), float(i), 99.0, 101.0) for i in range(20_000)
    ]
    for t in ticks[:1000]:
        bank.update(t)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    longest = 0
    for n, t in enumerate(ticks[1000:]):
        bank.update(t)
        if n % 97 == 0:
            longest = max(longest, *(max(deque_lengths(bank.get("X", k)), default=0) for k in keys))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert longest <= 62  # 60 ticks in (t-60, t], plus the as-of tick for velocity/TWPA
    assert grown < 64_000
    assert all(v is not None for v in bank.values("X").values())
