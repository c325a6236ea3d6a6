"""The :class:`~tradewire.engine.exchange.ExchangeAdapter` on ccxt's async API (``tradewire[exchange]``).

Any exchange ccxt supports, by its id (``kraken``, ``binance``, ...), with credentials from the
settings (``SecretStr``: never logged, never in an error). Orders are tracked by polling
(``fetch_order`` per open order each poll interval) and turned into order and fill events; quotes
come from ``fetch_tickers``. ccxt's exceptions are translated in one place (:func:`_translate`):
network trouble, maintenance and rate limits → ``ExchangeUnavailable``; credentials →
``ExchangeAuthFailed``; anything the exchange refuses about an order → ``OrderRejected`` with a
short reason of ours (the exchange's own text goes to the log only).

``api_url`` replaces the scheme and host of every API URL ccxt knows for the exchange (keeping
paths): a corporate gateway, a testnet host, or the tests' local stand-in of the exchange.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import structlog

from tradewire.engine.exchange import (
    Balance,
    Capabilities,
    ExchangeListener,
    ExchangeOrder,
    ExchangePosition,
    Fill,
    Market,
    OrderRequest,
    OrderState,
    Quote,
)
from tradewire.engine.symbols import canonical
from tradewire.errors import (
    ConfigError,
    ExchangeAuthFailed,
    ExchangeError,
    ExchangeUnavailable,
    OrderRejected,
)

_log = structlog.get_logger("tradewire.exchange")
T = TypeVar("T")
_STATUS = {
    "open": OrderState.OPEN,
    "closed": OrderState.FILLED,
    "canceled": OrderState.CANCELLED,
    "cancelled": OrderState.CANCELLED,
    "rejected": OrderState.REJECTED,
    "expired": OrderState.EXPIRED,
}
_REASONS = (  # ccxt exception class name → what a client is told about a refused order
    ("InsufficientFunds", "insufficient funds"),
    ("OrderNotFound", "order not found"),
    ("InvalidOrder", "invalid order (size, price or market)"),
    ("BadSymbol", "unknown market"),
    ("NotSupported", "not supported by the exchange"),
)
RECONCILE_CLOSED_LIMIT = 200  # recent closed orders searched for a submit whose reply was lost


def _ccxt() -> Any:
    try:
        return importlib.import_module("ccxt.async_support")
    except ImportError as exc:
        raise ConfigError("live trading needs ccxt: pip install 'tradewire[exchange]'") from exc


def _translate(exc: Exception, what: str) -> ExchangeError:
    """The domain error for a ccxt exception (the one place they are mapped)."""
    ccxt = _ccxt()
    if isinstance(exc, ccxt.AuthenticationError):
        return ExchangeAuthFailed(f"the exchange refused the credentials ({what})")
    if isinstance(exc, ccxt.NetworkError | ccxt.OnMaintenance):
        return ExchangeUnavailable(f"the exchange is unreachable ({what})")
    names = {cls.__name__ for cls in type(exc).__mro__}
    reason = next((text for name, text in _REASONS if name in names), "refused by the exchange")
    return OrderRejected(f"{what}: {reason}")


class CcxtAdapter:
    """One ccxt exchange account (see the module docstring)."""

    def __init__(
        self,
        exchange_id: str,
        *,
        api_key: str | None = None,
        secret: str | None = None,
        password: str | None = None,
        api_url: str = "",
        sandbox: bool = False,
        timeout: float = 10.0,
        config: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        ccxt = _ccxt()
        if exchange_id not in ccxt.exchanges:
            raise ConfigError(f"unknown exchange {exchange_id!r} (ccxt ids: kraken, binance, ...)")
        options: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout * 1000)}
        options.update(config or {})
        options.update(
            {k: v for k, v in (("apiKey", api_key), ("secret", secret), ("password", password)) if v}
        )
        self._x: Any = getattr(ccxt, exchange_id)(options)
        if sandbox:
            self._x.set_sandbox_mode(True)
        if api_url:
            self._x.urls["api"] = _rebase(self._x.urls["api"], api_url)
        self.name = exchange_id
        has = self._x.has
        self.capabilities = Capabilities(
            market_orders=bool(has.get("createMarketOrder", True)),
            limit_orders=bool(has.get("createLimitOrder", True)),
            amend=bool(has.get("editOrder")),
            positions=bool(has.get("fetchPositions")),
        )
        self._clock = clock
        self._listener: ExchangeListener | None = None
        self._markets: dict[str, Market] = {}
        self._by_exchange: dict[str, str] = {}  # ccxt symbol → canonical
        self._tracked: dict[str, ExchangeOrder] = {}  # open orders by exchange id
        self._unknown: dict[str, OrderRequest] = {}  # submits whose reply was lost, by client id

    def set_listener(self, listener: ExchangeListener) -> None:
        self._listener = listener

    async def _call(self, what: str, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        try:
            return await call(*args, **kwargs)
        except ExchangeError:
            raise
        except Exception as exc:
            if not isinstance(exc, _ccxt().BaseError):
                raise  # not the exchange's doing: a bug to see, not an order to reject
            error = _translate(exc, what)
            _log.warning(
                "exchange.call_failed",
                exchange=self.name,
                call=what,
                error=type(exc).__name__,
                detail=str(exc)[:300],
            )
            raise error from exc

    # ------------------------------------------------------------------ connection
    async def connect(self) -> dict[str, Market]:
        markets = await self._call("load markets", self._x.load_markets, True)
        if self._x.apiKey:
            await self._call("check credentials", self._x.fetch_balance)
        self._markets = {}
        for market in markets.values():
            if not market.get("spot") or market.get("active") is False:
                continue
            symbol = canonical(market["symbol"])
            limits = market.get("limits") or {}
            amount = limits.get("amount") or {}
            self._markets[symbol] = Market(
                symbol, market["symbol"], market["base"], market["quote"], amount.get("min")
            )
        self._by_exchange = {m.exchange_symbol: s for s, m in self._markets.items()}
        return dict(self._markets)

    async def close(self) -> None:
        await self._x.close()

    def _market(self, symbol: str) -> Market:
        market = self._markets.get(symbol)
        if market is None:
            raise OrderRejected(f"{symbol[:32]} is not a market of {self.name}")
        return market

    # ------------------------------------------------------------------ orders
    async def submit_order(self, request: OrderRequest) -> ExchangeOrder:
        market = self._market(request.symbol)
        params = {"clientOrderId": request.client_id}
        try:
            raw = await self._call(
                "submit order",
                self._x.create_order,
                market.exchange_symbol,
                request.type,
                request.side,
                request.amount,
                request.price,
                params,
            )
        except ExchangeUnavailable:
            self._unknown[request.client_id] = request  # it may have arrived: reconcile looks it up
            raise
        order = self._order(raw, _from_request(request))
        self._tracked[order.id] = order
        return order

    async def cancel_order(self, order: ExchangeOrder) -> None:
        await self._call(
            "cancel order", self._x.cancel_order, order.id, self._market(order.symbol).exchange_symbol
        )

    async def amend_order(
        self, order: ExchangeOrder, amount: float | None, price: float | None
    ) -> ExchangeOrder:
        if not self.capabilities.amend:
            raise OrderRejected(f"{self.name} cannot amend orders")
        market = self._market(order.symbol)
        await self._call(
            "amend order",
            self._x.edit_order,
            order.id,
            market.exchange_symbol,
            order.type,
            order.side,
            amount,
            price,
        )
        return await self.fetch_order(order)

    async def fetch_order(self, order: ExchangeOrder) -> ExchangeOrder:
        raw = await self._call(
            "fetch order", self._x.fetch_order, order.id, self._market(order.symbol).exchange_symbol
        )
        return self._order(raw, order)

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        exchange_symbol = self._market(symbol).exchange_symbol if symbol is not None else None
        raws = await self._call("open orders", self._x.fetch_open_orders, exchange_symbol)
        return [self._order(raw) for raw in raws if raw.get("symbol") in self._by_exchange]

    # ------------------------------------------------------------------ account and prices
    async def balances(self) -> dict[str, Balance]:
        raw = await self._call("balances", self._x.fetch_balance)
        out = {}
        for currency, total in (raw.get("total") or {}).items():
            out[currency] = Balance(
                currency,
                float(raw.get("free", {}).get(currency) or 0.0),
                float(raw.get("used", {}).get(currency) or 0.0),
                float(total or 0.0),
            )
        return out

    async def positions(self) -> list[ExchangePosition]:
        if not self.capabilities.positions:
            return []
        raws = await self._call("positions", self._x.fetch_positions)
        return [
            ExchangePosition(
                self._by_exchange.get(raw.get("symbol", ""), canonical(raw.get("symbol", ""))),
                str(raw.get("side") or "long"),
                float(raw.get("contracts") or 0.0),
                raw.get("entryPrice"),
            )
            for raw in raws
        ]

    async def quotes(self, symbols: list[str]) -> list[Quote]:
        wanted = [self._markets[s].exchange_symbol for s in symbols if s in self._markets]
        if not wanted:
            return []
        tickers = await self._call("quotes", self._x.fetch_tickers, wanted)
        out = []
        for exchange_symbol, ticker in tickers.items():
            last = ticker.get("last")
            symbol = self._by_exchange.get(exchange_symbol)
            if symbol is None or last is None:
                continue
            stamp = ticker.get("timestamp")
            out.append(
                Quote(
                    symbol,
                    float(last),
                    _float(ticker.get("bid")),
                    _float(ticker.get("ask")),
                    _float(ticker.get("baseVolume")),
                    stamp / 1000 if stamp else None,
                )
            )
        return out

    # ------------------------------------------------------------------ events
    async def poll(self) -> None:
        """``fetch_order`` for every tracked open order, and a search for submits whose reply was
        lost; report what changed."""
        for order in list(self._tracked.values()):
            self._changed(order, await self.fetch_order(order))
        if self._unknown:
            await self._find_lost()

    async def reconcile(self) -> list[ExchangeOrder]:
        """Re-read tracked orders, find lost submits by client id, report untracked open orders."""
        await self.poll()
        tracked_clients = {o.client_id for o in self._tracked.values()}
        strays = [o for o in await self.open_orders() if o.id not in self._tracked]
        strays = [o for o in strays if o.client_id not in tracked_clients]
        for stray in strays:
            _log.warning(
                "exchange.untracked_open_order", exchange=self.name, order_id=stray.id, symbol=stray.symbol
            )
        return strays

    async def _find_lost(self) -> None:
        """Submits whose reply was lost: in the open or recent closed orders (by client id), they
        are tracked and reported; absent, they never reached the exchange (reported rejected)."""
        raws = [
            *await self._call("open orders", self._x.fetch_open_orders),
            *await self._call(
                "closed orders", self._x.fetch_closed_orders, None, None, RECONCILE_CLOSED_LIMIT
            ),
        ]
        found = {raw.get("clientOrderId"): raw for raw in raws}
        for client_id, request in list(self._unknown.items()):
            del self._unknown[client_id]
            raw = found.get(client_id)
            if raw is None:
                self._emit_order(_never_arrived(request, self._clock()))
                continue
            placeholder = ExchangeOrder(
                str(raw["id"]),
                client_id,
                request.symbol,
                request.side,
                request.type,
                request.amount,
                None,
                OrderState.OPEN,
            )
            self._tracked[placeholder.id] = placeholder
            self._changed(placeholder, self._order(raw, placeholder))

    def _changed(self, before: ExchangeOrder, after: ExchangeOrder) -> None:
        if after.filled > before.filled:
            self._emit_fill(_fill(before, after, self._clock()))
        if after.status.final:
            self._tracked.pop(after.id, None)
        else:
            self._tracked[after.id] = after
        if after.status is not before.status or after.filled != before.filled:
            self._emit_order(after)

    def _emit_order(self, order: ExchangeOrder) -> None:
        if self._listener is not None:
            self._listener.order_updated(order)

    def _emit_fill(self, fill: Fill) -> None:
        if self._listener is not None:
            self._listener.filled(fill)

    def _order(self, raw: dict[str, Any], base: ExchangeOrder | None = None) -> ExchangeOrder:
        """ccxt's order structure as ours; what a sparse reply (e.g. a create) lacks comes from
        ``base`` (the request, or the last known state)."""
        if base is None:
            base = ExchangeOrder(
                "", None, canonical(raw.get("symbol") or ""), "", "market", 0.0, None, OrderState.OPEN
            )
        fee = raw.get("fee") or {}
        stamp = raw.get("timestamp")
        return ExchangeOrder(
            id=str(raw.get("id") or base.id),
            client_id=raw.get("clientOrderId") or base.client_id,
            symbol=self._by_exchange.get(raw.get("symbol") or "", base.symbol),
            side=raw.get("side") or base.side,
            type=raw.get("type") or base.type,
            amount=_number(raw.get("amount"), base.amount),
            price=_float(raw.get("price")) or base.price,
            status=_STATUS.get(raw.get("status") or "", base.status),
            filled=_number(raw.get("filled"), base.filled),
            average=_float(raw.get("average")) or base.average,
            fee=_number(fee.get("cost"), base.fee),
            timestamp=stamp / 1000 if stamp else base.timestamp,
        )


def _from_request(request: OrderRequest) -> ExchangeOrder:
    return ExchangeOrder(
        "", request.client_id, request.symbol, request.side, request.type, request.amount, request.price,
        OrderState.OPEN,
    )  # fmt: skip


def _number(value: Any, default: float) -> float:
    return float(value) if value is not None else default


def _rebase(urls: Any, base: str) -> Any:
    """Every URL in ccxt's ``urls['api']`` (a string or nested dict) with ``base``'s scheme and host."""
    if isinstance(urls, dict):
        return {key: _rebase(value, base) for key, value in urls.items()}
    if not isinstance(urls, str):
        return urls
    target, url = urlsplit(base), urlsplit(urls)
    return urlunsplit(
        (target.scheme, target.netloc, target.path.rstrip("/") + url.path, url.query, url.fragment)
    )


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _fill(before: ExchangeOrder, after: ExchangeOrder, now: float) -> Fill:
    """The units executed between two reports, at their own average price."""
    amount = after.filled - before.filled
    cost_before = before.filled * (before.average or 0.0)
    cost_after = after.filled * (after.average or 0.0)
    price = (cost_after - cost_before) / amount if after.average is not None else 0.0
    return Fill(
        after.id,
        after.client_id,
        after.symbol,
        after.side,
        amount,
        price,
        after.fee - before.fee,
        after.timestamp or now,
    )


def _never_arrived(request: OrderRequest, now: float) -> ExchangeOrder:
    return ExchangeOrder(
        "", request.client_id, request.symbol, request.side, request.type, request.amount, request.price,
        OrderState.REJECTED, timestamp=now, reason="never reached the exchange",
    )  # fmt: skip
