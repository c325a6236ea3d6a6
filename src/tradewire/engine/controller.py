"""The embedded reference engine as the server's ``controller``.

Owns the database, the indicator bank, the symbol registry, the strategy manager, the execution
controller (sessions), data collection and the market-data tasks. It talks to the gateway only
through the event bus (prices in; signals, state changes and session events out) and through the
services' methods, which the handlers call.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any, TypeGuard

import structlog
from pydantic import SecretStr

from tradewire.bus import topics
from tradewire.bus.event_bus import EventBus
from tradewire.config import Settings
from tradewire.engine.collection import CollectionManager
from tradewire.engine.exchange import ExchangeAdapter
from tradewire.engine.exchange_service import ExchangeService
from tradewire.engine.indicators import IndicatorBank, describe_indicators
from tradewire.engine.market_data import MarketDataPublisher, MarketDataSource, ReplayFeed, SyntheticFeed
from tradewire.engine.sessions.controller import ExecutionController
from tradewire.engine.sessions.live import FLATTEN_WAIT
from tradewire.engine.storage.collections import CollectionStorage
from tradewire.engine.storage.database import Database
from tradewire.engine.strategy_manager import StrategyManager
from tradewire.engine.symbols import SymbolRegistry, SymbolSource, replay_symbol
from tradewire.engine.ticks import Tick

_log = structlog.get_logger("tradewire.engine")


def _always() -> bool:
    return True


def _finite(value: object) -> TypeGuard[float]:
    """A real number (not bool), neither NaN nor infinite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


ENGINE_SUBSCRIBER = "engine"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def ccxt_adapter(settings: Settings) -> ExchangeAdapter:
    """The ccxt adapter the settings describe (``TRADEWIRE_EXCHANGE`` and its credentials)."""
    from tradewire.engine.exchange_ccxt import CcxtAdapter

    return CcxtAdapter(
        settings.exchange,
        api_key=_secret(settings.exchange_api_key),
        secret=_secret(settings.exchange_api_secret),
        password=_secret(settings.exchange_password),
        api_url=settings.exchange_api_url,
        sandbox=settings.exchange_sandbox,
        timeout=settings.exchange_timeout,
        config=settings.exchange_config,
    )


class EmbeddedEngine:
    """What ``tradewire serve`` runs behind the gateway by default.

    Live trading goes through ``exchange`` (any :class:`~tradewire.engine.exchange.ExchangeAdapter`),
    or, when none is given and ``settings.exchange`` names one, through ccxt; without either,
    ``live`` sessions answer ``live_trading_unavailable``.
    """

    def __init__(self, settings: Settings, exchange: ExchangeAdapter | None = None) -> None:
        self.settings = settings
        self.database = Database(settings.database)
        self.bank = IndicatorBank()
        self.symbols = SymbolRegistry()
        self.symbols.add(SymbolSource.SYNTHETIC, settings.synthetic_symbols)
        self._bus: EventBus | None = None
        # Cluster mode (docs/CLUSTER.md): only the node holding the leader lease runs the feeds and
        # feeds the live strategies, whose events it alone publishes; sessions run on every node.
        self.leading: Callable[[], bool] = _always
        self.strategies = StrategyManager(self.database, self.bank, self._publish_live, symbols=self.symbols)
        if exchange is None and settings.exchange:
            exchange = ccxt_adapter(settings)
        self.exchange = (
            ExchangeService(
                exchange,
                self.symbols,
                settings.exchange_symbols,
                poll_interval=settings.exchange_poll_interval,
                publish=self._publish,
            )
            if exchange is not None
            else None
        )
        self.sessions = ExecutionController(
            self.database,
            self.strategies,
            self._publish,
            max_per_user=settings.max_sessions_per_user,
            max_total=settings.max_sessions_total,
            symbols=self.symbols,
            exchange=self.exchange,
            interrupt_at_start=not settings.redis_url,  # in a cluster, leases tell (cluster/jobs.py)
        )
        self.collections = CollectionManager(
            CollectionStorage(self.database),
            self.symbols,
            max_per_user=settings.max_collections_per_user,
            buffer_rows=settings.collection_buffer_rows,
            flush_interval=settings.collection_flush_interval,
        )
        self._started = False
        self._books: dict[str, tuple[float, float]] = {}  # symbol → last (bid, ask)
        self.rejected_ticks = 0  # bus price events ignored as malformed
        self._tasks: list[asyncio.Task[None]] = []
        self._sources_ready: list[MarketDataSource] = []

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self._bus is not None:
            self._bus.publish(topic, payload)

    def _publish_live(self, topic: str, payload: dict[str, Any]) -> None:
        if self.leading():
            self._publish(topic, payload)

    async def start(self, bus: EventBus) -> None:
        self._bus = bus
        settings = self.settings
        await self.database.start()
        try:
            await self.strategies.load(settings.synthetic_symbols or None)
            await self.sessions.start()
            await self.collections.start()
            sources = await self._sources()
        except BaseException:
            await self.database.stop()
            raise
        self._started = True
        bus.subscribe(topics.MARKET_ALL, self._on_market, name=ENGINE_SUBSCRIBER)
        self._sources_ready = sources
        if self.leading():
            self.start_feeds()
        if self.exchange is not None:
            quotes = MarketDataPublisher(bus, self.exchange.source)
            # every node routes its own live sessions' orders; only the leader publishes quotes
            await self.exchange.start(lambda tick: quotes(tick) if self.leading() else None)
        _log.info(
            "engine.started",
            sources=[source.name for source in sources],
            synthetic_symbols=settings.synthetic_symbols,
            database=settings.database.split("://")[0],
        )

    def start_feeds(self) -> None:
        """Run the market-data sources (at start; in a cluster when this node becomes leader)."""
        if self._tasks or self._bus is None:
            return
        loop = asyncio.get_running_loop()
        for source in self._sources_ready:
            self._tasks.append(loop.create_task(source.run(MarketDataPublisher(self._bus, source.name))))

    async def stop_feeds(self) -> None:
        """Stop the market-data sources (shutdown; in a cluster when leadership is lost)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _sources(self) -> list[MarketDataSource]:
        """The synthetic live feed (if symbols are configured) and a dataset replay (if asked)."""
        settings = self.settings
        sources: list[MarketDataSource] = []
        if settings.synthetic_symbols:
            sources.append(
                SyntheticFeed(
                    settings.synthetic_symbols,
                    seed=settings.synthetic_seed,
                    interval=settings.synthetic_interval,
                )
            )
        if settings.replay_dataset is not None:
            ticks = await self.database.load_ticks(settings.replay_dataset)
            if ticks:
                self.symbols.add(SymbolSource.REPLAY, [replay_symbol(ticks[0].symbol)])
            sources.append(ReplayFeed(ticks, settings.replay_speed or None, namespace=True))
        return sources

    async def stop(self) -> None:
        await self.stop_feeds()
        if self._bus is not None:
            self._bus.unsubscribe(ENGINE_SUBSCRIBER)
        await self.collections.stop()  # commits what the collections buffered
        await self.sessions.stop(self._stop_wait())  # live sessions close their positions first
        if self.exchange is not None:
            await self.exchange.stop()
        self.strategies.stop_all()
        self._started = False
        await self.database.stop()

    def _on_market(self, topic: str, payload: dict[str, Any]) -> None:
        symbol = payload.get("symbol")
        if not isinstance(symbol, str):
            return
        if topic == topics.MARKET_ORDERBOOK_UPDATE:
            bid, ask = payload.get("bid"), payload.get("ask")
            if _finite(bid) and _finite(ask) and 0 < bid <= ask:
                self._books[symbol] = (float(bid), float(ask))
            return
        if topic != topics.MARKET_PRICE_UPDATE or not self._started:
            return
        price, volume, ts = payload.get("price"), payload.get("volume", 0.0), payload.get("timestamp")
        if not (_finite(price) and price > 0 and _finite(ts) and _finite(volume) and volume >= 0):
            self.rejected_ticks += 1  # NaN/inf/negative would poison the symbol's indicators for good
            return
        bid, ask = self._books.get(symbol, (None, None))
        tick = Tick(symbol, float(price), float(volume), float(ts), bid, ask)
        if self.leading():
            self.strategies.on_tick(tick)
        self.sessions.on_tick(tick)
        self.collections.on_tick(tick)

    def health(self) -> dict[str, Any]:
        failed = [t for t in self._tasks if t.done() and not t.cancelled() and t.exception() is not None]
        ready = self._started and not failed
        return {
            "ready": ready,
            "rejected_ticks": self.rejected_ticks,
            **self.strategies.health(),
            **self.sessions.health(),
            **self.collections.health(),
            **(self.exchange.health() if self.exchange is not None else {}),
        }

    def _stop_wait(self) -> float:
        """Sessions get longer to end when live ones must close positions on the exchange."""
        return FLATTEN_WAIT + 5.0 if self.exchange is not None else 5.0

    def queries(self) -> dict[str, Any]:
        return {
            "indicators": self._query_indicators,
            "datasets": self._query_datasets,
            "symbols": self._query_symbols,
        }

    def _query_symbols(self, conn: object, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.symbols.describe()

    def _query_indicators(self, conn: object, params: dict[str, Any]) -> list[dict[str, Any]]:
        return describe_indicators()

    async def _query_datasets(self, conn: object, params: dict[str, Any]) -> list[dict[str, Any]]:
        symbol = params.get("symbol")
        return await self.sessions.datasets(symbol if isinstance(symbol, str) else None)
