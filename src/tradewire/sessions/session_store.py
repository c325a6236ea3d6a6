"""The session-store contract, the saved session, and reconnect tokens.

A reconnect token is ``<client_id>.<secret>``: the secret is 192 random bits from :mod:`secrets`;
only its SHA-256 is kept (on the live connection, then in the saved session), so a leaked store
does not yield usable tokens. :func:`token_matches` compares digests in constant time.

Store contract (memory and Redis implementations, ``session_store_memory.py`` /
``session_store_redis.py``):

- ``save(session, ttl)`` keeps the session for ``ttl`` seconds, replacing any earlier one of the
  same client id.
- ``claim(client_id, secret)`` returns the session and deletes it **only if** ``secret`` matches
  (single use, atomic against concurrent claims); a wrong secret changes nothing, so guessing
  cannot destroy someone else's session. Expired sessions are never returned.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Protocol

import msgspec

from tradewire.errors import TradewireError

SECRET_BYTES = 24  # 192 bits


class SavedSubscription(msgspec.Struct, frozen=True):
    stream: str
    params: dict[str, Any]
    last_offset: int  # last offset handed to the client's socket on this stream
    epoch: str  # epoch of the stream history that offset belongs to


class SavedSession(msgspec.Struct, frozen=True):
    client_id: str
    token_hash: str  # hex SHA-256 of the reconnect secret
    saved_at: float  # epoch seconds
    user_id: str | None = None
    level: str | None = None
    auth_expires_at: float | None = None  # the JWT's exp; auth is restored only before it
    subscriptions: list[SavedSubscription] = []


class SessionStoreError(TradewireError):
    """The store could not be reached or returned something unreadable (translated from the backend)."""


class SessionStore(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def save(self, session: SavedSession, ttl: float) -> None: ...

    async def claim(self, client_id: str, secret: str) -> SavedSession | None: ...

    async def count(self) -> int: ...


def new_token(client_id: str) -> tuple[str, str]:
    """A fresh reconnect token for ``client_id`` and the digest to keep."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{client_id}.{secret}", digest(secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(client_id, secret)`` of a well-formed token, else None."""
    client_id, sep, secret = token.rpartition(".")
    if not sep or not client_id or len(secret) < SECRET_BYTES or len(token) > 256:
        return None
    return client_id, secret


def token_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of the presented secret's digest with the stored one."""
    return hmac.compare_digest(digest(secret), stored_hash)


encode_session = msgspec.json.Encoder().encode
decode_session = msgspec.json.Decoder(SavedSession).decode
