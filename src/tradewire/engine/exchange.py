"""What live trading needs from an exchange: the :class:`ExchangeAdapter` interface and its types.

Interfaces only (implementations by suffix: :mod:`tradewire.engine.exchange_ccxt`). The engine
talks to an exchange through one adapter: it connects (markets and credentials checked), submits,
cancels and amends orders, reads balances and positions, polls quotes for the live feed, and hears
about its orders through an :class:`ExchangeListener`. Contracts every adapter keeps:

* **Symbols** are the engine's canonical spelling (``BTC-USD``); the adapter maps them to its
  exchange's own (ccxt: ``BTC/USD``; Kraken itself: ``XXBTZUSD``).
* **Errors** are :class:`~tradewire.errors.ExchangeUnavailable` (try again later; a submit's
  outcome is then unknown), :class:`~tradewire.errors.ExchangeAuthFailed` (credentials) and
  :class:`~tradewire.errors.OrderRejected` (this order will never be accepted). Their messages
  are the adapter's own words, safe to show; the exchange's raw text is only logged.
* **Events** (:meth:`ExchangeListener.order_updated`, :meth:`ExchangeListener.filled`) are
  delivered on the event loop's thread, in order per order, each fill once: an adapter that
  receives them on another thread hands them over with ``loop.call_soon_threadsafe``.
* **Client order ids**: every order carries the engine's ``client_id``; after a lost reply or a
  reconnect, :meth:`ExchangeAdapter.reconcile` finds orders by it, so no order is submitted
  twice and no fill is missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class OrderState(StrEnum):
    OPEN = "open"  # accepted, not (fully) filled
    FILLED = "filled"
    CANCELLED = "cancelled"  # possibly after a partial fill (``filled`` > 0)
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self is not OrderState.OPEN


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str  # canonical (BTC-USD)
    exchange_symbol: str  # the adapter's own spelling (ccxt: BTC/USD)
    base: str
    quote: str
    min_amount: float | None = None  # smallest order, in base units


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the exchange supports through this adapter."""

    market_orders: bool = True
    limit_orders: bool = True
    amend: bool = False  # change amount/price of an open order in place
    positions: bool = False  # margin/derivative positions (spot accounts have balances only)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    client_id: str  # the engine's id of the order, unique per server (reconcile finds it)
    symbol: str
    side: str  # "buy" | "sell"
    amount: float  # base units (the adapter rounds to the market's precision)
    type: str = "market"  # "market" | "limit"
    price: float | None = None  # limit price


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An order as the exchange last reported it."""

    id: str  # the exchange's id
    client_id: str | None
    symbol: str
    side: str
    type: str
    amount: float
    price: float | None
    status: OrderState
    filled: float = 0.0  # base units executed so far
    average: float | None = None  # average fill price
    fee: float = 0.0  # in quote currency
    timestamp: float | None = None  # epoch seconds
    reason: str = ""  # why it was rejected or cancelled, in the adapter's words (safe to show)


@dataclass(frozen=True, slots=True)
class Fill:
    """Units of an order executed since the last report (a delta, never a running total)."""

    order_id: str
    client_id: str | None
    symbol: str
    side: str
    amount: float
    price: float
    fee: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    free: float
    used: float
    total: float


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    symbol: str
    side: str  # "long" | "short"
    amount: float
    entry_price: float | None


@dataclass(frozen=True, slots=True)
class Quote:
    """A ticker: the live feed's price update of an exchange symbol."""

    symbol: str
    price: float
    bid: float | None
    ask: float | None
    volume_24h: float | None
    timestamp: float | None  # epoch seconds (None: the exchange did not say)


class ExchangeListener(Protocol):
    """Hears about the orders an adapter tracks (on the event loop's thread)."""

    def order_updated(self, order: ExchangeOrder) -> None:
        """The order's status or fill changed (a final status is reported once)."""
        ...

    def filled(self, fill: Fill) -> None:
        """More of an order was executed (before the matching ``order_updated``)."""
        ...


class ExchangeAdapter(Protocol):
    """One exchange account (see the module docstring for the contracts)."""

    name: str
    capabilities: Capabilities

    def set_listener(self, listener: ExchangeListener) -> None: ...

    async def connect(self) -> dict[str, Market]:
        """Load the markets and check the credentials; the markets by canonical symbol."""
        ...

    async def close(self) -> None: ...

    async def submit_order(self, request: OrderRequest) -> ExchangeOrder:
        """Place an order and track it (its events follow through the listener)."""
        ...

    async def cancel_order(self, order: ExchangeOrder) -> None: ...

    async def amend_order(
        self, order: ExchangeOrder, amount: float | None, price: float | None
    ) -> ExchangeOrder:
        """Change an open order in place (``capabilities.amend``), or ``OrderRejected``."""
        ...

    async def fetch_order(self, order: ExchangeOrder) -> ExchangeOrder: ...

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    async def balances(self) -> dict[str, Balance]: ...

    async def positions(self) -> list[ExchangePosition]: ...

    async def quotes(self, symbols: list[str]) -> list[Quote]: ...

    async def poll(self) -> None:
        """Report changes of the tracked orders (a streaming adapter may do nothing here)."""
        ...

    async def reconcile(self) -> list[ExchangeOrder]:
        """After a reconnect (or a lost reply): re-read every tracked order and every submit
        whose outcome is unknown (by client id), report what changed; returns open orders of
        the account the engine does not track (left alone, logged)."""
        ...
