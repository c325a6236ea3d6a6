"""Backtest throughput end to end, side by side with backtesting.py on the same bars.

usage: ``python bench/backtest_throughput.py [--bars 500000] [--symbols 2] [--core 0]``

Both sides get the same seeded OHLCV bars (a random walk with intrabar ranges) for ``--symbols``
symbols and run two long-only SMA-cross strategies (10/30 and 20/50) on every symbol.

* **tradewire**: the real session path, timed from ``start_session`` to the results stored in
  SQLite: dataset read from the database → indicators → both strategies' state machines →
  simulated broker → metrics → results document and equity curve written. One backtest session
  holds all (strategy, symbol) pairs in one account.
* **backtesting.py** (the reference traders know): one ``Backtest.run()`` per (strategy, symbol)
  — it runs one strategy on one data frame — with the equivalent ``Strategy`` (``crossover`` of
  two ``SMA`` indicators, ``buy()`` / ``position.close()``), summed.

``bars/s`` = input bars (symbols × bars) / seconds, each bar evaluated by both strategies on both
sides. Data generation and the import into SQLite are not timed. Pinned to one core. Targets
(issue 8): tradewire ≥ 1.5 × backtesting.py, and 1 M bars end to end in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tradewire.controller import Caller
from tradewire.engine.indicators import IndicatorBank
from tradewire.engine.sessions.controller import ExecutionController
from tradewire.engine.storage.database import Bar, Database, sqlite_url
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.symbols import SymbolRegistry

RATIO_TARGET = 1.5
MILLION_TARGET_SECONDS = 10.0
PAIRS = ((10, 30), (20, 50))
RESULTS = Path(__file__).resolve().parent / "results" / "backtest_throughput.jsonl"


def make_bars(count: int, seed: int) -> list[Bar]:
    """A seeded random walk: 1-minute bars with opens at the last close and intrabar ranges."""
    rng = random.Random(seed)
    bars = []
    price = 100.0
    for i in range(count):
        close = price * math.exp(rng.gauss(0, 0.002))
        high = max(price, close) * (1 + abs(rng.gauss(0, 0.0008)))
        low = min(price, close) * (1 - abs(rng.gauss(0, 0.0008)))
        bars.append(Bar(1_600_000_000.0 + 60.0 * i, price, high, low, close, rng.expovariate(1.0) * 100))
        price = close
    return bars


def strategy(fast: int, slow: int) -> dict[str, Any]:
    def cond(cid: str, operator: str) -> dict[str, Any]:
        return {
            "id": cid,
            "indicatorId": "sma",
            "params": {"period": fast},
            "operator": operator,
            "value": {"indicatorId": "sma", "params": {"period": slow}},
        }

    return {
        "strategy_name": f"sma_{fast}_{slow}",
        "direction": "LONG",
        "s1_signal": {"conditions": [cond("up", "crosses_above")]},
        "z1_entry": {"conditions": [cond("above", ">")], "positionSize": {"type": "percentage", "value": 20}},
        "ze1_close": {"conditions": [cond("down", "crosses_below")]},
        "o1_cancel": {"conditions": [], "timeoutSeconds": 3600},
        "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
    }


async def run_tradewire(data: dict[str, list[Bar]], folder: Path) -> dict[str, Any]:
    db = Database(sqlite_url(folder))
    await db.start()
    finished = asyncio.Event()
    results: dict[str, Any] = {}

    def publish(topic: str, payload: dict[str, Any]) -> None:
        if topic == "session.result":
            results.update(payload)
            finished.set()

    manager = StrategyManager(db, IndicatorBank(), lambda topic, payload: None)
    controller = ExecutionController(
        db, manager, publish, max_per_user=5, max_total=5, symbols=SymbolRegistry()
    )
    await controller.start()
    datasets = {symbol: (await db.import_bars(symbol, "bench", bars)).id for symbol, bars in data.items()}
    for fast, slow in PAIRS:
        await manager.upsert(Caller("bench"), strategy(fast, slow))
    plan = {f"sma_{fast}_{slow}": sorted(data) for fast, slow in PAIRS}
    wall, cpu = time.perf_counter(), time.process_time()
    await controller.start_session(Caller("bench"), "backtest", plan, {"datasets": datasets}, None)
    await finished.wait()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await controller.stop()
    await db.stop()
    summary = results.get("summary") or {}
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "trades": summary.get("trades"),
        "status": results.get("status"),
    }


def run_backtesting_py(data: dict[str, list[Bar]]) -> dict[str, Any]:
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    class SmaCross(Strategy):  # type: ignore[misc]
        fast = 10
        slow = 30

        def init(self) -> None:
            self.a = self.I(SMA, self.data.Close, self.fast)
            self.b = self.I(SMA, self.data.Close, self.slow)

        def next(self) -> None:
            if crossover(self.a, self.b):
                self.buy(size=0.2)
            elif crossover(self.b, self.a):
                self.position.close()

    frames = {
        symbol: pd.DataFrame(
            [(b.open, b.high, b.low, b.close, b.volume) for b in bars],
            columns=["Open", "High", "Low", "Close", "Volume"],
            index=pd.to_datetime([b.ts for b in bars], unit="s"),
        )
        for symbol, bars in data.items()
    }
    seconds = trades = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for frame in frames.values():
            for fast, slow in PAIRS:
                started = time.perf_counter()
                stats = Backtest(frame, SmaCross, cash=1_000_000).run(fast=fast, slow=slow)
                seconds += time.perf_counter() - started
                trades += stats["# Trades"]
    return {"seconds": seconds, "trades": int(trades)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=500_000, help="bars per symbol")
    parser.add_argument("--symbols", type=int, default=2)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true", help="tradewire only")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    data = {f"SYM{i}": make_bars(args.bars, seed=i) for i in range(args.symbols)}
    total = args.bars * args.symbols
    with tempfile.TemporaryDirectory() as folder:
        ours = asyncio.run(run_tradewire(data, Path(folder)))
    ours["bars_per_second"] = total / ours["seconds"]
    print(f"{total:,} bars ({args.symbols} symbols × {args.bars:,}), 2 SMA-cross strategies each, one core")
    print(
        f"tradewire      {ours['bars_per_second']:>12,.0f} bars/s  {ours['seconds']:6.2f} s "
        f"(cpu {ours['cpu_seconds']:.2f} s)  trades {ours['trades']}  {ours['status']}"
    )
    record: dict[str, Any] = {"bars": total, "tradewire": ours, "time": time.time()}
    verdicts = []
    per_million = ours["seconds"] / total * 1_000_000
    verdicts.append(
        ("1M bars end to end", per_million, MILLION_TARGET_SECONDS, per_million < MILLION_TARGET_SECONDS)
    )
    if not args.skip_reference:
        ref = run_backtesting_py(data)
        ref["bars_per_second"] = total / ref["seconds"]
        record["backtesting_py"] = ref
        print(f"backtesting.py {ref['bars_per_second']:>12,.0f} bars/s  {ref['seconds']:6.2f} s  ", end="")
        print(f"trades {ref['trades']}")
        ratio = ours["bars_per_second"] / ref["bars_per_second"]
        record["ratio"] = ratio
        verdict = "PASS" if ratio >= RATIO_TARGET else "FAIL"
        print(f"ratio tradewire / backtesting.py = {ratio:.2f} (target >= {RATIO_TARGET}): {verdict}")
    print(
        f"1M bars end to end: {per_million:.2f} s (target < {MILLION_TARGET_SECONDS:.0f} s): "
        f"{'PASS' if per_million < MILLION_TARGET_SECONDS else 'FAIL'}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
