"""A local stand-in for Kraken's REST API: the one fake in the project, at the one boundary that
cannot run here (a real exchange account).

It serves what ccxt's ``kraken`` class calls — ``public/Assets``, ``public/AssetPairs``,
``public/Ticker``, and the signed ``private/BalanceEx``, ``AddOrder``, ``CancelOrder``,
``AmendOrder``, ``QueryOrders``, ``OpenOrders``, ``ClosedOrders``, ``OpenPositions`` — in Kraken's
documented shapes (``{"error": [...], "result": ...}``), on 127.0.0.1 only. Private calls are
checked as Kraken checks them: ``API-Key``, ``API-Sign`` = base64(HMAC-SHA512(base64-decoded
secret, path + SHA-256(nonce + body))) and a nonce that must grow. Kraken was chosen because its
API is small, form-encoded and fully documented, and because its own names (``XXBTZUSD``,
``XBT``) exercise the symbol mapping: ccxt says ``BTC/USD``, the engine ``BTC-USD``.

Behaviour: market orders fill at once at the pair's last price (buying at the ask, selling at
the bid would add nothing here); limit orders rest until :meth:`KrakenStandIn.fill` is called.
Balances are checked and moved (a 0.26 % fee in USD). ``down = True`` answers 503 to
everything (ccxt: ``ExchangeNotAvailable``); orders can still be filled meanwhile, as a real
exchange fills while a client is disconnected. ``lose_replies`` processes a call and then answers
503, as when a reply is lost on the way back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import serve_asgi

API_KEY = "standin-key"
API_SECRET = base64.b64encode(b"standin-secret-0123456789abcdef").decode()
FEE = 0.0026
PAIRS = {  # Kraken pair id → (altname, base asset, quote asset)
    "XXBTZUSD": ("XBTUSD", "XXBT", "ZUSD"),
    "XETHZUSD": ("ETHUSD", "XETH", "ZUSD"),
}
ASSETS = {"XXBT": ("XBT", 10), "XETH": ("ETH", 10), "ZUSD": ("USD", 4)}


@dataclass
class StandInOrder:
    txid: str
    pair: str
    side: str
    ordertype: str
    volume: float
    price: float | None
    cl_ord_id: str | None
    opentm: float
    status: str = "open"
    vol_exec: float = 0.0
    cost: float = 0.0
    fee: float = 0.0
    closetm: float | None = None

    def to_kraken(self) -> dict[str, Any]:
        altname = PAIRS[self.pair][0]
        return {
            "refid": None,
            "userref": 0,
            "cl_ord_id": self.cl_ord_id,
            "status": self.status,
            "reason": None,
            "opentm": self.opentm,
            "closetm": self.closetm,
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": altname,
                "type": self.side,
                "ordertype": self.ordertype,
                "price": f"{self.price or 0:.1f}",
                "price2": "0",
                "leverage": "none",
                "order": f"{self.side} {self.volume:.8f} {altname} @ {self.ordertype}",
                "close": "",
            },
            "vol": f"{self.volume:.8f}",
            "vol_exec": f"{self.vol_exec:.8f}",
            "cost": f"{self.cost:.5f}",
            "fee": f"{self.fee:.5f}",
            "price": f"{self.cost / self.vol_exec:.5f}" if self.vol_exec else "0.00000",
            "stopprice": "0.00000",
            "limitprice": "0.00000",
            "misc": "",
            "oflags": "fciq",
        }


@dataclass
class KrakenStandIn:
    """The exchange's state; the test drives prices, fills and outages through it."""

    prices: dict[str, float] = field(default_factory=lambda: {"XXBTZUSD": 64_000.0, "XETHZUSD": 3_200.0})
    balances: dict[str, float] = field(default_factory=lambda: {"ZUSD": 100_000.0, "XXBT": 0.0, "XETH": 0.0})
    orders: dict[str, StandInOrder] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    down: bool = False
    lose_replies: int = 0  # process the next private calls, then answer 503 (a reply lost on the way)
    last_nonce: int = 0
    volume: float = 1_000.0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ test controls
    def set_price(self, pair: str, price: float) -> None:
        self.prices[pair] = price
        self.volume += 1.5

    def fill(self, txid: str, price: float | None = None) -> None:
        """Execute a resting order in full (at ``price``, default its limit)."""
        order = self.orders[txid]
        self._execute(order, price if price is not None else order.price or self.prices[order.pair])

    def submitted(self) -> list[StandInOrder]:
        return list(self.orders.values())

    # ------------------------------------------------------------------ exchange logic
    def _execute(self, order: StandInOrder, price: float) -> None:
        base, quote = PAIRS[order.pair][1:]
        left = order.volume - order.vol_exec
        cost = left * price
        fee = cost * FEE
        sign = 1 if order.side == "buy" else -1
        self.balances[base] = self.balances.get(base, 0.0) + sign * left
        self.balances[quote] = self.balances.get(quote, 0.0) - sign * cost - fee
        order.vol_exec, order.cost, order.fee = order.volume, order.cost + cost, order.fee + fee
        order.status, order.closetm = "closed", time.time()

    def _refusal(self, form: dict[str, str]) -> str | None:
        pair = form.get("pair", "")
        if pair not in PAIRS:
            return "EQuery:Unknown asset pair"
        volume = float(form.get("volume", "0"))
        if volume < 0.0001:
            return "EOrder:Order minimum not met"
        price = float(form["price"]) if form.get("price") else self.prices[pair]
        base, quote = PAIRS[pair][1:]
        if form.get("type") == "buy" and volume * price * (1 + FEE) > self.balances.get(quote, 0.0):
            return "EOrder:Insufficient funds"
        if form.get("type") == "sell" and volume > self.balances.get(base, 0.0) + 1e-12:
            return "EOrder:Insufficient funds"
        return None

    def add_order(self, form: dict[str, str]) -> dict[str, Any]:
        refusal = self._refusal(form)
        if refusal is not None:
            return {"error": [refusal]}
        txid = f"O{next(self._ids):05d}-{secrets.token_hex(2).upper()}-STAND"
        order = StandInOrder(
            txid,
            form["pair"],
            form["type"],
            form["ordertype"],
            float(form["volume"]),
            float(form["price"]) if form.get("price") else None,
            form.get("cl_ord_id"),
            time.time(),
        )
        self.orders[txid] = order
        if order.ordertype == "market":
            self._execute(order, self.prices[order.pair])
        return _ok({"descr": {"order": order.to_kraken()["descr"]["order"]}, "txid": [txid]})

    def cancel_order(self, form: dict[str, str]) -> dict[str, Any]:
        order = self.orders.get(form.get("txid", ""))
        if order is None or order.status != "open":
            return {"error": ["EOrder:Unknown order"]}
        order.status, order.closetm = "canceled", time.time()
        return _ok({"count": 1})

    def amend_order(self, form: dict[str, str]) -> dict[str, Any]:
        order = self.orders.get(form.get("txid", ""))
        if order is None or order.status != "open":
            return {"error": ["EOrder:Unknown order"]}
        if form.get("order_qty"):
            order.volume = float(form["order_qty"])
        if form.get("limit_price"):
            order.price = float(form["limit_price"])
        return _ok({"amend_id": "T" + secrets.token_hex(6).upper()})

    def query(self, form: dict[str, str]) -> dict[str, Any]:
        found = {
            txid: self.orders[txid].to_kraken()
            for txid in form.get("txid", "").split(",")
            if txid in self.orders
        }
        if not found:
            return {"error": ["EOrder:Invalid order"]}
        return _ok(found)

    def listing(self, status: str) -> dict[str, Any]:
        chosen = {
            o.txid: o.to_kraken() for o in self.orders.values() if (o.status == "open") == (status == "open")
        }
        return _ok({status: chosen, "count": len(chosen)})

    def balance_ex(self) -> dict[str, Any]:
        held = dict.fromkeys(self.balances, 0.0)
        return _ok(
            {a: {"balance": f"{v:.8f}", "hold_trade": f"{held[a]:.8f}"} for a, v in self.balances.items()}
        )

    def ticker(self, pairs: str) -> dict[str, Any]:
        result = {}
        for pair in pairs.split(",") if pairs else PAIRS:
            price = self.prices[pair]
            result[pair] = {
                "a": [f"{price * 1.0001:.1f}", "1", "1.000"],
                "b": [f"{price * 0.9999:.1f}", "1", "1.000"],
                "c": [f"{price:.1f}", "0.01"],
                "v": [f"{self.volume:.4f}", f"{self.volume:.4f}"],
                "p": [f"{price:.1f}", f"{price:.1f}"],
                "t": [10, 20],
                "l": [f"{price * 0.9:.1f}", f"{price * 0.9:.1f}"],
                "h": [f"{price * 1.1:.1f}", f"{price * 1.1:.1f}"],
                "o": f"{price:.1f}",
            }
        return _ok(result)

    def check_signature(self, request: Request, body: bytes, form: dict[str, str]) -> str | None:
        if request.headers.get("API-Key") != API_KEY:
            return "EAPI:Invalid key"
        nonce = form.get("nonce", "")
        message = request.url.path.encode() + hashlib.sha256(nonce.encode() + body).digest()
        expected = base64.b64encode(hmac.new(base64.b64decode(API_SECRET), message, hashlib.sha512).digest())
        if not hmac.compare_digest(expected.decode(), request.headers.get("API-Sign", "")):
            return "EAPI:Invalid signature"
        if not nonce.isdigit() or int(nonce) <= self.last_nonce:
            return "EAPI:Invalid nonce"
        self.last_nonce = int(nonce)
        return None


def _ok(result: Any) -> dict[str, Any]:
    return {"error": [], "result": result}


def _assets() -> dict[str, Any]:
    return _ok(
        {
            asset: {
                "aclass": "currency",
                "altname": alt,
                "decimals": decimals,
                "display_decimals": 5,
                "status": "enabled",
            }
            for asset, (alt, decimals) in ASSETS.items()
        }
    )


def _asset_pairs() -> dict[str, Any]:
    fees = [[0, 0.26], [50000, 0.24]]
    return _ok(
        {
            pair: {
                "altname": alt,
                "wsname": f"{ASSETS[base][0]}/{ASSETS[quote][0]}",
                "aclass_base": "currency",
                "base": base,
                "aclass_quote": "currency",
                "quote": quote,
                "lot": "unit",
                "pair_decimals": 1,
                "lot_decimals": 8,
                "lot_multiplier": 1,
                "leverage_buy": [],
                "leverage_sell": [],
                "fees": fees,
                "fees_maker": fees,
                "fee_volume_currency": "ZUSD",
                "margin_call": 80,
                "margin_stop": 40,
                "ordermin": "0.0001",
                "costmin": "0.5",
                "status": "online",
            }
            for pair, (alt, base, quote) in PAIRS.items()
        }
    )


def build_app(state: KrakenStandIn) -> Starlette:
    async def public(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        state.calls[name] += 1
        if state.down:
            return JSONResponse({"error": ["EService:Unavailable"]}, status_code=503)
        handlers: dict[str, Any] = {
            "Assets": _assets,
            "AssetPairs": _asset_pairs,
            "Ticker": lambda: state.ticker(request.query_params.get("pair", "")),
        }
        handler = handlers.get(name)
        if handler is None:
            return JSONResponse({"error": ["EGeneral:Unknown method"]}, status_code=404)
        return JSONResponse(handler())

    async def private(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        state.calls[name] += 1
        if state.down:
            return JSONResponse({"error": ["EService:Unavailable"]}, status_code=503)
        body = await request.body()
        form = dict(parse_qsl(body.decode()))
        refusal = state.check_signature(request, body, form)
        if refusal is not None:
            return JSONResponse({"error": [refusal]})
        handlers: dict[str, Any] = {
            "BalanceEx": state.balance_ex,
            "AddOrder": lambda: state.add_order(form),
            "CancelOrder": lambda: state.cancel_order(form),
            "AmendOrder": lambda: state.amend_order(form),
            "QueryOrders": lambda: state.query(form),
            "OpenOrders": lambda: state.listing("open"),
            "ClosedOrders": lambda: state.listing("closed"),
            "OpenPositions": lambda: _ok([]),  # consolidated by market: a list (spot: empty)
        }
        handler = handlers.get(name)
        if handler is None:
            return JSONResponse({"error": ["EGeneral:Unknown method"]}, status_code=404)
        reply = handler()
        if state.lose_replies > 0:
            state.lose_replies -= 1
            return JSONResponse({"error": ["EService:Unavailable"]}, status_code=503)
        return JSONResponse(reply)

    return Starlette(
        routes=[
            Route("/0/public/{name}", public, methods=["GET"]),
            Route("/0/private/{name}", private, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def kraken_standin() -> AsyncIterator[tuple[KrakenStandIn, str]]:
    """The stand-in served on a free loopback port: ``(state, base URL)``."""
    state = KrakenStandIn()
    async with serve_asgi(build_app(state)) as port:
        yield state, f"http://127.0.0.1:{port}"
