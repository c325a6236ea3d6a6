"""Reconnect (DESIGN §3.5): save a client's session when it disconnects, restore it on a valid token.

Saved on every disconnect (any cause, shutdown included): client id, user and level with the
JWT's expiry, subscriptions with their filters, and per stream the last offset that left the
server for that client (frames still queued in the server at that moment count as not sent).

A reconnecting client presents its token (``X-Reconnect-Token`` header or ``reconnect_token``
query parameter). With a valid, unused, unexpired token it gets its client id back, its
authentication if the JWT is still valid (else it must ``auth`` again, and subscriptions that
need a permission wait until then), its subscriptions, and the messages it missed replayed from
history before live delivery resumes — or ``recovered: false`` per stream when history no longer
reaches back. If the previous connection is still open (a half-open socket the server has not
noticed yet), the token takes it over: the old connection is closed and its live state moves.

Anything else — malformed, forged, reused or expired token, or too many failed attempts — gets a
fresh session and a ``reconnect_rejected`` notice, never another client's state. Failed attempts
are throttled like password guesses (:class:`~tradewire.auth.throttle.GuessThrottle`: per address,
per (client id, address) with backoff, per client id with its known addresses exempt), so a third
party guessing tokens for a client id cannot stop its owner from resuming, and successful
reconnects (a whole NAT after a server restart) are never throttled.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from tradewire.auth.permissions import Level, permissions_for
from tradewire.auth.throttle import GuessThrottle
from tradewire.auth.tokens import Principal
from tradewire.clock import Clock
from tradewire.core.connection import Connection
from tradewire.core.connection_manager import ConnectionManager
from tradewire.errors import RequestError
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import CloseCode
from tradewire.protocol.messages import Stream
from tradewire.sessions.session_store import (
    SavedSession,
    SavedSubscription,
    SessionStore,
    SessionStoreError,
    new_token,
    split_token,
    token_matches,
)
from tradewire.streams.broadcast import BroadcastProvider, Fetched
from tradewire.streams.catalog import CATALOG, scope_owner
from tradewire.streams.filters import parse_filter
from tradewire.streams.subscriptions import Subscription, SubscriptionManager

_log = structlog.get_logger("tradewire.reconnect")
_STREAMS = frozenset(s.value for s in Stream)


class ReconnectService:
    """Tokens, session snapshots and restores; the lifecycle's reconnect hooks."""

    def __init__(
        self,
        store: SessionStore,
        connections: ConnectionManager,
        subscriptions: SubscriptionManager,
        broadcast: BroadcastProvider,
        metrics: ServerMetrics,
        clock: Clock,
        *,
        ttl: float,
        attempts: GuessThrottle,
    ) -> None:
        self.store = store
        self._connections = connections
        self._subscriptions = subscriptions
        self._broadcast = broadcast
        self._metrics = metrics
        self._clock = clock
        self.ttl = ttl
        self._attempts = attempts
        self._saving: set[asyncio.Task[None]] = set()
        self._parked: dict[str, list[SavedSubscription]] = {}  # client id → waiting for auth
        self.watch_expiry: Any = None  # set by the server: AuthMessageHandler.watch_expiry

    # ------------------------------------------------------------------ tokens and saving
    def issue_token(self, conn: Connection) -> str:
        """A new single-use token for ``conn``'s welcome (replaces any earlier one)."""
        token, conn.reconnect_hash = new_token(conn.client_id)
        self._attempts.remember(conn.client_id, conn.info.address)
        return token

    def connection_closed(self, conn: Connection, subscriptions: list[Subscription]) -> None:
        """Save the session of a connection that is gone (in the background; see :meth:`drain`)."""
        session = self.snapshot(conn, subscriptions)
        self._parked.pop(conn.client_id, None)
        if session is None:
            return
        task = asyncio.get_running_loop().create_task(self._save(session))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    def snapshot(self, conn: Connection, subscriptions: list[Subscription]) -> SavedSession | None:
        if conn.reconnect_hash is None:
            return None  # never welcomed, or taken over by a newer connection
        unsent = conn.unsent_offsets()
        saved = []
        for sub in subscriptions:
            # Every message of the stream up to its current position was either queued to this
            # client or filtered out, except what may not have left the server.
            position, epoch = self._broadcast.position(sub.stream)
            delivered = min(position, unsent.get(sub.stream.value, position + 1) - 1)
            saved.append(SavedSubscription(sub.stream.value, sub.filter.params_dict(), delivered, epoch))
        saved.extend(self._parked.get(conn.client_id, ()))
        principal = conn.principal
        if principal is None and not saved:
            return None  # nothing worth resuming: do not let anonymous churn evict real sessions
        return SavedSession(
            client_id=conn.client_id,
            token_hash=conn.reconnect_hash,
            saved_at=self._clock.time(),
            user_id=principal.user_id if principal else None,
            level=principal.level.value if principal else None,
            auth_expires_at=principal.expires_at if principal else None,
            subscriptions=saved,
        )

    async def drain(self) -> None:
        """Wait for sessions being saved (graceful shutdown)."""
        while self._saving:
            await asyncio.gather(*list(self._saving), return_exceptions=True)

    async def _save(self, session: SavedSession) -> None:
        try:
            await self.store.save(session, self.ttl)
        except SessionStoreError as exc:
            self._metrics.reconnects["save_failed"] += 1
            _log.error("reconnect.save_failed", client_id=session.client_id, error=str(exc))

    # ------------------------------------------------------------------ restore
    async def restore(self, conn: Connection, token: str) -> dict[str, object]:
        """Welcome fields for ``conn`` after trying to resume the session behind ``token``."""
        address = conn.info.address
        parts = split_token(token)
        client_id = parts[0] if parts is not None else None
        if self._attempts.check(client_id, address, self._clock.monotonic()) > 0:
            return self._rejected("rate_limited")
        if parts is None:
            self._attempts.failed(None, address, self._clock.monotonic())
            return self._rejected("invalid")
        session, result = await self._claim(parts[0], parts[1])
        if session is None:
            if result == "invalid_or_expired":
                self._attempts.failed(parts[0], address, self._clock.monotonic())
            return self._rejected(result)
        self._attempts.succeeded(parts[0], address, self._clock.monotonic())
        self._metrics.reconnects[result] += 1
        fetched = await self._fetch(session)
        try:
            extras = self._apply(conn, session, fetched)
        finally:
            for item in fetched.values():
                self._broadcast.release(item)
        # Until a welcome with a new token reaches the client, the token it holds stays the key:
        # if the connection dies first, the session is saved again under that token.
        conn.reconnect_hash = session.token_hash
        return extras

    async def _claim(self, client_id: str, secret: str) -> tuple[SavedSession | None, str]:
        """The session behind the token and how it was found (``takeover``/``restored``), or
        None and the rejection reason."""
        session = self._take_over(client_id, secret)
        if session is not None:
            return session, "takeover"
        try:
            session = await self.store.claim(client_id, secret)
        except SessionStoreError as exc:
            _log.error("reconnect.store_failed", error=str(exc))
            return None, "unavailable"
        return (session, "restored") if session is not None else (None, "invalid_or_expired")

    def _take_over(self, client_id: str, secret: str) -> SavedSession | None:
        """The live state of a still-open connection whose token this is, which is then closed."""
        live = self._connections.get(client_id)
        if live is None or live.reconnect_hash is None or not token_matches(secret, live.reconnect_hash):
            return None
        session = self.snapshot(live, self._subscriptions.remove_client(client_id))
        self._parked.pop(client_id, None)
        live.reconnect_hash = None  # its token is spent; closing it must not save it again
        self._connections.remove(live)  # at once: the new connection takes its id
        live.close(CloseCode.NORMAL, "session resumed by a new connection")
        return session

    async def _fetch(self, session: SavedSession) -> dict[str, Fetched]:
        """With a remote history: read every saved stream's missed messages first (concurrently,
        the node's deliveries held meanwhile), so that the restore itself runs without an await
        and nothing reaches the client before its welcome."""
        if self._broadcast.broker.local_reads:
            return {}
        wanted = [saved for saved in session.subscriptions if saved.stream in _STREAMS]
        fetched = [self._broadcast.fetch(Stream(saved.stream), saved.last_offset, False) for saved in wanted]
        results = await asyncio.gather(*fetched)
        return {item.stream.value: item for item in results}

    def _apply(
        self, conn: Connection, session: SavedSession, fetched: dict[str, Fetched]
    ) -> dict[str, object]:
        self._connections.rename(conn, session.client_id)
        authenticated = self._restore_auth(conn, session)
        statuses = [
            self._resubscribe(conn, saved, fetched.get(saved.stream)) for saved in session.subscriptions
        ]
        _log.info("reconnect.restored", client_id=conn.client_id, subscriptions=len(statuses))
        return {
            "reconnected": True,
            "authenticated": authenticated,
            "user_id": session.user_id if authenticated else None,
            "subscriptions": statuses,
        }

    def _restore_auth(self, conn: Connection, session: SavedSession) -> bool:
        if session.user_id is None or session.level is None or session.auth_expires_at is None:
            return False
        if session.auth_expires_at <= self._clock.time():
            return False
        level = Level(session.level)
        principal = Principal(session.user_id, level, permissions_for(level), session.auth_expires_at)
        try:
            self._connections.bind_user(conn, principal)
        except RequestError:
            return False
        if self.watch_expiry is not None:
            self.watch_expiry(conn, principal)
        return True

    def _resubscribe(
        self, conn: Connection, saved: SavedSubscription, fetched: Fetched | None = None
    ) -> dict[str, object]:
        stream = Stream(saved.stream)
        permission = CATALOG[stream].permission
        principal = conn.principal
        if principal is None or (permission is not None and permission not in principal.permissions):
            self._parked.setdefault(conn.client_id, []).append(saved)
            return {"stream": saved.stream, "status": "awaiting_auth"}
        flt = parse_filter(saved.params, scope_owner(CATALOG[stream], principal))
        offset, epoch = self._broadcast.position(stream)
        prior = self._subscriptions.coverage(conn.client_id, stream, offset)
        sub = self._subscriptions.subscribe(conn, stream, flt, self._clock.monotonic(), restoring=True)
        if fetched is not None:
            recovered = self._broadcast.recover_fetched(sub, fetched, saved.last_offset, saved.epoch, prior)
        else:  # a remote history cannot be read here: recovered only if nothing was missed
            recovered = self._broadcast.recover(sub, saved.last_offset, saved.epoch, prior)
        sub.start = saved.last_offset if recovered else offset
        return {
            "stream": saved.stream,
            "status": "subscribed",
            "recovered": recovered,
            "offset": offset,
            "epoch": epoch,
        }

    def resume_parked(self, conn: Connection) -> list[dict[str, object]]:
        """After ``auth``: restore subscriptions that were waiting for a permission."""
        parked = self._parked.pop(conn.client_id, [])
        return [self._resubscribe(conn, saved) for saved in parked]

    def revoke(self, conn: Connection) -> list[str]:
        """Privileges changed (token expired, or re-auth as someone else or at a lower level):
        park every subscription the connection may no longer hold; returns their streams."""
        principal = conn.principal
        revoked = []
        for sub in self._subscriptions.of_client(conn.client_id):
            spec = CATALOG[sub.stream]
            permission = spec.permission
            if (
                principal is not None
                and (permission is None or permission in principal.permissions)
                and sub.filter.owner == scope_owner(spec, principal)  # re-auth as someone else
            ):
                continue
            position, epoch = self._broadcast.position(sub.stream)
            self._subscriptions.unsubscribe(conn.client_id, sub.stream, position)
            saved = SavedSubscription(sub.stream.value, sub.filter.params_dict(), position, epoch)
            self._parked.setdefault(conn.client_id, []).append(saved)
            revoked.append(sub.stream.value)
        return revoked

    def _rejected(self, reason: str) -> dict[str, object]:
        self._metrics.reconnects[f"rejected_{reason}"] += 1
        return {"reconnect_rejected": {"reason": reason}}
