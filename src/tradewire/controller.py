"""What the gateway needs from a trading engine (its ``controller``): interfaces only.

The embedded reference engine (:class:`tradewire.engine.controller.EmbeddedEngine`) implements
them; a user plugs in their own engine by implementing the same members. Market data, signals and
session events travel over the event bus, not through these interfaces. Engines raise the domain
errors of :mod:`tradewire.errors` (``StrategyNotFound``, ``SessionConflict``, ...); the handlers
map them to wire error codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tradewire.bus.event_bus import EventBus


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the authenticated user, and whether they may see and stop everyone's objects."""

    user_id: str
    admin: bool = False


class StrategyService(Protocol):
    """Behind the six strategy messages. Writes check ownership: a strategy's owner or an admin
    may change it (``NotOwner`` otherwise); what ``strategies`` shows depends on the caller."""

    def strategies(self, caller: Caller) -> list[dict[str, Any]]: ...

    def validate(self, raw: object) -> dict[str, Any]:
        """``{valid, errors: [{path, message, code}], warnings: [...]}``; never raises."""
        ...

    async def upsert(self, caller: Caller, raw: object) -> tuple[str, int]: ...

    async def activate(self, caller: Caller, name: str, symbol: str) -> dict[str, Any]: ...

    async def deactivate(self, caller: Caller, name: str, symbol: str) -> dict[str, Any]: ...

    def status(self, name: str | None = None, symbol: str | None = None) -> list[dict[str, Any]]: ...


class SessionService(Protocol):
    """Behind ``session_*`` and ``results_request`` (and the REST mirrors)."""

    async def start_session(
        self,
        caller: Caller,
        session_type: str,
        strategy_config: dict[str, list[str]],
        config: dict[str, Any],
        client_key: str | None,
    ) -> dict[str, Any]:
        """The new (or, for a repeated ``client_key``, the existing) session record."""
        ...

    async def stop_session(self, caller: Caller, session_id: str) -> dict[str, Any]: ...

    async def session(self, caller: Caller, session_id: str) -> dict[str, Any]: ...

    async def sessions(self, caller: Caller, limit: int = 100) -> list[dict[str, Any]]: ...

    async def results(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """The stored results document of a finished session (``SessionNotFound`` if none)."""
        ...

    async def equity(self, caller: Caller, session_id: str) -> tuple[list[float], list[float]]:
        """The full equity curve: (times, values)."""
        ...

    async def datasets(self, symbol: str | None = None) -> list[dict[str, Any]]: ...


class CollectionService(Protocol):
    """Behind ``collection_*`` and ``results_request`` ``collection_list``. Users see and stop
    their own collections only (admins: all); others' look absent (``CollectionNotFound``)."""

    async def start_collection(self, caller: Caller, symbols: list[str], duration: str) -> dict[str, Any]: ...

    async def stop_collection(self, caller: Caller, collection_id: str) -> dict[str, Any]: ...

    async def collection(self, caller: Caller, collection_id: str) -> dict[str, Any]: ...

    async def collections(self, caller: Caller, limit: int = 100) -> list[dict[str, Any]]: ...


class SymbolDirectory(Protocol):
    """The instruments an engine knows, for checks on the gateway's fast paths (``subscribe``)."""

    def require(self, symbols: Iterable[str], *, live: bool = False, path: str | None = None) -> None:
        """Raise ``UnknownSymbol`` (with close matches) for the first unknown symbol; must cost no
        more than a set lookup when every symbol is known."""
        ...

    def describe(self) -> list[dict[str, Any]]: ...


class Controller(Protocol):
    @property
    def strategies(self) -> StrategyService:
        """The strategy manager behind the strategy messages."""
        ...

    @property
    def sessions(self) -> SessionService | None:
        """The job controller behind the session messages (None: not served)."""
        ...

    @property
    def collections(self) -> CollectionService | None:
        """Data collection behind the collection messages (None: not served)."""
        ...

    @property
    def symbols(self) -> SymbolDirectory | None:
        """The engine's instruments (None: symbols are not checked)."""
        ...

    async def start(self, bus: EventBus) -> None:
        """Start producing onto ``bus`` (called after the gateway's parts are up)."""
        ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """``{"ready": bool, ...}`` for ``GET /health``."""
        ...

    def queries(self) -> dict[str, Any]:
        """Read-only look-ups served by ``query``: name → ``action(conn, params)``."""
        ...
