"""In-process session store (the embedded default): TTL, periodic cleanup, bounded size.

When full, the oldest saved session is evicted first, so memory stays bounded under a reconnect
storm; expired sessions are removed lazily on ``claim`` and by a cleanup pass every
``cleanup_interval`` seconds (the seed's 5 minutes).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog

from tradewire.sessions.session_store import SavedSession, token_matches

_log = structlog.get_logger("tradewire.sessions")


class MemorySessionStore:
    def __init__(
        self,
        max_sessions: int = 100_000,
        cleanup_interval: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_sessions = max_sessions
        self.cleanup_interval = cleanup_interval
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[float, SavedSession]] = OrderedDict()  # id → (expiry, s)
        self._cleanup: asyncio.Task[None] | None = None
        self.evicted = 0

    async def start(self) -> None:
        if self._cleanup is None:
            self._cleanup = asyncio.get_running_loop().create_task(self._cleanup_loop())

    async def stop(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            await asyncio.gather(self._cleanup, return_exceptions=True)
            self._cleanup = None

    async def save(self, session: SavedSession, ttl: float) -> None:
        self._sessions.pop(session.client_id, None)
        self._sessions[session.client_id] = (self._clock() + ttl, session)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
            self.evicted += 1

    async def claim(self, client_id: str, secret: str) -> SavedSession | None:
        entry = self._sessions.get(client_id)
        if entry is None:
            return None
        expires, session = entry
        if expires <= self._clock():
            del self._sessions[client_id]
            return None
        if not token_matches(secret, session.token_hash):
            return None
        del self._sessions[client_id]
        return session

    async def count(self) -> int:
        return len(self._sessions)

    def expire(self) -> int:
        """Drop every expired session now; returns how many."""
        now = self._clock()
        expired = [cid for cid, (expires, _) in self._sessions.items() if expires <= now]
        for cid in expired:
            del self._sessions[cid]
        return len(expired)

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cleanup_interval)
            removed = self.expire()
            if removed:
                _log.info("sessions.expired", removed=removed, remaining=len(self._sessions))
