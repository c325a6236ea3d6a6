"""The unit of market data flowing through the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tick:
    """One price update: last trade price and size, optional top of book."""

    symbol: str
    price: float
    volume: float
    ts: float  # epoch seconds of the event (market time, not arrival time)
    bid: float | None = None
    ask: float | None = None
