"""The engine's side of an exchange: connection, live feed, order routing, reconnect and reconcile.

One :class:`ExchangeService` per configured exchange (``TRADEWIRE_EXCHANGE``). Its task:

* connects the adapter (markets and credentials), registers the markets as known symbols and
  the polled ones (``exchange_symbols``) as live;
* every ``poll_interval``: publishes a quote of each polled symbol as a price update (source
  ``exchange:<id>``; volume = the change of the 24 h volume since the last poll) and lets the
  adapter report changes of the orders it tracks;
* on failure (``ExchangeUnavailable``): marks itself disconnected, alerts on ``health_check``,
  retries with backoff (to 30 s); when back, ``reconcile`` reports what happened meanwhile
  (fills, cancels, submits whose reply was lost) before polling resumes.

Live sessions' brokers submit and cancel through :meth:`submit` and :meth:`cancel`; the service
routes each order event to the broker that owns the order (by client order id) on the event
loop's thread (an event from another thread is handed over with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from tradewire.bus import topics
from tradewire.engine.exchange import (
    ExchangeAdapter,
    ExchangeOrder,
    Fill,
    Market,
    OrderRequest,
    OrderState,
    Quote,
)
from tradewire.engine.symbols import SymbolRegistry, SymbolSource
from tradewire.engine.ticks import Tick
from tradewire.errors import ExchangeAuthFailed, ExchangeError, ExchangeUnavailable, OrderRejected

_log = structlog.get_logger("tradewire.exchange")
BACKOFF_MAX = 30.0  # s between reconnect attempts, at most
Publish = Callable[[str, dict[str, Any]], None]
TickSink = Callable[[Tick], None]


class OrderOwner(Protocol):
    """A live session's broker, as the service sees it."""

    def exchange_update(self, order: ExchangeOrder) -> None: ...


class ExchangeService:
    """See the module docstring."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        symbols: SymbolRegistry,
        feed_symbols: list[str],
        *,
        poll_interval: float,
        publish: Publish,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.adapter = adapter
        self._symbols = symbols
        self._wanted = list(feed_symbols)
        self.feed: list[str] = []  # the wanted symbols the exchange has
        self.markets: dict[str, Market] = {}
        self._interval = poll_interval
        self._publish = publish
        self._clock = clock
        self._owners: dict[str, OrderOwner] = {}  # client order id → broker
        self._volume: dict[str, float] = {}  # last 24 h volume per symbol
        self._sink: TickSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._ever_connected = False
        self.connected = False
        self.reconnects = 0
        self.poll_errors = 0
        self.submitted = 0
        self.rejected = 0
        adapter.set_listener(self)

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def source(self) -> str:
        return f"exchange:{self.adapter.name}"

    # ------------------------------------------------------------------ lifecycle
    async def start(self, sink: TickSink) -> None:
        """Try to connect once (so a healthy exchange is ready when the server is), then run."""
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        with contextlib.suppress(ExchangeError):  # logged in _connect; the task keeps trying
            await self._connect()
        self._task = self._loop.create_task(self._run(), name=f"exchange:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.adapter.close()

    async def _run(self) -> None:
        backoff = self._interval
        while True:
            try:
                if not self.connected:
                    await self._connect()
                await self._poll()
                backoff = self._interval
            except ExchangeAuthFailed:
                backoff = BACKOFF_MAX  # logged in _connect; keys must be fixed by the operator
            except ExchangeError as exc:
                self.poll_errors += 1
                self._disconnected(exc)
                backoff = min(backoff * 2, BACKOFF_MAX)
            await asyncio.sleep(backoff)

    async def _connect(self) -> None:
        try:
            markets = await self.adapter.connect()
        except ExchangeAuthFailed:
            _log.error("exchange.credentials_refused", exchange=self.name)
            raise
        except ExchangeError:
            _log.warning("exchange.connect_failed", exchange=self.name)
            raise
        self.markets = markets
        self.feed = [symbol for symbol in self._wanted if symbol in markets]
        missing = sorted(set(self._wanted) - set(self.feed))
        if missing:
            _log.error("exchange.unknown_feed_symbols", exchange=self.name, symbols=missing)
        self._symbols.replace(SymbolSource.EXCHANGE, markets)
        self._symbols.add(SymbolSource.EXCHANGE, self.feed, live=True)
        if self._ever_connected:
            self.reconnects += 1
            strays = await self.adapter.reconcile()
            self._publish(
                topics.ALERT_EXCHANGE_RECONNECTED,
                {
                    "exchange": self.name,
                    "untracked_open_orders": [o.id for o in strays],
                    "timestamp": self._clock(),
                },
            )
        self.connected = self._ever_connected = True
        _log.info("exchange.connected", exchange=self.name, markets=len(markets), feed=self.feed)

    def _disconnected(self, exc: ExchangeError) -> None:
        if self.connected:
            self.connected = False
            _log.warning("exchange.disconnected", exchange=self.name, reason=exc.message)
            self._publish(
                topics.ALERT_EXCHANGE_DISCONNECTED,
                {"exchange": self.name, "reason": exc.message, "timestamp": self._clock()},
            )

    async def _poll(self) -> None:
        if self.feed:
            for quote in await self.adapter.quotes(self.feed):
                self._tick(quote)
        await self.adapter.poll()

    def _tick(self, quote: Quote) -> None:
        previous = self._volume.get(quote.symbol)
        total = quote.volume_24h
        volume = max(0.0, total - previous) if total is not None and previous is not None else 0.0
        if total is not None:
            self._volume[quote.symbol] = total
        if self._sink is not None:
            ts = quote.timestamp if quote.timestamp is not None else self._clock()
            self._sink(Tick(quote.symbol, quote.price, volume, ts, quote.bid, quote.ask))

    # ------------------------------------------------------------------ orders (brokers call these)
    def submit(self, owner: OrderOwner, request: OrderRequest) -> None:
        """Send ``request``; the owner hears the outcome through ``exchange_update``."""
        self._owners[request.client_id] = owner
        self.submitted += 1
        asyncio.get_running_loop().create_task(self._submit(owner, request))

    async def _submit(self, owner: OrderOwner, request: OrderRequest) -> None:
        try:
            owner.exchange_update(await self.adapter.submit_order(request))
        except (OrderRejected, ExchangeAuthFailed) as exc:
            self.rejected += 1
            self._owners.pop(request.client_id, None)
            owner.exchange_update(_refused(request, exc.message, self._clock()))
        except ExchangeUnavailable:  # the outcome is unknown: reconcile will tell
            _log.warning("exchange.submit_unknown", exchange=self.name, client_id=request.client_id)

    def cancel(self, order: ExchangeOrder) -> None:
        asyncio.get_running_loop().create_task(self._cancel(order))

    async def _cancel(self, order: ExchangeOrder) -> None:
        try:
            await self.adapter.cancel_order(order)
        except ExchangeError as exc:  # e.g. it filled first: the next poll reports what happened
            _log.info("exchange.cancel_failed", exchange=self.name, order_id=order.id, reason=exc.message)

    # ------------------------------------------------------------------ listener (the adapter calls these)
    def order_updated(self, order: ExchangeOrder) -> None:
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self.order_updated, order)
            return
        if order.client_id is None:
            return
        owner = self._owners.get(order.client_id)
        if owner is None:
            return
        if order.status.final:
            del self._owners[order.client_id]
        owner.exchange_update(order)

    def filled(self, fill: Fill) -> None:
        """Fills are folded into the order's next update (``filled``, ``average``, ``fee``)."""
        _log.debug("exchange.fill", exchange=self.name, order_id=fill.order_id, amount=fill.amount)

    def health(self) -> dict[str, Any]:
        return {
            "exchange": self.name,
            "exchange_connected": self.connected,
            "exchange_markets": len(self.markets),
            "exchange_reconnects": self.reconnects,
            "exchange_poll_errors": self.poll_errors,
            "exchange_orders_submitted": self.submitted,
            "exchange_orders_rejected": self.rejected,
            "exchange_orders_open": len(self._owners),
        }


def _refused(request: OrderRequest, reason: str, now: float) -> ExchangeOrder:
    return ExchangeOrder(
        "", request.client_id, request.symbol, request.side, request.type, request.amount, request.price,
        OrderState.REJECTED, timestamp=now, reason=reason,
    )  # fmt: skip
