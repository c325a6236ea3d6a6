"""A finished session gives back its equity curve, orders and trades at once.

Machines, broker and simulation reference each other, so the set outlives the session until the
garbage collector's next full pass; what it accumulated must not wait for that (see
``Simulation.release``). Found by reading the soak's memory with ``gc.DEBUG_SAVEALL``.
"""

from __future__ import annotations

import gc
from typing import Any

from tests.unit.test_handlers import Engine, engine  # noqa: F401 - the fixture
from tradewire.controller import Caller
from tradewire.engine.broker import Order, Trade

GOOG_SMA = {"sma": ["GOOG"]}


async def _backtest(engine: Engine) -> dict[str, Any]:  # noqa: F811
    record = await engine.controller.start_session(
        Caller("alice"), "backtest", GOOG_SMA, {"dataset_id": 1}, None
    )
    await engine.finished(record["session_id"])
    return record


async def test_a_finished_backtest_leaves_nothing_big_to_the_collector(engine: Engine) -> None:  # noqa: F811
    await _backtest(engine)  # first-use caches
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await _backtest(engine)
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    trades = [o for o in garbage if isinstance(o, (Order, Trade))]
    long_lists = [len(o) for o in garbage if isinstance(o, list) and len(o) > 100]
    assert not trades, f"{len(trades)} orders and trades left to the collector"
    assert not long_lists, f"lists of {long_lists} items left to the collector (the equity curve?)"
    assert len(garbage) < 500
