"""A session's record: identity, owner, what it runs, and where it is in its life.

::

    starting → running → stopping → stopped
                  │                    ↑ (session_stop)
                  ├──────────────→ completed (a backtest reached the end of its data, or a paper
                  │                           session its max duration)
                  ├──────────────→ failed (an error: ``error`` says which, with a correlation id)
                  └──────────────→ interrupted (the server stopped, or died, while it ran)

Records are stored (``sessions`` table) when created and on every status change, so they survive
a restart; ``progress`` and ``processed`` are stored at the end (they change many times a second).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SessionStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        return self in _ACTIVE


_ACTIVE = frozenset({SessionStatus.STARTING, SessionStatus.RUNNING, SessionStatus.STOPPING})


def new_session_id() -> str:
    return "s_" + secrets.token_urlsafe(12)


@dataclass(slots=True)
class SessionRecord:
    id: str
    owner: str
    session_type: str
    strategy_config: dict[str, list[str]]
    config: dict[str, Any]  # as validated (defaults filled in)
    created_at: float  # wall clock (when it was asked for), epoch seconds
    client_key: str | None = None
    status: SessionStatus = SessionStatus.STARTING
    started_at: float | None = None
    ended_at: float | None = None
    progress: float = 0.0  # percent of the data processed (backtests); 0 for open-ended sessions
    processed: int = 0  # bars or ticks processed
    error: dict[str, Any] | None = None  # {code, message, correlation_id?} when failed
    summary: dict[str, Any] | None = None  # headline metrics once finished
    live: dict[str, Any] = field(default_factory=dict)  # equity, open positions... while running

    def pairs(self) -> set[tuple[str, str]]:
        return {(name, symbol) for name, symbols in self.strategy_config.items() for symbol in symbols}

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "session_type": self.session_type,
            "status": self.status.value,
            "strategy_config": self.strategy_config,
            "config": self.config,
            "client_key": self.client_key,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "progress": self.progress,
            "processed": self.processed,
            "error": self.error,
            "summary": self.summary,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SessionRecord:
        values = dict(row)
        values["status"] = SessionStatus(values["status"])
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        """The wire form (``session_status``, ``GET /api/v1/sessions``)."""
        out = self.to_row()
        out["session_id"] = out.pop("id")
        out.pop("client_key")
        out["has_results"] = self.status in _WITH_RESULTS
        if self.live and self.status.active:
            out.update(self.live)
        return out


_WITH_RESULTS = frozenset({SessionStatus.COMPLETED, SessionStatus.STOPPED})
