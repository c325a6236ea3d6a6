"""Strategy manager: versioned strategy documents, activation per (strategy, symbol), and the
state machines driven by indicator updates.

Each (strategy, symbol) pair has its own :class:`StrategyStateMachine` (the original shared one
object across symbols, so the last symbol won). Indicators are shared per symbol through the
:class:`IndicatorBank`: two strategies asking for ``rsi(period=14)`` on BTC update one instance.
Documents and activations are stored in the database (every write in a transaction) and loaded
at start; the first start installs the example strategies. The handler layer never touches
storage: it calls this class.

Ownership: a strategy belongs to whoever stored its first version (the shipped examples to
``tradewire``). Only its owner or an admin may store new versions, activate or deactivate it
(:class:`~tradewire.errors.NotOwner`); everyone may read it and run it in their own sessions, but
``updated_by`` is shown to its owner and admins only. Activation needs a symbol a live feed
publishes (:class:`~tradewire.errors.UnknownSymbol` otherwise, with close matches).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from tradewire.bus import topics
from tradewire.controller import Caller
from tradewire.engine.broker import SimulatedBroker
from tradewire.engine.compiler import compile_strategy
from tradewire.engine.examples import EXAMPLES
from tradewire.engine.indicators import INDICATORS, IndicatorBank, IndicatorError, IndicatorKey, check_params
from tradewire.engine.state_machine import Emit, State, StrategyStateMachine
from tradewire.engine.storage.database import Database
from tradewire.engine.storage.schema import SYSTEM_OWNER
from tradewire.engine.strategy_document import (
    StrategyDocument,
    StrategyValidationError,
    parse_strategy,
    to_document,
    validate_strategy,
)
from tradewire.engine.symbols import SymbolRegistry
from tradewire.engine.ticks import Tick
from tradewire.errors import NotOwner, StrategyDisabled, StrategyInvalid, StrategyNotFound

_log = structlog.get_logger("tradewire.strategies")
INDICATOR_PUBLISH_INTERVAL = 1.0  # wall seconds between indicator batches per symbol (bounds replays)
SIGNAL_ACCOUNT = 10_000.0  # notional account of a live pair's broker: sizes only shape pnl_pct
SYSTEM = Caller(SYSTEM_OWNER, admin=True)  # installs the examples


@dataclass(slots=True)
class _Strategy:
    document: StrategyDocument
    version: int
    created_by: str | None
    updated_at: float
    owner: str


@dataclass(slots=True)
class _Pair:
    machine: StrategyStateMachine
    broker: SimulatedBroker  # fills at the deciding tick (trade_on_close): signals, not trading
    keys: list[IndicatorKey]  # indicator holds to release on deactivation


class StrategyManager:
    """In-memory view of the stored strategies plus the running state machines."""

    def __init__(
        self,
        db: Database,
        bank: IndicatorBank,
        emit: Emit,
        clock: Callable[[], float] = time.time,
        symbols: SymbolRegistry | None = None,
    ) -> None:
        self._db = db
        self._symbols = symbols  # activation checks symbols against it (None: any symbol)
        self._bank = bank
        self._emit = emit
        self._clock = clock
        self._strategies: dict[str, _Strategy] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._by_symbol: dict[str, list[_Pair]] = {}  # the pairs each tick of a symbol visits
        self._published_at: dict[str, float] = {}
        self._last_ts: dict[str, float] = {}  # newest tick time per symbol
        self._locks: dict[str, asyncio.Lock] = {}
        self.ticks = 0
        self.out_of_order_ticks = 0  # ticks older than the symbol's last one, dropped

    @property
    def known_indicators(self) -> frozenset[str]:
        return frozenset(INDICATORS)

    # ------------------------------------------------------------------ start-up
    async def load(self, default_symbols: list[str] | None = None) -> None:
        """Load the latest version of every stored strategy and resume stored activations;
        on an empty database install the examples, active on their symbols."""
        self.stop_all()
        stored = await self._db.latest_strategies()
        if not stored:
            await self._install_examples(default_symbols)
            return
        for row in stored:
            try:
                document = parse_strategy(row.document, self.known_indicators, check_params)
            except StrategyValidationError as exc:  # e.g. an indicator it uses no longer exists
                _log.error(
                    "strategy.unloadable", strategy=row.name, version=row.version, errors=exc.result.to_dict()
                )
                continue
            owner = row.owner or row.created_by or SYSTEM_OWNER
            self._strategies[row.name] = _Strategy(
                document, row.version, row.created_by, row.created_at, owner
            )
        for name, symbol in await self._db.active_pairs():
            entry = self._strategies.get(name)
            if entry is None or not entry.document.enabled:
                continue
            try:
                self._start_pair(name, symbol)
            except IndicatorError as exc:
                _log.error("strategy.unstartable", strategy=name, symbol=symbol, error=str(exc))
        _log.info("strategies.loaded", strategies=len(self._strategies), active=len(self._pairs))

    async def _install_examples(self, default_symbols: list[str] | None) -> None:
        """Store the examples and run them on ``default_symbols`` (the live feed's), if given."""
        for raw in EXAMPLES:
            name, _ = await self.upsert(SYSTEM, raw)
            symbols = default_symbols if default_symbols else self._strategies[name].document.symbols
            for symbol in symbols:
                await self._activate(name, symbol)
        _log.info("strategies.examples_installed", strategies=len(EXAMPLES))

    # ------------------------------------------------------------------ documents
    def validate(self, raw: object) -> dict[str, Any]:
        """Every error and warning of the document, indicator parameters included, at once."""
        return validate_strategy(raw, self.known_indicators, check_params).to_dict()

    def _parse(self, raw: object) -> StrategyDocument:
        try:
            return parse_strategy(raw, self.known_indicators, check_params)
        except StrategyValidationError as exc:
            raise StrategyInvalid("strategy document is invalid", exc.result.to_dict()) from exc

    def document(self, name: str) -> tuple[StrategyDocument, int]:
        """The current version of ``name`` (sessions compile their own machines from it)."""
        entry = self._strategies.get(name)
        if entry is None:
            raise StrategyNotFound(name)
        return entry.document, entry.version

    def _check_owner(self, caller: Caller, name: str, entry: _Strategy) -> None:
        if not caller.admin and entry.owner != caller.user_id:
            raise NotOwner("strategy", name, entry.owner)

    async def upsert(self, caller: Caller, raw: object) -> tuple[str, int]:
        """Store ``raw`` as the next version of its strategy (a new name belongs to ``caller``);
        running pairs switch to it."""
        document = self._parse(raw)
        async with self._lock(document.name):
            current = self._strategies.get(document.name)
            if current is not None:
                self._check_owner(caller, document.name, current)
            owner = current.owner if current is not None else caller.user_id
            version = await self._db.save_strategy(
                document.name, to_document(document), caller.user_id, owner
            )
            if current is None or current.version < version:
                self._strategies[document.name] = _Strategy(
                    document, version, caller.user_id, self._clock(), owner
                )
                for name, symbol in [pair for pair in self._pairs if pair[0] == document.name]:
                    self._restart_pair(name, symbol)
        return document.name, version

    def _lock(self, name: str) -> asyncio.Lock:
        """One lock per strategy: upsert/activate/deactivate of a name never interleave."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def strategies(self, caller: Caller) -> list[dict[str, Any]]:
        """Every strategy; ``updated_by`` only on the caller's own (all of them for admins)."""
        return [self._describe(name, caller) for name in sorted(self._strategies)]

    def _describe(self, name: str, caller: Caller) -> dict[str, Any]:
        entry = self._strategies[name]
        mine = caller.admin or entry.owner == caller.user_id
        described = {
            "strategy_name": name,
            "version": entry.version,
            "direction": entry.document.direction.value,
            "description": entry.document.description,
            "symbols": list(entry.document.symbols),
            "active_symbols": sorted(symbol for n, symbol in self._pairs if n == name),
            "updated_at": entry.updated_at,
            "owner": entry.owner,
            "read_only": not mine,
            "document": to_document(entry.document),
        }
        if mine:
            described["updated_by"] = entry.created_by
        return described

    # ------------------------------------------------------------------ activation
    async def activate(self, caller: Caller, name: str, symbol: str) -> dict[str, Any]:
        """Run ``name`` on ``symbol`` (idempotent) for its owner or an admin, on a live symbol."""
        entry = self._strategies.get(name)
        if entry is None:
            raise StrategyNotFound(name)
        self._check_owner(caller, name, entry)
        if self._symbols is not None and (name, symbol) not in self._pairs:
            self._symbols.require((symbol,), live=True, path="symbol")
        return await self._activate(name, symbol)

    async def _activate(self, name: str, symbol: str) -> dict[str, Any]:
        """Stored first, so memory never runs ahead."""
        async with self._lock(name):
            entry = self._strategies.get(name)
            if entry is None:
                raise StrategyNotFound(name)
            if not entry.document.enabled:
                raise StrategyDisabled(name)
            pair = self._pairs.get((name, symbol))
            if pair is None:
                await self._db.set_active(name, symbol, True)
                self._start_pair(name, symbol)
            elif pair.machine.state is State.INACTIVE:  # paused by an emergency exit: resume
                pair.machine.activate(self._clock())
            return self._pairs[(name, symbol)].machine.status()

    async def deactivate(self, caller: Caller, name: str, symbol: str) -> dict[str, Any]:
        """Stop ``name`` on ``symbol`` (idempotent); an open position is reported closed (ZE1).
        A symbol it does not run on must at least be known (a typo is not "already inactive")."""
        async with self._lock(name):
            entry = self._strategies.get(name)
            if entry is None:
                raise StrategyNotFound(name)
            self._check_owner(caller, name, entry)
            if self._symbols is not None and (name, symbol) not in self._pairs:
                self._symbols.require((symbol,), path="symbol")
            await self._db.set_active(name, symbol, False)
            pair = self._pairs.get((name, symbol))
            if pair is None:
                return {"strategy_name": name, "symbol": symbol, "state": "inactive"}
            self._stop_pair(name, symbol, "deactivated")
            return pair.machine.status()

    def status(self, name: str | None = None, symbol: str | None = None) -> list[dict[str, Any]]:
        if name is not None and name not in self._strategies:
            raise StrategyNotFound(name)
        return [
            pair.machine.status()
            for (pair_name, pair_symbol), pair in sorted(self._pairs.items())
            if (name is None or pair_name == name) and (symbol is None or pair_symbol == symbol)
        ]

    def _start_pair(self, name: str, symbol: str) -> None:
        entry = self._strategies[name]
        compiled, keys = compile_strategy(entry.document, entry.version, symbol, self._bank)
        broker = SimulatedBroker(SIGNAL_ACCOUNT, trade_on_close=True, record=False)
        machine = StrategyStateMachine(compiled, symbol, self._emit, broker)
        pair = self._pairs[(name, symbol)] = _Pair(machine, broker, keys)
        self._by_symbol.setdefault(symbol, []).append(pair)
        machine.activate(self._clock())

    def _restart_pair(self, name: str, symbol: str) -> None:
        """Switch a running pair to the strategy's current version: the new indicators are taken
        before the old are released, so shared ones stay warm."""
        old = self._pairs[(name, symbol)]
        held, old.keys = old.keys, []  # keep the old holds until the new pair holds its own
        self._stop_pair(name, symbol, "strategy updated")
        try:
            self._start_pair(name, symbol)
        finally:
            for key in held:
                self._bank.release(symbol, key)

    def _stop_pair(self, name: str, symbol: str, reason: str) -> None:
        pair = self._pairs.pop((name, symbol))
        pair.machine.deactivate(self._clock(), reason)
        pairs = self._by_symbol[symbol]
        pairs.remove(pair)
        if not pairs:
            del self._by_symbol[symbol]
        for key in pair.keys:
            self._bank.release(symbol, key)
        _log.info("strategy.stopped", strategy=name, symbol=symbol, reason=reason)

    def stop_all(self) -> None:
        """Stop every running pair in memory (engine shutdown; stored activations are kept)."""
        for name, symbol in list(self._pairs):
            self._stop_pair(name, symbol, "engine stopped")
        self._strategies.clear()

    # ------------------------------------------------------------------ market data
    def on_tick(self, tick: Tick) -> None:
        """Update the symbol's indicators once, then every state machine running on it.

        A tick older than the symbol's last one is dropped and counted: time windows, cooldowns
        and timeouts assume market time never runs backwards.
        """
        symbol = tick.symbol
        pairs = self._by_symbol.get(symbol)
        if pairs is None:
            return
        if tick.ts < self._last_ts.get(symbol, tick.ts):
            self.out_of_order_ticks += 1
            return
        self._last_ts[symbol] = tick.ts
        self.ticks += 1
        values = self._bank.update(tick)
        price = tick.price
        for pair in pairs:
            machine = pair.machine
            if machine.exposed:  # stops and targets of the open position see this price first
                pair.broker.on_bar(symbol, tick.ts, price, price, price, price, 0)
            machine.on_tick(tick, values)
        now = self._clock()
        if now - self._published_at.get(tick.symbol, float("-inf")) >= INDICATOR_PUBLISH_INTERVAL:
            self._published_at[tick.symbol] = now
            self._publish_indicators(tick, values)

    def _publish_indicators(self, tick: Tick, values: Mapping[Any, float | None]) -> None:
        for key, value in values.items():
            if value is None or not isinstance(key, tuple):
                continue
            name, *params = key
            self._emit(
                topics.INDICATOR_UPDATED,
                {
                    "symbol": tick.symbol,
                    "indicator_type": name,
                    "params": dict(params),
                    "value": value,
                    "timestamp": tick.ts,
                },
            )

    def health(self) -> dict[str, Any]:
        return {
            "strategies": len(self._strategies),
            "active_pairs": len(self._pairs),
            "ticks": self.ticks,
            "out_of_order_ticks": self.out_of_order_ticks,
        }
