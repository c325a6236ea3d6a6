"""Engine throughput: price updates per second through indicators and strategy state machines.

usage: ``python bench/engine_throughput.py [--ticks 400000] [--repeat 5] [--core 0]``

Ten active (strategy, symbol) pairs — the two example strategies on five symbols — fed with
pre-generated synthetic ticks (generation is not timed), through
``StrategyManager.on_tick``: one indicator-bank update per tick for its symbol (indicators are
shared between the strategies) and the state machines of that symbol. Signals and state changes
go to a counting sink instead of the event bus. Pinned to one core with ``taskset`` when
available. Target (DESIGN §7): ≥ 200k updates/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tradewire.controller import Caller
from tradewire.engine.examples import EXAMPLES
from tradewire.engine.indicators import IndicatorBank
from tradewire.engine.market_data import SyntheticFeed
from tradewire.engine.storage.database import Database, sqlite_url
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.ticks import Tick

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "XRP-USD"]
TARGET = 200_000
RESULTS = Path(__file__).resolve().parent / "results" / "engine_throughput.jsonl"


def _ticks(count: int, interval: float) -> list[Tick]:
    feed = SyntheticFeed(SYMBOLS, seed=1, pump_probability=0.01)
    return [feed.step(SYMBOLS[i % len(SYMBOLS)], i * interval / len(SYMBOLS)) for i in range(count)]


async def _manager(data_dir: Path, events: Counter[str]) -> StrategyManager:
    db = Database(sqlite_url(data_dir))
    await db.start()
    manager = StrategyManager(
        db, IndicatorBank(), lambda topic, payload: events.update((topic,)), clock=lambda: 0.0
    )
    for document in EXAMPLES:
        name, _ = await manager.upsert(Caller("bench"), document)
        for symbol in SYMBOLS:
            await manager.activate(Caller("bench"), name, symbol)
    await db.stop()
    return manager


def _run(manager: StrategyManager, ticks: list[Tick]) -> float:
    on_tick = manager.on_tick
    started = time.perf_counter()
    for tick in ticks:
        on_tick(tick)
    return len(ticks) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--interval", type=float, default=0.25, help="market seconds between ticks of a symbol"
    )
    parser.add_argument("--core", type=int, default=0, help="pin to this core (re-exec under taskset)")
    args = parser.parse_args()
    if args.core >= 0 and shutil.which("taskset") and os.environ.get("TW_PINNED") != "1":
        os.environ["TW_PINNED"] = "1"
        os.execvp("taskset", ["taskset", "-c", str(args.core), sys.executable, *sys.argv])
    ticks = _ticks(args.ticks, args.interval)
    events: Counter[str] = Counter()
    rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            manager = asyncio.run(_manager(Path(tmp) / f"r{len(rates)}", events))
            rates.append(_run(manager, ticks))
    pairs = len(SYMBOLS) * len(EXAMPLES)
    median = statistics.median(rates)
    result: dict[str, Any] = {
        "bench": "engine_throughput",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pairs": pairs,
        "ticks": args.ticks,
        "rates": [round(r) for r in rates],
        "median_updates_per_s": round(median),
        "us_per_update": round(1e6 / median, 3),
        "events": dict(events),
        "pinned": os.environ.get("TW_PINNED") == "1",
    }
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")
    verdict = "PASS" if median >= TARGET else "FAIL"
    sys.stdout.write(
        f"{pairs} (strategy, symbol) pairs, {args.ticks} ticks x {args.repeat} runs"
        f"{' (pinned)' if result['pinned'] else ''}\n"
        f"updates/s: median {median:,.0f} (runs: {', '.join(f'{r:,.0f}' for r in rates)}); "
        f"{1e6 / median:.2f} us per update\n"
        f"events emitted per run: {dict((k, v // args.repeat) for k, v in events.items())}\n"
        f"target >= {TARGET:,}/s: {verdict}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
