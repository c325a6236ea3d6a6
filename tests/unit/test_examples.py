"""The shipped example strategies on the shipped synthetic feed (what `make run` shows a new user)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tradewire.config import Settings
from tradewire.engine.examples import EXAMPLES, SYNTHETIC_SYMBOLS
from tradewire.engine.indicators import IndicatorBank
from tradewire.engine.market_data import SyntheticFeed
from tradewire.engine.storage.database import Database, sqlite_url
from tradewire.engine.strategy_manager import StrategyManager


async def test_examples_signal_within_a_minute_of_the_default_feed(tmp_path: Path) -> None:
    """With the default seed and interval, signals arrive within 60 s of market time."""
    defaults = Settings()
    db = Database(sqlite_url(tmp_path))
    await db.start()
    events: Counter[str] = Counter()
    manager = StrategyManager(db, IndicatorBank(), lambda topic, payload: events.update((topic,)))
    await manager.load()  # empty database: installs and activates the examples
    assert {s["strategy_name"] for s in manager.strategies()} == {d["strategy_name"] for d in EXAMPLES}
    assert len(manager.status()) == len(EXAMPLES) * len(SYNTHETIC_SYMBOLS)
    feed = SyntheticFeed(defaults.synthetic_symbols, seed=defaults.synthetic_seed)
    ticks_per_minute = int(60 / defaults.synthetic_interval)
    for step in range(ticks_per_minute):
        for symbol in defaults.synthetic_symbols:
            manager.on_tick(feed.step(symbol, 1_800_000_000.0 + step * defaults.synthetic_interval))
    assert events["signal_generated"] >= 1
    await db.stop()
