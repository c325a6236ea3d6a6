"""The ``auth`` message: verify a JWT, bind the user, and watch the token's expiry.

Re-sending ``auth`` on a live connection refreshes it. A failed ``auth`` leaves an existing
authentication untouched. When the token expires on a live connection, privileges are dropped at
once, the client gets an unsolicited ``token_expired`` error, and if no fresh ``auth`` arrives
within the grace period the server closes with 4001.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from tradewire.auth.tokens import AuthHandler, Principal
from tradewire.clock import Clock, iso_from_ms
from tradewire.core.connection import Connection
from tradewire.core.connection_manager import ConnectionManager
from tradewire.core.router import RouteSpec
from tradewire.errors import ErrorHandler
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import CloseCode, ErrorCode
from tradewire.protocol.messages import Auth, MessageType


class AuthMessageHandler:
    """Handles ``auth`` and the life of the token on the connection."""

    def __init__(
        self,
        auth: AuthHandler,
        connections: ConnectionManager,
        errors: ErrorHandler,
        metrics: ServerMetrics,
        clock: Clock,
        expiry_grace: float,
    ) -> None:
        self._auth = auth
        self._connections = connections
        self._errors = errors
        self._metrics = metrics
        self._clock = clock
        self._grace = expiry_grace
        # Called after a successful auth (reconnect: subscriptions that waited for permissions).
        self.after_auth: Callable[[Connection], list[dict[str, object]]] | None = None
        # Called when privileges change (expiry, re-auth): parks subscriptions no longer allowed.
        self.on_privileges_changed: Callable[[Connection], list[str]] | None = None

    def routes(self) -> list[RouteSpec]:
        return [RouteSpec(MessageType.AUTH, self.handle_auth, requires_auth=False)]

    def handle_auth(self, conn: Connection, message: Auth) -> dict[str, Any]:
        """Verify, build the reply, and only then change the connection: anything that can fail
        (verification, claims, formatting the expiry, the per-user limit) fails before the
        connection is touched, so an error reply never comes with changed state."""
        principal = self._auth.verify(message.token)
        reply: dict[str, Any] = {
            "type": "response",
            "status": "authenticated",
            "user_id": principal.user_id,
            "level": principal.level.value,
            "permissions": sorted(p.value for p in principal.permissions),
            "expires_at": iso_from_ms(int(principal.expires_at * 1000)),
        }
        self._connections.bind_user(conn, principal)
        self.watch_expiry(conn, principal)
        revoked = self.on_privileges_changed(conn) if self.on_privileges_changed is not None else []
        if revoked:
            reply["revoked_subscriptions"] = revoked
        if self.after_auth is not None:
            restored = self.after_auth(conn)
            if restored:
                reply["restored_subscriptions"] = restored
        return reply

    def watch_expiry(self, conn: Connection, principal: Principal) -> None:
        """Drop privileges at the token's ``exp``; close with 4001 after the grace period."""
        conn.cancel_timers()
        delay = max(0.0, principal.expires_at - self._clock.time())
        loop = asyncio.get_running_loop()
        conn.expiry_timers.append(loop.call_later(delay, self._expired, conn, principal))

    def _expired(self, conn: Connection, principal: Principal) -> None:
        if conn.closed or conn.principal is not principal:
            return
        self._connections.drop_user(conn)
        revoked = self.on_privileges_changed(conn) if self.on_privileges_changed is not None else []
        self._metrics.errors[ErrorCode.TOKEN_EXPIRED.value] += 1
        envelope = self._errors.envelope(
            ErrorCode.TOKEN_EXPIRED,
            "token expired: privileges dropped; send auth with a fresh token",
            details={"grace_seconds": self._grace, "paused_subscriptions": revoked},
        )
        conn.send(orjson.dumps(envelope))
        loop = asyncio.get_running_loop()
        conn.expiry_timers.append(loop.call_later(self._grace, self._close_if_still_expired, conn))

    @staticmethod
    def _close_if_still_expired(conn: Connection) -> None:
        if conn.principal is None:
            conn.close(CloseCode.TOKEN_EXPIRED, "token expired")
