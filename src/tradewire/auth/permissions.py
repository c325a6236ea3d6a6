"""Permission levels and the permissions each grants (DESIGN §3.2).

Levels are ordered: each includes everything below it. Handlers check permissions by name, never
by level, so a deployment can change the sets here without touching handlers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Level(StrEnum):
    BASIC = "basic"
    TRADER = "trader"
    PREMIUM = "premium"
    ADMIN = "admin"


class Permission(StrEnum):
    READ_MARKET_DATA = "read_market_data"
    READ_INDICATORS = "read_indicators"
    READ_SIGNALS = "read_signals"
    READ_SESSIONS = "read_sessions"
    READ_RESULTS = "read_results"
    EXECUTE_BACKTEST = "execute_backtest"
    EXECUTE_PAPER_TRADING = "execute_paper_trading"
    EXECUTE_LIVE_TRADING = "execute_live_trading"
    MANAGE_STRATEGIES = "manage_strategies"
    MANAGE_COLLECTION = "manage_collection"
    ADMIN = "admin"


_BASIC = frozenset(
    {
        Permission.READ_MARKET_DATA,
        Permission.READ_INDICATORS,
        Permission.READ_SESSIONS,
        Permission.READ_RESULTS,
    }
)
_TRADER = _BASIC | {
    Permission.READ_SIGNALS,
    Permission.EXECUTE_BACKTEST,
    Permission.EXECUTE_PAPER_TRADING,
    Permission.MANAGE_STRATEGIES,
    Permission.MANAGE_COLLECTION,
}
_PREMIUM = _TRADER | {Permission.EXECUTE_LIVE_TRADING}
_ADMIN = _PREMIUM | {Permission.ADMIN}

LEVEL_PERMISSIONS: Final[dict[Level, frozenset[Permission]]] = {
    Level.BASIC: _BASIC,
    Level.TRADER: _TRADER,
    Level.PREMIUM: _PREMIUM,
    Level.ADMIN: _ADMIN,
}


def permissions_for(level: Level) -> frozenset[Permission]:
    return LEVEL_PERMISSIONS[level]
