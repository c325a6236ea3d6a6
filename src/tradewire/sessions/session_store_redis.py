"""Redis session store (redis-py asyncio): one key per client with a TTL, no cleanup loop.

``claim`` reads the session, verifies the secret in Python with a constant-time comparison, then
deletes the key only if it still holds the same value (compare-and-delete in one Lua script), so
two concurrent claims of one token cannot both succeed and a wrong secret deletes nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tradewire.sessions.session_store import (
    SavedSession,
    SessionStoreError,
    decode_session,
    encode_session,
    token_matches,
)

_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisSessionStore:
    def __init__(self, url: str, prefix: str = "tradewire:session:") -> None:
        self._redis: aioredis.Redis = aioredis.from_url(url)
        self._prefix = prefix
        self._cad: Any = self._redis.register_script(_COMPARE_AND_DELETE)

    async def start(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise SessionStoreError(f"redis unavailable: {type(exc).__name__}") from exc

    async def stop(self) -> None:
        await self._redis.aclose()

    async def save(self, session: SavedSession, ttl: float) -> None:
        try:
            await self._redis.set(
                self._prefix + session.client_id, encode_session(session), px=int(ttl * 1000)
            )
        except RedisError as exc:
            raise SessionStoreError(f"redis save failed: {type(exc).__name__}") from exc

    async def claim(self, client_id: str, secret: str) -> SavedSession | None:
        key = self._prefix + client_id
        try:
            raw = await self._redis.get(key)
            if raw is None:
                return None
            session = decode_session(raw)
            if not token_matches(secret, session.token_hash):
                return None
            if not await self._cad(keys=[key], args=[raw]):
                return None  # claimed concurrently by someone else
        except RedisError as exc:
            raise SessionStoreError(f"redis claim failed: {type(exc).__name__}") from exc
        except msgspec.DecodeError as exc:
            raise SessionStoreError("unreadable saved session") from exc
        return session

    async def count(self) -> int:
        count = 0
        try:
            async for _ in self._redis.scan_iter(match=self._prefix + "*", count=1000):
                count += 1
        except RedisError as exc:
            raise SessionStoreError(f"redis scan failed: {type(exc).__name__}") from exc
        return count
