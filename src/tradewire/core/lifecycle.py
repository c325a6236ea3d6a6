"""Connection lifecycle: accept → create → welcome → message loop → cleanup (DESIGN §2).

Transports call :meth:`ConnectionLifecycle.open` when a socket is upgraded, :meth:`receive` for
each complete inbound message, :meth:`touch` for control frames, and :meth:`closed` when the
socket is gone. The keepalive loop pings quiet clients every ``ping_interval``, closes with
4000 any client that sent nothing at all (no message, no ping, no pong) for 3 ×
``heartbeat_interval``, closes with 4003 a client still anonymous ``auth_timeout`` after it
connected, and hands back to its transport's close deadline a connection whose transport failed
it by itself (a framing error the WebSocket library answered with its own close frame).

Admission: over ``max_connections`` or over ``max_connections_per_address`` for the client's
address, a new connection gets 1013 and no welcome; while shutting down, 1001.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import structlog

from tradewire._version import PROTOCOL_VERSION
from tradewire.clock import Clock
from tradewire.core.client_utils import ClientInfo
from tradewire.core.connection import Connection, Outbound
from tradewire.core.connection_manager import ConnectionManager
from tradewire.core.flusher import Flusher
from tradewire.core.limits import RateLimiter
from tradewire.core.router import MessageRouter
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import CloseCode

Restorer = Callable[[Connection, str], Awaitable[dict[str, object]]]
IDLE_FACTOR = 3
MIN_SWEEP_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits (DESIGN §3.7)."""

    heartbeat_interval: float = 30.0
    ping_interval: float = 20.0
    outbound_queue_bytes: int = 1024 * 1024
    rate_per_minute: float = 100.0
    rate_burst: int = 20
    rate_strikes: int = 50
    auth_timeout: float = 10.0  # seconds an anonymous connection may stay; 0 = no deadline

    @property
    def idle_timeout(self) -> float:
        return IDLE_FACTOR * self.heartbeat_interval

    @property
    def sweep_interval(self) -> float:
        """A quarter of the shortest deadline the sweep enforces (so each is kept within 25 %)."""
        shortest = min(self.heartbeat_interval, self.ping_interval)
        if self.auth_timeout > 0:
            shortest = min(shortest, self.auth_timeout)
        return max(MIN_SWEEP_SECONDS, shortest / 4)


class ConnectionLifecycle:
    """Creates, welcomes, keeps alive and cleans up connections for any transport."""

    def __init__(
        self,
        connections: ConnectionManager,
        router: MessageRouter,
        metrics: ServerMetrics,
        clock: Clock,
        limits: ConnectionLimits,
        features: Callable[[], list[str]],
        flusher: Flusher,
    ) -> None:
        self._connections = connections
        self._flusher = flusher
        self._on_close: list[Callable[[Connection], object]] = []
        self._issue_token: Callable[[Connection], str] | None = None
        self._restore: Restorer | None = None
        self._router = router
        self._metrics = metrics
        self._clock = clock
        self.limits = limits
        self._features = features
        # Connections that have never been authenticated, in opening order: the auth deadline
        # applies to them only (a connection whose token later expires gets 4001's grace instead).
        self._anonymous: dict[Connection, float] = {}
        self._shutting_down = False
        self._log = structlog.get_logger("tradewire.lifecycle")

    def enable_reconnect(self, issue_token: Callable[[Connection], str], restore: Restorer) -> None:
        """Hooks of the reconnect service: a token for each welcome, and session restore."""
        self._issue_token = issue_token
        self._restore = restore

    def admit(self) -> None:
        """Accept new connections (again, after a :meth:`shutdown`)."""
        self._shutting_down = False

    def on_close(self, callback: Callable[[Connection], object]) -> None:
        """Run ``callback(conn)`` when a connection is gone (e.g. drop its subscriptions)."""
        self._on_close.append(callback)

    # ------------------------------------------------------------------ transport callbacks
    def open(self, outbound: Outbound, info: ClientInfo) -> Connection | None:
        """Register a new connection and send its welcome; None (after closing 1013) if full."""
        if self._refuse(outbound, info):
            return None
        conn = self._create(outbound, info)
        self._register(conn)
        conn.send(orjson.dumps(self._welcome(conn, {})))
        self._log.info("connection.opened", client_id=conn.client_id, address=info.address)
        return conn

    async def open_resuming(self, outbound: Outbound, info: ClientInfo, token: str) -> Connection | None:
        """Like :meth:`open` for a client presenting a reconnect token: restore, then welcome.

        Inbound messages that arrive meanwhile must be held by the transport until this returns.
        """
        if self._refuse(outbound, info):
            return None
        conn = self._create(outbound, info)
        self._register(conn)
        extras = await self._resume(conn, token)
        if not outbound.is_open():
            return conn  # gone while restoring: the transport's close saves the session again
        try:
            welcome = orjson.dumps(self._welcome(conn, extras))
        except TypeError:  # orjson.JSONEncodeError: a saved session holds a value it cannot write
            self._log.exception("reconnect.unencodable_session", client_id=conn.client_id)
            conn.reconnect_hash = None  # the session is unusable: never save it again
            conn.close(CloseCode.INTERNAL_ERROR, "session could not be restored")
            return conn  # the transport reports the close; lifecycle.closed releases the slot
        conn.send(welcome)
        self._log.info(
            "connection.opened",
            client_id=conn.client_id,
            address=info.address,
            reconnected=bool(extras.get("reconnected")),
        )
        return conn

    async def _resume(self, conn: Connection, token: str) -> dict[str, object]:
        if self._restore is None:
            return {"reconnect_rejected": {"reason": "reconnect is not enabled"}}
        try:
            return await self._restore(conn, token)
        except Exception:  # noqa: BLE001 - boundary: a failed restore must still welcome the client
            self._log.exception("reconnect.failed", client_id=conn.client_id)
            return {"reconnect_rejected": {"reason": "unavailable"}}

    def _refuse(self, outbound: Outbound, info: ClientInfo) -> bool:
        """Close a connection the server cannot admit (no welcome); True if it was refused."""
        if self._shutting_down:
            reason, code, text = "shutting_down", CloseCode.GOING_AWAY, "server shutting down"
        elif self._connections.full:
            reason, code, text = "capacity", CloseCode.TRY_AGAIN_LATER, "server at capacity"
        elif self._connections.address_full(info.address):
            reason, code = "address_limit", CloseCode.TRY_AGAIN_LATER
            text = "too many connections from this address"
        else:
            return False
        self._metrics.rejected[reason] += 1
        self._metrics.closes[code] += 1
        outbound.close(code, text)
        self._log.warning("connection.rejected", reason=reason, address=info.address)
        return True

    def _register(self, conn: Connection) -> None:
        self._connections.add(conn)
        if self.limits.auth_timeout > 0:
            self._anonymous[conn] = conn.opened_at + self.limits.auth_timeout

    def reject(self, reason: str) -> None:
        """Count and log an upgrade refused by the transport (bad origin, ...)."""
        self._metrics.rejected[reason] += 1
        self._log.warning("connection.rejected", reason=reason)

    @property
    def router(self) -> MessageRouter:
        """Transports hand complete inbound messages to ``router.handle(conn, data)``."""
        return self._router

    def touch(self, conn: Connection) -> None:
        """A control frame (ping/pong) arrived: the client is alive."""
        conn.last_seen = self._clock.monotonic()

    def failed(self, conn: Connection, code: int) -> None:
        """The transport closed ``conn`` by itself with ``code`` (a framing error its WebSocket
        library answered, a client that never read its pongs): count it like a server close."""
        if conn.close_code is not None:
            return  # the server had closed it already (that close was counted)
        conn.close_code = code
        self._metrics.closes[code] += 1
        conn.mark_closed()
        self._log.info("connection.failed", client_id=conn.client_id, code=code)

    def closed(self, conn: Connection) -> None:
        """The transport is gone; release everything the connection held."""
        conn.mark_closed()
        self._anonymous.pop(conn, None)
        if self._connections.remove(conn):
            for callback in self._on_close:
                callback(conn)
            conn.release()
            self._log.info(
                "connection.closed",
                client_id=conn.client_id,
                code=conn.close_code,
                seconds=round(self._clock.monotonic() - conn.opened_at, 3),
            )

    # ------------------------------------------------------------------ keepalive and shutdown
    def sweep(self) -> None:
        """Ping quiet connections and close dead, anonymous-too-long and transport-failed ones."""
        now = self._clock.monotonic()
        self._sweep_anonymous(now)
        idle_timeout = self.limits.idle_timeout
        ping_interval = self.limits.ping_interval
        for conn in self._connections:
            if conn.closed:
                continue
            idle = now - conn.last_seen
            if not conn.transport_open():
                # The WebSocket library already sent its own close frame (a framing error): closing
                # here arms the transport's deadline, so the socket goes even if the peer never reads.
                conn.close(CloseCode.PROTOCOL_ERROR, "protocol error")
            elif idle >= idle_timeout:
                self._log.info("connection.idle_timeout", client_id=conn.client_id, idle=round(idle, 3))
                conn.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
            elif idle >= ping_interval and now - conn.pinged_at >= ping_interval:
                conn.ping(now)

    def _sweep_anonymous(self, now: float) -> None:
        """Close connections that did not authenticate within ``auth_timeout`` (4003).

        A connection leaves this watch the first time it is authenticated (``auth``, or a restored
        session); losing the authentication later (token expiry) is 4001's business.
        """
        expired: list[Connection] = []
        for conn, deadline in list(self._anonymous.items()):
            if conn.principal is not None or conn.closed:
                del self._anonymous[conn]
            elif now >= deadline:
                expired.append(conn)
        for conn in expired:
            del self._anonymous[conn]
            self._log.info("connection.auth_timeout", client_id=conn.client_id, address=conn.info.address)
            conn.close(CloseCode.AUTH_TIMEOUT, "authentication timeout")

    async def run_keepalive(self) -> None:
        """Sweep forever (cancel to stop)."""
        while True:
            await asyncio.sleep(self.limits.sweep_interval)
            self.sweep()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Close every connection with 1001 and wait (bounded) until transports report them gone.

        New connections arriving meanwhile (the ASGI route keeps accepting until its server stops)
        get 1001 at once.
        """
        self._shutting_down = True
        closed = self._connections.close_all(CloseCode.GOING_AWAY, "server shutting down")
        try:
            await asyncio.wait_for(self._connections.wait_empty(), timeout)
        except TimeoutError:
            self._log.warning("lifecycle.shutdown_timeout", remaining=len(self._connections))
        self._log.info("lifecycle.shutdown", closed=closed, remaining=len(self._connections))

    # ------------------------------------------------------------------ helpers
    def _create(self, outbound: Outbound, info: ClientInfo) -> Connection:
        now = self._clock.monotonic()
        limits = self.limits
        return Connection(
            client_id="c_" + secrets.token_urlsafe(12),
            info=info,
            outbound=outbound,
            metrics=self._metrics,
            flusher=self._flusher,
            queue_limit=limits.outbound_queue_bytes,
            rate=RateLimiter(limits.rate_per_minute / 60.0, limits.rate_burst),
            strikes=RateLimiter(limits.rate_strikes / 60.0, limits.rate_strikes),
            now=now,
        )

    def _welcome(self, conn: Connection, extras: dict[str, object]) -> dict[str, object]:
        now = self._clock.iso_now()
        welcome: dict[str, object] = {
            "type": "status",
            "status": "connected",
            "client_id": conn.client_id,
            "reconnect_token": self._issue_token(conn) if self._issue_token is not None else None,
            "server_time": now,
            "protocol_version": PROTOCOL_VERSION,
            "heartbeat_interval": self.limits.heartbeat_interval,
            "features": self._features(),
            "reconnected": False,
            "timestamp": now,
        }
        welcome.update(extras)
        return welcome
