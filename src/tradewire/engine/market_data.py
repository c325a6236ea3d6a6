"""Market data sources behind one interface, and the readers of imported files.

A source produces :class:`~tradewire.engine.ticks.Tick` objects and hands each to a sink
(``on_tick``); :class:`MarketDataPublisher` is the usual sink: it publishes ``market.price_update``
and ``market.orderbook_update`` on the event bus, where the gateway's bridge turns them into the
``market_data`` stream and the strategy manager consumes them.

Sources:

- :class:`SyntheticFeed` — a live feed for any symbol, deterministic for a seed: log-price random
  walk with GARCH(1,1) volatility clusters, occasional pumps and dumps (a drift of ±5–20 % over
  a few dozen ticks, then partial reversal), trade sizes that surge with volatility, and a
  bid/ask spread that widens with it. It is labelled ``source: "synthetic"`` in every event so
  it can never be mistaken for real prices (the original injected synthetic prices into real
  streams).
- :class:`ReplayFeed` — ticks from stored datasets or files, at an acceleration factor (market
  time / wall time) or as fast as possible. The engine's replay of ``replay_dataset`` is labelled
  ``source: "replay"`` and published under ``replay:<SYMBOL>`` (``namespace=True``), never under
  the dataset's own symbol: a replay of 2012 BTC-USD prices must not interleave with a live
  BTC-USD feed, in the strategies' indicators or on ``market_data``.
"""

from __future__ import annotations

import asyncio
import csv
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tradewire.bus import topics
from tradewire.bus.event_bus import EventBus
from tradewire.engine.storage.database import Bar
from tradewire.engine.symbols import replay_symbol
from tradewire.engine.ticks import Tick

TickSink = Callable[[Tick], None]
FAST_REPLAY_YIELD_EVERY = 1000  # ticks between yields to the event loop in as-fast-as-possible mode


class MarketDataSource(Protocol):
    name: str

    async def run(self, sink: TickSink) -> None:
        """Produce ticks into ``sink`` until done or cancelled."""
        ...


class MarketDataPublisher:
    """Sink that publishes ticks on the event bus (price and, when known, top of book)."""

    def __init__(self, bus: EventBus, source: str) -> None:
        self._bus = bus
        self._source = source
        self._last: dict[str, float] = {}

    def __call__(self, tick: Tick) -> None:
        previous = self._last.get(tick.symbol, tick.price)
        self._last[tick.symbol] = tick.price
        self._bus.publish(
            topics.MARKET_PRICE_UPDATE,
            {
                "symbol": tick.symbol,
                "price": tick.price,
                "volume": tick.volume,
                "side": "buy" if tick.price >= previous else "sell",
                "timestamp": tick.ts,
                "source": self._source,
            },
        )
        if tick.bid is not None and tick.ask is not None:
            self._bus.publish(
                topics.MARKET_ORDERBOOK_UPDATE,
                {
                    "symbol": tick.symbol,
                    "bid": tick.bid,
                    "ask": tick.ask,
                    "spread_pct": (tick.ask - tick.bid) / ((tick.ask + tick.bid) / 2) * 100,
                    "timestamp": tick.ts,
                    "source": self._source,
                },
            )


@dataclass(slots=True)
class _Walk:
    """State of one synthetic symbol."""

    price: float
    variance: float
    pump_left: int = 0
    pump_step: float = 0.0


class SyntheticFeed:
    """Seeded synthetic live feed (see module docstring)."""

    name = "synthetic"

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        seed: int = 7,
        interval: float = 0.25,
        clock: Callable[[], float] | None = None,
        pump_probability: float = 0.004,
    ) -> None:
        self.symbols = list(symbols)
        self.interval = interval
        self._rng = random.Random(seed)
        self._clock = clock
        self._pump_probability = pump_probability
        self._walks = {symbol: _Walk(self._start_price(symbol), 1e-6) for symbol in self.symbols}

    def _start_price(self, symbol: str) -> float:
        known = {"BTC": 64_000.0, "ETH": 3_200.0, "SOL": 150.0, "EURUSD": 1.08}
        base = symbol.split("-", 1)[0].split("/", 1)[0].upper()
        return known.get(base, 10.0 + random.Random(symbol).random() * 990.0)

    def step(self, symbol: str, ts: float) -> Tick:
        """The next tick of ``symbol`` at market time ``ts`` (pure given the seed and call order)."""
        walk, rng = self._walks[symbol], self._rng
        shock = rng.gauss(0.0, 1.0) * math.sqrt(walk.variance)
        walk.variance = 2e-8 + 0.08 * shock * shock + 0.9 * walk.variance  # GARCH(1,1)
        drift = 0.0
        if walk.pump_left > 0:
            walk.pump_left -= 1
            drift = walk.pump_step
        elif rng.random() < self._pump_probability:
            size = rng.uniform(0.05, 0.2) * (1 if rng.random() < 0.6 else -1)
            walk.pump_left = rng.randint(20, 60)
            walk.pump_step = math.log1p(size) / walk.pump_left
        walk.price *= math.exp(shock + drift)
        activity = 1.0 + 400.0 * abs(shock + drift)
        volume = round(rng.expovariate(1.0) * activity, 6)
        half_spread = walk.price * (0.00005 + 2.0 * math.sqrt(walk.variance))
        return Tick(symbol, walk.price, volume, ts, walk.price - half_spread, walk.price + half_spread)

    async def run(self, sink: TickSink) -> None:
        wall = self._clock or time.time
        while True:
            now = wall()
            for symbol in self.symbols:
                sink(self.step(symbol, now))
            await asyncio.sleep(self.interval)


class ReplayFeed:
    """Replays ticks in order: ``speed`` × market time (e.g. 60 = a minute per second) or ``None``
    for as fast as possible (yielding to the loop every 1000 ticks); with ``namespace`` each tick
    is published under :func:`~tradewire.engine.symbols.replay_symbol` of its symbol."""

    name = "replay"

    def __init__(self, ticks: Iterable[Tick], speed: float | None = None, *, namespace: bool = False) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        self._ticks = ticks
        self.speed = speed
        self.replayed = 0
        self._namespace = namespace
        self._names: dict[str, str] = {}

    async def run(self, sink: TickSink) -> None:
        loop = asyncio.get_running_loop()
        start_wall = loop.time()
        start_market: float | None = None
        for tick in self._ticks:
            if self.speed is None:
                if self.replayed % FAST_REPLAY_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            else:
                start_market = tick.ts if start_market is None else start_market
                delay = start_wall + (tick.ts - start_market) / self.speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            sink(self._label(tick) if self._namespace else tick)
            self.replayed += 1

    def _label(self, tick: Tick) -> Tick:
        name = self._names.get(tick.symbol)
        if name is None:
            name = self._names[tick.symbol] = replay_symbol(tick.symbol)
        return Tick(name, tick.price, tick.volume, tick.ts, tick.bid, tick.ask)


# ---------------------------------------------------------------------- files


def parse_timestamp(value: str) -> float:
    """Epoch seconds from ``2024-01-31``, ``2024-01-31 09:00:00``, ISO 8601, or epoch s / ms."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return number / 1000.0 if number > 1e11 else number


def detect_kind(path: Path) -> str:
    """``ohlcv`` if the header has open/high/low/close columns, else ``trades``."""
    with path.open(newline="") as handle:
        header = {name.strip().lower() for name in next(csv.reader(handle), [])}
    return "ohlcv" if {"open", "high", "low", "close"} <= header else "trades"


_OHLCV = ("open", "high", "low", "close", "volume")
_TS_NAMES = ("", "date", "time", "timestamp", "ts")


def read_ohlcv_csv(path: Path) -> list[Bar]:
    """Bars from a CSV with a timestamp column and Open, High, Low, Close, Volume columns.

    Every value must be a finite number (prices positive, volume not negative); a bad row is a
    ``ValueError`` naming its line, never a half-imported file.
    """
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [name for name in _OHLCV if name not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        index = [header.index(name) for name in _OHLCV]
        ts_col = next((i for i, name in enumerate(header) if name in _TS_NAMES), 0)
        bars = [_bar(row, ts_col, index, path, line) for line, row in enumerate(reader, start=2) if row]
    bars.sort(key=lambda bar: bar.ts)
    return bars


def _bar(row: list[str], ts_col: int, index: list[int], path: Path, line: int) -> Bar:
    try:
        values = [float(row[i]) for i in index]
        bar = Bar(parse_timestamp(row[ts_col]), *values)
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{path}:{line}: unreadable row") from exc
    if not all(math.isfinite(v) for v in (bar.ts, *values)) or min(values[:4]) <= 0 or bar.volume < 0:
        raise ValueError(f"{path}:{line}: prices must be positive and finite, volume finite and >= 0")
    return bar


_TRADE_COLUMNS = {
    "ts": ("timestamp", "ts", "time", "date"),
    "price": ("price", "last"),
    "volume": ("volume", "size", "qty", "quantity", "amount"),
    "bid": ("bid",),
    "ask": ("ask",),
}


def read_trades_csv(path: Path) -> list[dict[str, Any]]:
    """Trade ticks (``ts, price, volume``, optional ``bid, ask``) from a CSV with a header row."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or ()}
        columns = {
            key: next((fields[n] for n in names if n in fields), None)
            for key, names in _TRADE_COLUMNS.items()
        }
        missing = [key for key in ("ts", "price", "volume") if columns[key] is None]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = [_trade_row(row, columns, path, line) for line, row in enumerate(reader, start=2)]
    rows.sort(key=lambda row: row["ts"])
    return rows


def _trade_row(row: dict[str, str], columns: dict[str, str | None], path: Path, line: int) -> dict[str, Any]:
    try:
        out: dict[str, Any] = {
            "ts": parse_timestamp(row[columns["ts"] or ""]),
            "price": float(row[columns["price"] or ""]),
            "volume": float(row[columns["volume"] or ""]),
        }
        for key in ("bid", "ask"):
            column = columns[key]
            out[key] = float(row[column]) if column and row.get(column) else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}:{line}: unreadable row") from exc
    numbers = [value for value in out.values() if value is not None]
    if not all(math.isfinite(v) for v in numbers) or out["price"] <= 0 or out["volume"] < 0:
        raise ValueError(f"{path}:{line}: price must be positive and finite, volume finite and >= 0")
    return out
