"""What a running session does: replay a dataset (backtest) or follow the live feed (paper).

Both drive a :class:`~tradewire.engine.sessions.simulation.Simulation` and report progress
through a callback the controller throttles into ``execution_status`` events. They run on the
gateway's event loop: a backtest processes bars in chunks of :data:`CHUNK` and yields between
chunks (≈ a millisecond each), so a million-bar backtest never holds other clients up for long;
with an ``acceleration_factor`` it sleeps to keep data time at that multiple of wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from tradewire.engine.sessions.simulation import Simulation
from tradewire.engine.storage.database import BarColumns
from tradewire.engine.ticks import Tick
from tradewire.errors import SessionFailed

CHUNK = 512  # bars between yields to the event loop (~1 ms of work)
PROGRESS_INTERVAL = 0.1  # s: at most 10 execution_status events per second per session
Progress = Callable[[float, dict[str, Any]], None]  # (percent done, simulation snapshot)
Row = tuple[str, float, float, float, float, float, float]  # symbol, ts, open, high, low, close, volume
Loader = Callable[[], Awaitable[list[tuple[str, BarColumns]]]]


class Job:
    """Common stop handling: ``stop(reason)`` asks the job to end at the next chance."""

    def __init__(self, sim: Simulation, progress: Progress) -> None:
        self.sim = sim
        self._progress = progress
        self._last_progress = 0.0
        self.end_reason: str | None = None  # set when asked to stop: "stopped" | "server_shutdown"
        self._wake = asyncio.Event()

    async def run(self) -> dict[str, Any]:
        """Trade until done or stopped; returns the results document."""
        raise NotImplementedError

    def stop(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self._wake.set()

    def _report(self, percent: float, force: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        if force or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            self._progress(percent, self.sim.snapshot())


class BacktestJob(Job):
    """Replays the datasets ``load`` returns (one :class:`BarColumns` per symbol) in time order."""

    def __init__(
        self,
        sim: Simulation,
        load: Loader,
        progress: Progress,
        *,
        acceleration: float | None,
        close_at_end: bool,
    ) -> None:
        super().__init__(sim, progress)
        self._load = load
        self._data: list[tuple[str, BarColumns]] = []
        self._acceleration = acceleration
        self._close_at_end = close_at_end
        self.total = 0

    async def prepare(self) -> None:
        """Read the datasets (the session is ``starting`` meanwhile)."""
        self._data = await self._load()
        for symbol, columns in self._data:
            if not len(columns):
                raise SessionFailed(f"the dataset of {symbol} has no data")
        self.total = sum(len(columns) for _, columns in self._data)

    async def run(self) -> dict[str, Any]:
        rows = _rows(self._data)
        first = next(rows)
        self.sim.start(first[1])
        rows = _chain(first, rows)
        finished = await (self._paced(rows) if self._acceleration else self._fast(rows))
        reason = self.end_reason or ("out_of_money" if self.sim.broker.bankrupt else "end_of_data")
        self._report(100.0 if finished else self._percent(), force=True)
        return self.sim.finish(reason, self._close_at_end or self.end_reason is not None)

    async def _fast(self, rows: Iterator[Row]) -> bool:
        """As fast as possible; True when the data ran out (not stopped, not bankrupt)."""
        on_bar = self.sim.on_bar
        left = CHUNK
        for symbol, ts, o, h, low, c, volume in rows:
            if not on_bar(symbol, ts, o, h, low, c, volume):
                return False
            left -= 1
            if not left:
                left = CHUNK
                if self.end_reason is not None:
                    return False
                self._report(self._percent())
                await asyncio.sleep(0)
        return True

    async def _paced(self, rows: Iterator[Row]) -> bool:
        """``acceleration`` data seconds per wall second: sleep whenever data time runs ahead."""
        assert self._acceleration is not None
        loop = asyncio.get_running_loop()
        start_wall = loop.time()
        start_data: float | None = None
        on_bar = self.sim.on_bar
        for symbol, ts, o, h, low, c, volume in rows:
            start_data = ts if start_data is None else start_data
            delay = start_wall + (ts - start_data) / self._acceleration - loop.time()
            if delay > 0:
                self._report(self._percent())
                with contextlib.suppress(TimeoutError):  # the usual case: time for the next bar
                    await asyncio.wait_for(self._wake.wait(), delay)
            if self.end_reason is not None:
                return False
            if not on_bar(symbol, ts, o, h, low, c, volume):
                return False
        return True

    def _percent(self) -> float:
        return 100.0 * self.sim.bars / self.total if self.total else 100.0


class PaperJob(Job):
    """Trades the live feed's ticks (given by the controller) until stopped or ``max_duration``."""

    def __init__(self, sim: Simulation, progress: Progress, *, max_duration: float | None) -> None:
        super().__init__(sim, progress)
        self._max_duration = max_duration
        self.symbols = frozenset(sim.symbols)

    def on_tick(self, tick: Tick) -> None:
        if self.end_reason is not None:
            return
        if not self.sim.started:
            self.sim.start(tick.ts)
        price = tick.price
        if not self.sim.on_bar(tick.symbol, tick.ts, price, price, price, price, tick.volume):
            self.stop("out_of_money")
        self._report(0.0)

    async def run(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self._wake.wait(), self._max_duration)
        except TimeoutError:
            self.end_reason = "max_duration"
        self._report(0.0, force=True)
        return self.sim.finish(self.end_reason or "stopped", close_positions=True)


def _rows(data: list[tuple[str, BarColumns]]) -> Iterator[Row]:
    """Every bar of every symbol in time order (ties: the order the symbols were given)."""
    if len(data) == 1:
        symbol, c = data[0]
        return ((symbol, *row) for row in zip(c.ts, c.open, c.high, c.low, c.close, c.volume, strict=True))
    streams = [_keyed(k, symbol, c) for k, (symbol, c) in enumerate(data)]
    return (row for _, _, row in heapq.merge(*streams))


def _keyed(k: int, symbol: str, c: BarColumns) -> Iterator[tuple[float, int, Row]]:
    """One symbol's rows keyed for the merge (a function, so ``k`` and ``symbol`` are bound now:
    a generator expression would read them late, when the loop has moved on)."""
    for ts, o, h, low, close, volume in zip(c.ts, c.open, c.high, c.low, c.close, c.volume, strict=True):
        yield ts, k, (symbol, ts, o, h, low, close, volume)


def _chain(first: Row, rest: Iterator[Row]) -> Iterator[Row]:
    yield first
    yield from rest
