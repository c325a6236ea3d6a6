"""The engine's instruments: every symbol it can trade, replay or backtest, in one spelling.

Symbols come from four sources, and each keeps the spelling :func:`canonical` gives it when it
enters the engine (settings, imports, the exchange's markets), so one instrument has one name:

==============  =======================================================================  =====
source          where from                                                               live
==============  =======================================================================  =====
``synthetic``   ``synthetic_symbols`` (the synthetic feed)                               yes
``replay``      ``replay_dataset``, published as ``replay:<SYMBOL>`` (never the         yes
                dataset's own symbol: replayed 2012 prices must not interleave with a
                live feed of that symbol)
``dataset``     stored datasets (imports, samples, collections): backtests               no
``exchange``    the exchange adapter's markets (``BTC/USD`` in ccxt is ``BTC-USD``);     only
                live only for the markets the engine polls (``exchange_symbols``)        polled
==============  =======================================================================  =====

Requests never get a symbol rewritten for them: ``btc-usd`` is not ``BTC-USD``, it is an unknown
symbol whose error names ``BTC-USD`` as a close match (:meth:`SymbolRegistry.require`). Lookups
are one frozen-set membership test, cheap enough for ``subscribe``'s synchronous path.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from tradewire.errors import UnknownSymbol

REPLAY_NAMESPACE = "replay:"
MAX_SYMBOL = 32  # the wire schema's bound
MAX_MATCHES = 3
_SEPARATORS = re.compile(r"[\s/_:]+")
_KEY = re.compile(r"[^A-Z0-9]")


class SymbolSource(StrEnum):
    SYNTHETIC = "synthetic"
    REPLAY = "replay"
    DATASET = "dataset"
    EXCHANGE = "exchange"


def canonical(symbol: str) -> str:
    """The engine's spelling: upper case, ``-`` between base and quote (``btc/usd`` → ``BTC-USD``,
    ccxt's ``BTC/USDT:USDT`` → ``BTC-USDT-USDT``); the ``replay:`` namespace stays lower case."""
    text = symbol.strip()
    if text.lower().startswith(REPLAY_NAMESPACE):
        return REPLAY_NAMESPACE + canonical(text[len(REPLAY_NAMESPACE) :])
    return _SEPARATORS.sub("-", text).upper()


def replay_symbol(symbol: str) -> str:
    """The symbol a replayed dataset of ``symbol`` is published under."""
    return REPLAY_NAMESPACE + canonical(symbol)


def _key(symbol: str) -> str:
    """What two spellings of one instrument share (``btc_usd``, ``BTC/USD``, ``BTCUSD``)."""
    return _KEY.sub("", symbol.upper())


class SymbolRegistry:
    """Known symbols by source (see the module docstring); ``known`` and ``live`` are rebuilt on
    every change, so a check is one set lookup."""

    def __init__(self) -> None:
        self._sources: dict[str, set[SymbolSource]] = {}
        self._polled: set[str] = set()  # exchange markets the engine feeds live
        self.known: frozenset[str] = frozenset()
        self.live: frozenset[str] = frozenset()

    def add(self, source: SymbolSource, symbols: Iterable[str], *, live: bool = False) -> None:
        for symbol in symbols:
            self._sources.setdefault(symbol, set()).add(source)
            if live and source is SymbolSource.EXCHANGE:
                self._polled.add(symbol)
        self._rebuild()

    def replace(self, source: SymbolSource, symbols: Iterable[str]) -> None:
        """``source`` now provides exactly ``symbols`` (e.g. the exchange's markets after a reload)."""
        wanted = set(symbols)
        for symbol, sources in list(self._sources.items()):
            if source in sources and symbol not in wanted:
                sources.discard(source)
                if not sources:
                    del self._sources[symbol]
        self.add(source, wanted)

    def _rebuild(self) -> None:
        self.known = frozenset(self._sources)
        self.live = frozenset(
            symbol
            for symbol, sources in self._sources.items()
            if SymbolSource.SYNTHETIC in sources
            or SymbolSource.REPLAY in sources
            or (SymbolSource.EXCHANGE in sources and symbol in self._polled)
        )

    def sources(self, symbol: str) -> set[SymbolSource]:
        return set(self._sources.get(symbol, ()))

    def require(self, symbols: Iterable[str], *, live: bool = False, path: str | None = None) -> None:
        """:class:`UnknownSymbol` for the first symbol not known (not fed live, with ``live``),
        naming close matches; returns at the cost of a set lookup when all are known."""
        universe = self.live if live else self.known
        for symbol in symbols:
            if symbol not in universe:
                raise UnknownSymbol(symbol, self.matches(symbol, universe), live=live, path=path)

    def matches(self, symbol: str, universe: Iterable[str] | None = None) -> list[str]:
        """Up to three known spellings ``symbol`` was probably meant as: the same letters and
        digits (``btc-usd`` → ``BTC-USD``); else the base alone (``BTC`` → ``BTC-USD``); else near
        misses (``BTC-UDS`` → ``BTC-USD``; a shared quote alone, ``DOGE-USD`` ~ ``ETH-USD``, is not)."""
        candidates = sorted(self.known if universe is None else universe)
        key = _key(symbol)
        plain = {c: _key(c.removeprefix(REPLAY_NAMESPACE)) for c in candidates}
        found = [c for c in candidates if plain[c] == key]
        if not found and len(key) >= 2:
            found = [c for c in candidates if plain[c].startswith(key)]
        if not found:
            by_upper = {c.upper(): c for c in candidates}
            near = difflib.get_close_matches(symbol.upper(), list(by_upper), n=MAX_MATCHES, cutoff=0.8)
            found = [by_upper[n] for n in near]
        return found[:MAX_MATCHES]

    def describe(self) -> list[dict[str, Any]]:
        """``query symbols``: each symbol, its sources, and whether a live feed publishes it."""
        return [
            {"symbol": symbol, "sources": sorted(self._sources[symbol]), "live": symbol in self.live}
            for symbol in sorted(self._sources)
        ]
