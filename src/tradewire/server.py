"""``WebSocketAPIServer``: builds the parts, starts and stops them, exposes the seed's public API.

Orchestration only — no protocol or business logic lives here (DESIGN §2)::

    transport (picows engine | ASGI endpoint)
        └─ ConnectionLifecycle ── ConnectionManager (connections, limits)
              └─ MessageRouter ── handlers (protocol, auth, subscription, ...) ── ErrorHandler
    event bus ── EventBridge ── BroadcastProvider ── SubscriptionManager ── connections (Flusher)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from tradewire._version import PROTOCOL_VERSION, __version__
from tradewire.auth.permissions import Permission
from tradewire.auth.tokens import AuthHandler
from tradewire.bus.event_bus import EventBus
from tradewire.bus.event_bus_memory import InMemoryEventBus
from tradewire.clock import Clock, SystemClock
from tradewire.config import Settings
from tradewire.controller import Controller
from tradewire.core.client_utils import parse_networks
from tradewire.core.connection import Connection
from tradewire.core.connection_manager import ConnectionManager
from tradewire.core.flusher import Flusher
from tradewire.core.lifecycle import ConnectionLifecycle, ConnectionLimits
from tradewire.core.limits import KeyedRateLimiter
from tradewire.core.router import MessageRouter
from tradewire.errors import ErrorHandler
from tradewire.handlers.auth import AuthMessageHandler
from tradewire.handlers.protocol import ProtocolHandler
from tradewire.handlers.strategy import StrategyHandler
from tradewire.handlers.subscription import SubscriptionHandler
from tradewire.handlers.unavailable import UnavailableHandler
from tradewire.metrics import ServerMetrics
from tradewire.protocol.messages import MessageType, Stream
from tradewire.sessions.reconnect import ReconnectService
from tradewire.sessions.session_store import SessionStore, SessionStoreError
from tradewire.sessions.session_store_memory import MemorySessionStore
from tradewire.sessions.session_store_redis import RedisSessionStore
from tradewire.streams.bridge import EventBridge
from tradewire.streams.broadcast import BroadcastProvider
from tradewire.streams.catalog import CATALOG
from tradewire.streams.subscriptions import SubscriptionManager
from tradewire.transport.asgi import AsgiEndpoint
from tradewire.transport.picows_engine import PicowsEngine

# Message types whose component arrives with a later issue; answered with service_unavailable.
_NOT_YET_SERVED: dict[str, tuple[MessageType, ...]] = {
    "sessions": (MessageType.SESSION_START, MessageType.SESSION_STOP, MessageType.SESSION_STATUS),
    "collection": (
        MessageType.COLLECTION_START,
        MessageType.COLLECTION_STOP,
        MessageType.COLLECTION_STATUS,
    ),
    "results": (MessageType.RESULTS_REQUEST,),
}
_STRATEGY_TYPES = (
    MessageType.GET_STRATEGIES,
    MessageType.ACTIVATE_STRATEGY,
    MessageType.DEACTIVATE_STRATEGY,
    MessageType.GET_STRATEGY_STATUS,
    MessageType.VALIDATE_STRATEGY_CONFIG,
    MessageType.UPSERT_STRATEGY,
)


class WebSocketAPIServer:
    """The real-time gateway: one object per process (or per mounted endpoint)."""

    def __init__(
        self,
        event_bus: EventBus | None = None,
        logger: Any = None,
        settings: Settings | None = None,
        host: str | None = None,
        port: int | None = None,
        jwt_secret: str | None = None,
        max_connections: int | None = None,
        heartbeat_interval: float | None = None,
        controller: Controller | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        overrides = {
            key: value
            for key, value in {
                "host": host,
                "ws_port": port,
                "max_connections": max_connections,
                "heartbeat_interval": heartbeat_interval,
            }.items()
            if value is not None
        }
        base = settings if settings is not None else Settings.load()
        self.settings = base.model_copy(update=overrides) if overrides else base
        self._given_bus = event_bus
        self.controller = controller
        self.logger = logger if logger is not None else structlog.get_logger("tradewire.server")
        self.clock = clock if clock is not None else SystemClock()
        self._build()
        self.is_running = False
        self._embedded = False
        self._keepalive: asyncio.Task[None] | None = None
        self._started_at = time.time()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        s = self.settings
        self.metrics = ServerMetrics()
        self.flusher = Flusher()
        self.error_handler = ErrorHandler(self.clock)
        self.auth_handler = AuthHandler.from_settings(s)
        self.connection_manager = ConnectionManager(
            self.metrics, s.max_connections, s.max_connections_per_user, s.max_connections_per_address
        )
        self.message_router = MessageRouter(
            self.clock, self.error_handler, self.metrics, s.max_inflight_requests
        )
        limits = ConnectionLimits(
            heartbeat_interval=s.heartbeat_interval,
            ping_interval=s.ping_interval,
            outbound_queue_bytes=s.outbound_queue_bytes,
            rate_per_minute=s.rate_limit_per_minute,
            rate_burst=s.rate_limit_burst,
            rate_strikes=s.rate_limit_strikes,
            auth_timeout=s.auth_timeout,
        )
        self.connection_lifecycle = ConnectionLifecycle(
            self.connection_manager,
            self.message_router,
            self.metrics,
            self.clock,
            limits,
            self.features,
            self.flusher,
        )
        self._build_streams()
        self.protocol_handler = ProtocolHandler(self.clock, self.features, s.heartbeat_interval)
        self.auth_message_handler = AuthMessageHandler(
            self.auth_handler,
            self.connection_manager,
            self.error_handler,
            self.metrics,
            self.clock,
            s.token_expiry_grace,
        )
        self._build_reconnect()
        self._register_message_handlers()
        transport_options: dict[str, Any] = {
            "max_message_size": s.max_message_size,
            "allowed_origins": frozenset(o.rstrip("/") for o in s.allowed_origins),
            "trusted_proxies": parse_networks(s.trusted_proxies),
            "close_timeout": s.close_timeout,
        }
        self.engine = PicowsEngine(
            self.connection_lifecycle,
            path=s.ws_path,
            handshake_timeout=s.handshake_timeout,
            **transport_options,
        )
        self.fastapi_endpoint = AsgiEndpoint(self.connection_lifecycle, **transport_options)

    def _build_streams(self) -> None:
        s = self.settings
        self.subscription_manager = SubscriptionManager(
            s.max_subscriptions_per_client, s.subscribe_operations_per_hour
        )
        default_size = s.stream_history_size
        history_limits = {
            stream: (
                s.stream_history.get(
                    stream.value, spec.history_size if default_size is None else default_size
                ),
                spec.history_seconds,
            )
            for stream, spec in CATALOG.items()
        }
        self.broadcast_provider = BroadcastProvider(
            self.subscription_manager, self.metrics, self.clock, history_limits
        )
        self._owns_bus = self._given_bus is None
        self.event_bus: EventBus = self._given_bus or InMemoryEventBus(self.metrics)
        self.event_bridge = EventBridge(self.event_bus, self.broadcast_provider, self.metrics)
        self.subscription_handler = SubscriptionHandler(
            self.subscription_manager, self.broadcast_provider, self.clock
        )
        self.metrics.queue_bytes = lambda: [conn.queued_bytes() for conn in self.connection_manager]

    def _build_reconnect(self) -> None:
        s = self.settings
        store: SessionStore = (
            RedisSessionStore(s.redis_url, prefix=s.redis_prefix + "session:")
            if s.redis_url
            else MemorySessionStore(s.max_saved_sessions, s.session_cleanup_interval, self.clock.time)
        )
        self.session_store = store
        self.reconnect = ReconnectService(
            store,
            self.connection_manager,
            self.subscription_manager,
            self.broadcast_provider,
            self.metrics,
            self.clock,
            ttl=s.session_ttl,
            attempts=KeyedRateLimiter(s.reconnect_attempts_per_minute / 60, s.reconnect_burst),
        )
        self.reconnect.watch_expiry = self.auth_message_handler.watch_expiry
        self.auth_message_handler.after_auth = self.reconnect.resume_parked
        self.auth_message_handler.on_privileges_changed = self.reconnect.revoke
        self.connection_lifecycle.enable_reconnect(self.reconnect.issue_token, self.reconnect.restore)
        self.connection_lifecycle.on_close(self._connection_closed)

    def _connection_closed(self, conn: Connection) -> None:
        """Drop the subscriptions of a closed connection and save its session for reconnect."""
        self.reconnect.connection_closed(conn, self.subscription_manager.remove_client(conn.client_id))

    def _register_message_handlers(self) -> None:
        router, protocol = self.message_router, self.protocol_handler
        router.register(MessageType.AUTH, self.auth_message_handler.handle_auth, requires_auth=False)
        router.register(MessageType.HANDSHAKE, protocol.handle_handshake, requires_auth=False)
        router.register(MessageType.HEARTBEAT, protocol.handle_heartbeat, requires_auth=False)
        router.register(MessageType.COMMAND, protocol.handle_command)
        router.register(MessageType.QUERY, protocol.handle_query)
        router.register(MessageType.SUBSCRIBE, self.subscription_handler.handle_subscribe)
        router.register(MessageType.UNSUBSCRIBE, self.subscription_handler.handle_unsubscribe)
        protocol.register_command("get_status", self._command_get_status)
        protocol.register_command("health_check", self._command_health_check)
        protocol.register_command("get_stats", self._command_get_stats, Permission.ADMIN)
        protocol.register_query("server_info", self._query_server_info)
        for component, message_types in _NOT_YET_SERVED.items():
            unavailable = UnavailableHandler(component)
            for message_type in message_types:
                router.register(message_type, unavailable.handle)
        self._register_engine()

    def _register_engine(self) -> None:
        """Strategy messages and engine queries go to the controller, when there is one."""
        router = self.message_router
        if self.controller is None:
            unavailable = UnavailableHandler("strategy manager")
            for message_type in _STRATEGY_TYPES:
                router.register(message_type, unavailable.handle)
            return
        strategies = StrategyHandler(self.controller.strategies)
        write = Permission.MANAGE_STRATEGIES
        router.register(MessageType.GET_STRATEGIES, strategies.handle_get_strategies)
        router.register(MessageType.GET_STRATEGY_STATUS, strategies.handle_get_strategy_status)
        router.register(MessageType.VALIDATE_STRATEGY_CONFIG, strategies.handle_validate_strategy_config)
        router.register(MessageType.UPSERT_STRATEGY, strategies.handle_upsert_strategy, permission=write)
        router.register(MessageType.ACTIVATE_STRATEGY, strategies.handle_activate_strategy, permission=write)
        router.register(
            MessageType.DEACTIVATE_STRATEGY, strategies.handle_deactivate_strategy, permission=write
        )
        for name, action in self.controller.queries().items():
            self.protocol_handler.register_query(name, action)

    # ------------------------------------------------------------------ public API (seed)
    async def start(self) -> None:
        """Start the parts and listen on ``settings.host:settings.ws_port`` (picows engine)."""
        if self.is_running:
            return
        await self.startup_embedded()
        await self.engine.start(self.settings.host, self.settings.ws_port)
        self.is_running = True
        self.logger.info("server.started", ws_url=self.ws_url)

    async def startup_embedded(self) -> None:
        """Start the parts without a listening socket (endpoint mounted in an ASGI app)."""
        if self._embedded:
            return
        if self.auth_handler.secret_generated:
            self.logger.warning(
                "auth.dev_secret", detail="dev mode: JWT secret generated and stored in the data directory"
            )
        self.connection_lifecycle.admit()
        self._keepalive = asyncio.get_running_loop().create_task(self.connection_lifecycle.run_keepalive())
        self.event_bridge.start()
        if self._owns_bus:
            await self.event_bus.start()
        try:
            await self.session_store.start()
        except SessionStoreError as exc:  # degrade: serve without reconnect until the store is back
            self.logger.error("session_store.unavailable", error=str(exc))
        self._embedded = True
        if self.controller is not None:
            try:
                await self.controller.start(self.event_bus)
            except BaseException:
                await self.stop()  # leave nothing running behind a failed start
                raise

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every client with 1001, and stop the parts."""
        if not self._embedded:
            return
        self.engine.stop_accepting()
        self.event_bridge.stop()
        if self._owns_bus:
            await self.event_bus.stop()
        await self.connection_lifecycle.shutdown(timeout)
        if self.controller is not None:
            await self.controller.stop()
        await self.reconnect.drain()
        await self.session_store.stop()
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
            self._keepalive = None
        await self.engine.wait_closed()
        self.is_running = False
        self._embedded = False
        self.logger.info("server.stopped", uptime=round(time.time() - self._started_at, 3))

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` serving :attr:`fastapi_endpoint`.

        They hold the ASGI route to this server's limits before anything is buffered (message
        size, no compression, bounded pongs, close and request-head deadlines) and let the
        endpoint see pings as traffic; see :mod:`tradewire.transport.uvicorn_protocols`.
        """
        from tradewire.transport.uvicorn_protocols import uvicorn_options

        return uvicorn_options(self.settings, on_reject=self._count_rejected)

    def _count_rejected(self, reason: str) -> None:
        self.metrics.rejected[reason] += 1

    async def broadcast_to_subscribers(
        self, subscription_type: str, data: dict[str, Any], exclude_client: str | None = None
    ) -> int:
        """Publish ``data`` on the stream ``subscription_type``; returns connections queued to.

        Encodes once and queues without awaiting any client (the seed awaited each send).
        """
        return self.broadcast_provider.publish(Stream(subscription_type), data, exclude_client)

    def get_stats(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "server_version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "running": self.is_running or self._embedded,
            "uptime_seconds": round(time.time() - self._started_at, 3),
            "connections": {
                "current": m.connections_current,
                "opened": m.connections_opened,
                "max": self.settings.max_connections,
                "rejected": dict(m.rejected),
            },
            "messages": {"in": m.messages_in, "out": m.messages_out},
            "errors": dict(m.errors),
            "closes": {str(code): count for code, count in m.closes.items()},
            "streams": {
                stream.value: {
                    "offset": history.offset,
                    "epoch": history.epoch,
                    "history": len(history),
                    "subscribers": self.subscription_manager.count(stream),
                    "published": m.published[stream.value],
                    "deliveries": m.deliveries[stream.value],
                }
                for stream, history in self.broadcast_provider.histories.items()
            },
            "delivery": {"flushes": m.flushes, "coalesced": m.coalesced, "conflated": m.conflated},
        }

    async def health_check(self) -> dict[str, Any]:
        """Liveness and readiness of each part; ``status`` is ``healthy`` only if all are ready."""
        listening = self.engine.port is not None
        components: dict[str, dict[str, Any]] = {
            "websocket": {
                "ready": listening or self._embedded,
                "listening": listening,
                "connections": len(self.connection_manager),
                "capacity_used": round(len(self.connection_manager) / self.settings.max_connections, 4),
            },
            "keepalive": {"ready": self._keepalive is not None and not self._keepalive.done()},
            "auth": {"ready": True, "algorithm": self.auth_handler.algorithm.value},
            "session_store": await self._store_health(),
        }
        if self.controller is not None:
            components["engine"] = self.controller.health()
        healthy = all(bool(part["ready"]) for part in components.values())
        return {"status": "healthy" if healthy else "unhealthy", "components": components}

    # ------------------------------------------------------------------ helpers
    async def _store_health(self) -> dict[str, Any]:
        backend = "redis" if self.settings.redis_url else "memory"
        try:
            return {"ready": True, "backend": backend, "saved_sessions": await self.session_store.count()}
        except SessionStoreError as exc:
            return {"ready": False, "backend": backend, "error": str(exc)}

    def features(self) -> list[str]:
        """Protocol features this server actually serves (advertised in the welcome)."""
        return ["reconnect", "heartbeat", "subscriptions", "recovery"]

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.engine.port or self.settings.ws_port}{self.settings.ws_path}"

    def server_info(self) -> dict[str, Any]:
        s = self.settings
        return {
            "server_version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "features": self.features(),
            "message_types": self.message_router.registered(),
            "commands": self.protocol_handler.commands(),
            "queries": self.protocol_handler.queries(),
            "limits": {
                "max_message_size": s.max_message_size,
                "rate_limit_per_minute": s.rate_limit_per_minute,
                "rate_limit_burst": s.rate_limit_burst,
                "max_connections_per_user": s.max_connections_per_user,
                "max_connections_per_address": s.max_connections_per_address,
                "heartbeat_interval": s.heartbeat_interval,
                "auth_timeout": s.auth_timeout,
            },
        }

    def _command_get_status(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "client_id": conn.client_id,
            "authenticated": conn.authenticated,
            "user_id": conn.user_id,
            "address": conn.info.address,
            "subscriptions": [
                sub.stream.value for sub in self.subscription_manager.of_client(conn.client_id)
            ],
            "conflated": conn.conflated,
            "connections": len(self.connection_manager),
            "uptime_seconds": round(time.time() - self._started_at, 3),
        }

    async def _command_health_check(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        return await self.health_check()

    def _command_get_stats(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        return self.get_stats()

    def _query_server_info(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        return self.server_info()
