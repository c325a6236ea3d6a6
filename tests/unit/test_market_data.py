"""Market data sources and file readers."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

import tradewire.engine
from tradewire.bus.event_bus_memory import InMemoryEventBus
from tradewire.engine.market_data import (
    MarketDataPublisher,
    ReplayFeed,
    SyntheticFeed,
    parse_timestamp,
    read_ohlcv_csv,
    read_trades_csv,
)
from tradewire.engine.storage.database import bars_to_ticks
from tradewire.engine.ticks import Tick

SAMPLES = Path(tradewire.engine.__file__).parent / "sample_data"


def test_synthetic_feed_is_deterministic_for_a_seed() -> None:
    a, b = SyntheticFeed(["BTC", "ETH"], seed=3), SyntheticFeed(["BTC", "ETH"], seed=3)
    first = [a.step(s, float(t)) for t in range(500) for s in ("BTC", "ETH")]
    second = [b.step(s, float(t)) for t in range(500) for s in ("BTC", "ETH")]
    assert first == second
    assert SyntheticFeed(["BTC"], seed=4).step("BTC", 0.0) != first[0]


def test_synthetic_feed_is_realistic() -> None:
    """Positive prices, bid < price < ask, volatility clusters, and pumps/dumps of several percent."""
    feed = SyntheticFeed(["SOL"], seed=11, pump_probability=0.01)
    ticks = [feed.step("SOL", float(t)) for t in range(20_000)]
    assert all(
        t.price > 0 and t.bid is not None and t.ask is not None and t.bid < t.price < t.ask for t in ticks
    )
    moves = [abs(b.price / a.price - 1) for a, b in itertools.pairwise(ticks)]
    window = 30
    swings = [ticks[i + window].price / ticks[i].price - 1 for i in range(0, len(ticks) - window, window)]
    assert max(swings) > 0.04 and min(swings) < -0.03  # pumps and dumps happen
    big = [m for m in moves if m > 3 * (sum(moves) / len(moves))]
    assert len(big) < len(moves) / 10  # fat tails, not uniform noise


def test_ohlcv_reader_parses_the_sample_files() -> None:
    btc = read_ohlcv_csv(SAMPLES / "BTCUSD.csv")
    eur = read_ohlcv_csv(SAMPLES / "EURUSD.csv")
    assert len(btc) == 156 and len(eur) == 5000
    assert btc[0].ts == parse_timestamp("2012-01-31") and btc[0].close == 5.55
    assert eur[1].ts - eur[0].ts == 3600
    assert all(a.ts < b.ts for a, b in itertools.pairwise(eur))


def test_trades_reader_accepts_common_headers(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("time,price,size,bid,ask\n1700000000500,10.5,2,10.4,10.6\n1700000000,10.0,1,,\n")
    rows = read_trades_csv(path)
    assert rows == [
        {"ts": 1_700_000_000.0, "price": 10.0, "volume": 1.0, "bid": None, "ask": None},
        {"ts": 1_700_000_000.5, "price": 10.5, "volume": 2.0, "bid": 10.4, "ask": 10.6},
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        read_trades_csv(bad)


async def test_replay_as_fast_as_possible_and_accelerated() -> None:
    ticks = list(bars_to_ticks("GOOG", read_ohlcv_csv(SAMPLES / "GOOG.csv")))
    seen: list[Tick] = []
    feed = ReplayFeed(ticks)
    await feed.run(seen.append)
    assert seen == ticks and feed.replayed == len(ticks)
    timed = [Tick("X", 1.0, 1.0, float(t)) for t in range(0, 40, 10)]  # 30 s of market time
    got: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    await ReplayFeed(timed, speed=100.0).run(lambda tick: got.append(loop.time() - start))
    assert 0.28 <= got[-1] < 0.6  # 30 s at 100x ≈ 0.3 s


async def test_publisher_puts_prices_and_books_on_the_bus() -> None:
    bus = InMemoryEventBus()
    events: list[tuple[str, dict[str, Any]]] = []
    bus.subscribe("market.*", lambda topic, payload: events.append((topic, payload)), name="t")
    await bus.start()
    publish = MarketDataPublisher(bus, "synthetic")
    publish(Tick("BTC", 100.0, 1.0, 5.0, 99.0, 101.0))
    publish(Tick("BTC", 99.0, 1.0, 6.0))
    await asyncio.sleep(0)
    await bus.stop()
    topics = [topic for topic, _ in events]
    assert topics == ["market.price_update", "market.orderbook_update", "market.price_update"]
    assert events[1][1]["spread_pct"] == pytest.approx(2.0)
    assert (events[2][1]["side"], events[2][1]["source"]) == ("sell", "synthetic")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Date,Open,High,Low,Close\n2024-01-01,1,2,1,1\n", "missing column"),
        (",Open,High,Low,Close,Volume\n2024-01-01,1,2,1\n", ":2: unreadable row"),
        (",Open,High,Low,Close,Volume\n2024-01-01,1,2,1,1,5\n2024-01-02,1,2,1,nan,5\n", ":3: prices"),
        (",Open,High,Low,Close,Volume\n2024-01-01,1,2,1,1,-5\n", ":2: prices"),
    ],
)
def test_ohlcv_reader_rejects_bad_rows_with_their_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_ohlcv_csv(path)
