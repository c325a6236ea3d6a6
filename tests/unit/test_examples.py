"""The shipped example strategies on the shipped synthetic feed (what `make run` shows a new user)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

from tests.helpers import TIMEOUT, engine_server, make_settings
from tradewire.config import Settings
from tradewire.controller import Caller
from tradewire.engine.examples import EXAMPLES, SYNTHETIC_SYMBOLS
from tradewire.engine.indicators import IndicatorBank
from tradewire.engine.market_data import SyntheticFeed
from tradewire.engine.storage.database import Database, sqlite_url
from tradewire.engine.strategy_manager import StrategyManager

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


async def test_examples_signal_within_a_minute_of_the_default_feed(tmp_path: Path) -> None:
    """With the default seed and interval, signals arrive within 60 s of market time."""
    defaults = Settings()
    db = Database(sqlite_url(tmp_path))
    await db.start()
    events: Counter[str] = Counter()
    manager = StrategyManager(db, IndicatorBank(), lambda topic, payload: events.update((topic,)))
    await manager.load()  # empty database: installs and activates the examples
    assert {s["strategy_name"] for s in manager.strategies(Caller("tests"))} == {
        d["strategy_name"] for d in EXAMPLES
    }
    assert len(manager.status()) == len(EXAMPLES) * len(SYNTHETIC_SYMBOLS)
    feed = SyntheticFeed(defaults.synthetic_symbols, seed=defaults.synthetic_seed)
    ticks_per_minute = int(60 / defaults.synthetic_interval)
    for step in range(ticks_per_minute):
        for symbol in defaults.synthetic_symbols:
            manager.on_tick(feed.step(symbol, 1_800_000_000.0 + step * defaults.synthetic_interval))
    assert events["signal_generated"] >= 1
    await db.stop()


async def test_backtest_recipe_prints_the_metrics(tmp_path: Path) -> None:
    """docs/SESSIONS.md's recipe, run as a user would: the example script against a server."""
    settings = make_settings(tmp_path, synthetic_symbols=[])
    async with engine_server(settings) as running:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES_DIR / "backtest_sample.py"),
            "--url",
            running.url,
            "--token",
            running.token(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT * 4)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].endswith(": completed")
    metrics = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert int(metrics["trades"]) > 20 and float(metrics["return_pct"]) > 0
