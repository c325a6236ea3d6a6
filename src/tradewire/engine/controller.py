"""The embedded reference engine as the server's ``controller``.

Owns the database, the indicator bank, the strategy manager and the market-data tasks. It talks
to the gateway only through the event bus (prices in, signals and state changes out) and through
the strategy manager's methods, which the strategy handlers call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from tradewire.bus.event_bus import EventBus
from tradewire.config import Settings
from tradewire.engine.indicators import IndicatorBank, describe_indicators
from tradewire.engine.market_data import MarketDataPublisher, SyntheticFeed
from tradewire.engine.storage.database import Database
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.ticks import Tick

_log = structlog.get_logger("tradewire.engine")
ENGINE_SUBSCRIBER = "engine"


class EmbeddedEngine:
    """What ``tradewire serve`` runs behind the gateway by default."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = Database(settings.database)
        self.bank = IndicatorBank()
        self._bus: EventBus | None = None
        self.strategies = StrategyManager(self.database, self.bank, self._publish)
        self._started = False
        self._books: dict[str, tuple[float, float]] = {}  # symbol → last (bid, ask)
        self._tasks: list[asyncio.Task[None]] = []

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self._bus is not None:
            self._bus.publish(topic, payload)

    async def start(self, bus: EventBus) -> None:
        self._bus = bus
        await self.database.start()
        await self.strategies.load()
        self._started = True
        bus.subscribe("market.*", self._on_market, name=ENGINE_SUBSCRIBER)
        symbols = self.settings.synthetic_symbols
        if symbols:
            feed = SyntheticFeed(
                symbols, seed=self.settings.synthetic_seed, interval=self.settings.synthetic_interval
            )
            sink = MarketDataPublisher(bus, feed.name)
            self._tasks.append(asyncio.get_running_loop().create_task(feed.run(sink)))
        _log.info(
            "engine.started", synthetic_symbols=symbols, database=self.settings.database.split("://")[0]
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._bus is not None:
            self._bus.unsubscribe(ENGINE_SUBSCRIBER)
        await self.database.stop()

    def _on_market(self, topic: str, payload: dict[str, Any]) -> None:
        symbol = payload.get("symbol")
        if not isinstance(symbol, str):
            return
        if topic == "market.orderbook_update":
            bid, ask = payload.get("bid"), payload.get("ask")
            if isinstance(bid, int | float) and isinstance(ask, int | float):
                self._books[symbol] = (float(bid), float(ask))
            return
        if topic != "market.price_update" or not self._started:
            return
        price, volume, ts = payload.get("price"), payload.get("volume", 0.0), payload.get("timestamp")
        if not isinstance(price, int | float) or not isinstance(ts, int | float):
            return
        bid, ask = self._books.get(symbol, (None, None))
        self.strategies.on_tick(Tick(symbol, float(price), float(volume or 0.0), float(ts), bid, ask))

    def health(self) -> dict[str, Any]:
        ready = self._started and all(not task.done() for task in self._tasks)
        return {"ready": ready, **self.strategies.health()}

    def queries(self) -> dict[str, Any]:
        return {"indicators": self._query_indicators, "datasets": self._query_datasets}

    def _query_indicators(self, conn: object, params: dict[str, Any]) -> list[dict[str, Any]]:
        return describe_indicators()

    async def _query_datasets(self, conn: object, params: dict[str, Any]) -> list[dict[str, Any]]:
        symbol = params.get("symbol")
        rows = await self.database.datasets(symbol if isinstance(symbol, str) else None)
        return [
            {
                "id": d.id,
                "symbol": d.symbol,
                "kind": d.kind,
                "rows": d.rows,
                "start_ts": d.start_ts,
                "end_ts": d.end_ts,
            }
            for d in rows
        ]
