"""What the gateway needs from a trading engine (its ``controller``).

The embedded reference engine (:class:`tradewire.engine.controller.EmbeddedEngine`) implements
it; a user plugs in their own engine by implementing the same few members. Market data, signals
and session events travel over the event bus, not through this interface.
"""

from __future__ import annotations

from typing import Any, Protocol

from tradewire.bus.event_bus import EventBus
from tradewire.engine.strategy_manager import StrategyManager


class Controller(Protocol):
    @property
    def strategies(self) -> StrategyManager:
        """The strategy manager behind the strategy messages."""
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
