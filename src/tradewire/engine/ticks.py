"""The unit of market data flowing through the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Tick:
    """One price update: last trade price and size, optional top of book.

    Treat as immutable. Not ``frozen``: a frozen dataclass costs ~1 µs per instance (``object.
    __setattr__`` per field) against ~0.25 µs, and a backtest creates one per bar."""

    symbol: str
    price: float
    volume: float
    ts: float  # epoch seconds of the event (market time, not arrival time)
    bid: float | None = None
    ask: float | None = None
