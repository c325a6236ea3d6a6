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

import orjson
import structlog
from pydantic import SecretStr

from tradewire._version import PROTOCOL_VERSION, __version__
from tradewire.auth.permissions import Permission
from tradewire.auth.throttle import GuessThrottle
from tradewire.auth.tokens import AuthHandler
from tradewire.bus.event_bus import EventBus
from tradewire.bus.event_bus_memory import InMemoryEventBus
from tradewire.clock import Clock, SystemClock
from tradewire.cluster.checkpoint import SessionCheckpoints
from tradewire.cluster.node import ClusterNode
from tradewire.config import DEV_SECRET_FILE, SecretSource, Settings
from tradewire.controller import Controller
from tradewire.core.client_utils import parse_networks
from tradewire.core.connection import Connection
from tradewire.core.connection_manager import ConnectionManager
from tradewire.core.flusher import Flusher
from tradewire.core.lifecycle import ConnectionLifecycle, ConnectionLimits
from tradewire.core.router import MessageRouter
from tradewire.errors import ErrorHandler
from tradewire.handlers.auth import AuthMessageHandler
from tradewire.handlers.collection import COLLECTION_TYPES, CollectionMessageHandler
from tradewire.handlers.engine_errors import to_request_error
from tradewire.handlers.protocol import ProtocolHandler
from tradewire.handlers.results import RESULTS_TYPES, ResultsHandler
from tradewire.handlers.session import SESSION_TYPES, SessionHandler
from tradewire.handlers.strategy import STRATEGY_TYPES, StrategyHandler
from tradewire.handlers.subscription import SubscriptionHandler
from tradewire.handlers.unavailable import UnavailableHandler
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import Stream
from tradewire.sessions.reconnect import ReconnectService
from tradewire.sessions.session_store import SessionStore, SessionStoreError
from tradewire.sessions.session_store_memory import MemorySessionStore
from tradewire.sessions.session_store_redis import RedisSessionStore
from tradewire.streams.bridge import EventBridge
from tradewire.streams.broadcast import BroadcastProvider
from tradewire.streams.broker import Broker
from tradewire.streams.broker_memory import MemoryBroker
from tradewire.streams.broker_redis import RedisBroker
from tradewire.streams.catalog import CATALOG
from tradewire.streams.subscriptions import SubscriptionManager
from tradewire.transport.asgi import AsgiEndpoint
from tradewire.transport.picows_engine import PicowsEngine


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
                "jwt_secret": SecretStr(jwt_secret) if jwt_secret is not None else None,
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
        if self.controller is not None:
            self.metrics.engine = self.controller.health
        self.flusher = Flusher()
        self.error_handler = ErrorHandler(self.clock)
        self.auth_handler = AuthHandler.from_settings(s)
        self.connection_manager = ConnectionManager(
            self.metrics, s.max_connections, s.max_connections_per_user, s.max_connections_per_address
        )
        self.message_router = MessageRouter(
            self.clock, self.error_handler, self.metrics, s.max_inflight_requests, s.max_nesting_depth
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
        broker: Broker = (
            RedisBroker(
                s.redis_url,
                s.redis_prefix,
                self.clock,
                self.metrics,
                history_limits,
                queue_size=s.cluster_publish_queue,
            )
            if s.redis_url
            else MemoryBroker(self.clock, history_limits)
        )
        self.broker = broker
        self.metrics.cluster_degraded = lambda: bool(broker.health()["degraded"])
        self.broadcast_provider = BroadcastProvider(
            self.subscription_manager, self.metrics, self.clock, broker
        )
        self._owns_bus = self._given_bus is None
        self.cluster = (
            ClusterNode.build(s, self.metrics, self.connection_manager, self._refuse_cluster_user)
            if s.redis_url
            else None
        )
        default_bus = self.cluster.bus if self.cluster is not None else InMemoryEventBus(self.metrics)
        self.event_bus: EventBus = self._given_bus or default_bus
        self.event_bridge = EventBridge(self.event_bus, self.broadcast_provider, self.metrics)
        self.subscription_handler = SubscriptionHandler(
            self.subscription_manager,
            self.broadcast_provider,
            self.clock,
            self.controller.symbols if self.controller is not None else None,
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
            attempts=GuessThrottle(s.throttle_policy(s.reconnect_attempts_per_minute, s.reconnect_burst)),
        )
        self.reconnect.watch_expiry = self.auth_message_handler.watch_expiry
        self.auth_message_handler.after_auth = self.reconnect.resume_parked
        self.auth_message_handler.on_privileges_changed = self.reconnect.revoke
        self.checkpoints = SessionCheckpoints(
            self.reconnect,
            self.connection_manager,
            self.subscription_manager,
            self.broadcast_provider,
            s.session_checkpoint_seconds if s.redis_url else 0.0,
        )
        self.connection_lifecycle.enable_reconnect(self.reconnect.issue_token, self.reconnect.restore)
        self.connection_lifecycle.on_close(self._connection_closed)

    def _refuse_cluster_user(self, conn: Connection) -> None:
        """The user already holds its connections on other nodes: undo this connection's auth."""
        self.connection_manager.drop_user(conn)
        conn.cancel_timers()
        self.reconnect.revoke(conn)
        limit = self.settings.max_connections_per_user
        envelope = self.error_handler.envelope(
            ErrorCode.CONNECTION_LIMIT_EXCEEDED,
            f"user already has {limit} authenticated connections in the cluster",
            details={"limit": limit, "scope": "cluster"},
        )
        self.metrics.errors[ErrorCode.CONNECTION_LIMIT_EXCEEDED.value] += 1
        conn.send(orjson.dumps(envelope))

    def _connection_closed(self, conn: Connection) -> None:
        """Drop the subscriptions of a closed connection and save its session for reconnect."""
        self.reconnect.connection_closed(conn, self.subscription_manager.remove_client(conn.client_id))

    def _register_message_handlers(self) -> None:
        """Every handler declares its routes; domain errors of the engine map to error codes."""
        router, protocol = self.message_router, self.protocol_handler
        router.add_translator(to_request_error)
        router.include(self.auth_message_handler.routes())
        router.include(protocol.routes())
        router.include(self.subscription_handler.routes())
        protocol.register_command("get_status", self._command_get_status)
        protocol.register_command("health_check", self._command_health_check)
        protocol.register_command("get_stats", self._command_get_stats, Permission.ADMIN)
        protocol.register_query("server_info", self._query_server_info)
        self._register_engine()

    def _register_engine(self) -> None:
        """Strategy, session and results messages go to the controller, when it serves them."""
        router = self.message_router
        controller = self.controller
        if controller is None:
            router.include(UnavailableHandler("strategy manager").routes(STRATEGY_TYPES))
        else:
            router.include(StrategyHandler(controller.strategies).routes())
            for name, action in controller.queries().items():
                self.protocol_handler.register_query(name, action)
        sessions = controller.sessions if controller is not None else None
        collections = controller.collections if controller is not None else None
        if sessions is None:
            router.include(UnavailableHandler("sessions").routes((*SESSION_TYPES, *RESULTS_TYPES)))
        else:
            router.include(SessionHandler(sessions).routes())
            router.include(ResultsHandler(sessions, collections).routes())
        if collections is None:
            router.include(UnavailableHandler("collection").routes(COLLECTION_TYPES))
        else:
            router.include(CollectionMessageHandler(collections).routes())

    # ------------------------------------------------------------------ public API (seed)
    async def start(self, *, reuse_port: bool = False) -> None:
        """Start the parts and listen on ``settings.host:settings.ws_port`` (picows engine);
        ``reuse_port``: share the port with other processes (``tradewire serve --workers N``)."""
        if self.is_running:
            return
        await self.startup_embedded()
        await self.engine.start(self.settings.host, self.settings.ws_port, reuse_port=reuse_port)
        self.is_running = True
        self.logger.info("server.started", ws_url=self.ws_url)

    async def startup_embedded(self) -> None:
        """Start the parts without a listening socket (endpoint mounted in an ASGI app)."""
        if self._embedded:
            return
        self._log_secret()
        self.connection_lifecycle.admit()
        self._keepalive = asyncio.get_running_loop().create_task(self.connection_lifecycle.run_keepalive())
        await self.broker.start()
        if self.cluster is not None:
            await self.cluster.start()
        await self.checkpoints.start()
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
        await self.checkpoints.stop()
        self.event_bridge.stop()
        if self._owns_bus:
            await self.event_bus.stop()
        await self.connection_lifecycle.shutdown(timeout)
        if self.controller is not None:
            await self.controller.stop()
        await self.reconnect.drain()
        await self.session_store.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.broker.stop()
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

        Encodes once and queues without awaiting any client (the seed awaited each send). In a
        cluster it waits until the message came back through Redis and was queued here.
        """
        stream = Stream(subscription_type)
        if self.broker.local_reads:
            return self.broadcast_provider.publish(stream, data, exclude_client)
        return await self.broker.publish_wait(stream, data, exclude_client)

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
                    **self.broadcast_provider.stats(stream),
                    "subscribers": self.subscription_manager.count(stream),
                    "published": m.published[stream.value],
                    "deliveries": m.deliveries[stream.value],
                }
                for stream in CATALOG
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
            "broker": self.broker.health(),
        }
        if self.controller is not None:
            components["engine"] = self.controller.health()
        healthy = all(bool(part["ready"]) for part in components.values())
        return {
            "status": "healthy" if healthy else "unhealthy",
            "degraded": bool(components["broker"]["degraded"]),  # Redis away: serving own clients only
            "components": components,
        }

    # ------------------------------------------------------------------ helpers
    def _log_secret(self) -> None:
        """Say where the HS256 secret came from, and warn loudly when it is weak (dev mode only:
        production refuses to start with one)."""
        auth = self.auth_handler
        path = str(self.settings.data_dir / DEV_SECRET_FILE)
        if auth.secret_source is SecretSource.GENERATED:
            self.logger.warning("auth.dev_secret", detail="dev mode: new JWT secret generated", path=path)
        elif auth.secret_source is SecretSource.REUSED:
            self.logger.warning("auth.dev_secret", detail="dev mode: reusing the JWT secret", path=path)
        if auth.secret_weakness is not None:
            self.logger.warning(
                "auth.weak_secret",
                detail="WEAK JWT SECRET: anyone holding one token can brute-force it and mint admin "
                "tokens; production mode refuses to start with it",
                reason=auth.secret_weakness,
            )

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
