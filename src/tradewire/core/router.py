"""Decode, validate, authorise, rate-limit and dispatch one client message.

One shape for every handler: ``handler(conn, message) -> reply`` where ``message`` is the typed
struct of its ``type`` and ``reply`` is a dict (or None for no reply). A handler defined with
``async def`` runs as a task, at most ``max_inflight`` per connection (the rest wait in order),
so a slow handler never blocks heartbeats, other clients or stream delivery; a plain ``def``
handler replies inline, which keeps the heartbeat path as cheap as a bare echo server.

The router adds ``id`` (direct replies only) and ``timestamp`` to each reply, and turns every
failure into an envelope through :class:`~tradewire.errors.ErrorHandler`.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
import structlog

from tradewire.auth.permissions import Permission
from tradewire.clock import Clock
from tradewire.core.connection import Connection
from tradewire.errors import ErrorHandler, RequestError
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import CloseCode, ErrorCode
from tradewire.protocol.messages import (
    MAX_SAFE_INTEGER,
    MESSAGE_CLASSES,
    Message,
    MessageType,
    free_fields,
    new_decoder,
    too_deep,
)

Reply = dict[str, Any] | None
Handler = Callable[[Connection, Any], Reply | Awaitable[Reply]]
Translator = Callable[[Exception], RequestError | None]

_KNOWN_TYPES = frozenset(t.value for t in MessageType)
_dumps = orjson.dumps
_MISSING_FIELD = re.compile(r"Object missing required field `([^`]+)`")
LATENCY_SAMPLE_MASK = 63  # time sync handlers for one message in 64 (async ones: always)
_MAX_ID_LENGTH = 64
DEFAULT_MAX_DEPTH = 32  # levels of objects/arrays in a free-form field (Settings.max_nesting_depth)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One served message type, declared next to its handler (each ``handlers/*`` module exposes
    its table, so the server includes tables instead of registering types one by one)."""

    message_type: MessageType
    handler: Handler
    requires_auth: bool = True
    permission: Permission | None = None


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    requires_auth: bool
    permission: Permission | None
    is_async: bool
    free_fields: tuple[str, ...] = ()  # fields of arbitrary JSON, depth-checked before dispatch
    checked: bool = False  # requires_auth or free_fields: one test on the hot path for both


class MessageRouter:
    """Dispatch table from message struct class to :class:`Route`."""

    def __init__(
        self,
        clock: Clock,
        errors: ErrorHandler,
        metrics: ServerMetrics,
        max_inflight: int = 4,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._clock = clock
        self._errors = errors
        self._metrics = metrics
        self._max_inflight = max_inflight
        self._max_depth = max_depth
        self._decode = new_decoder().decode
        self._monotonic = clock.monotonic
        self._iso_now = clock.iso_now
        self._unserved = Route(_unserved, False, None, False)
        self._routes: dict[type[Message], Route] = {}
        self._translators: list[Translator] = []
        self._log = structlog.get_logger("tradewire.router")

    def register(
        self,
        message_type: MessageType,
        handler: Handler,
        *,
        requires_auth: bool = True,
        permission: Permission | None = None,
    ) -> None:
        """Route ``message_type`` to ``handler`` (sync or async) with its access rules."""
        is_async = inspect.iscoroutinefunction(handler)
        cls = MESSAGE_CLASSES[message_type]
        fields = free_fields(cls)
        self._routes[cls] = Route(
            handler, requires_auth, permission, is_async, fields, requires_auth or bool(fields)
        )

    def include(self, specs: Iterable[RouteSpec]) -> None:
        """Register every route of a handler's table."""
        for spec in specs:
            self.register(
                spec.message_type, spec.handler, requires_auth=spec.requires_auth, permission=spec.permission
            )

    def add_translator(self, translate: Translator) -> None:
        """Map exceptions of a lower layer (e.g. engine domain errors) to client errors; a
        translator returns None for exceptions it does not know (they become internal_error)."""
        self._translators.append(translate)

    def registered(self) -> list[str]:
        return sorted(cls.__struct_config__.tag for cls in self._routes)  # type: ignore[misc]

    # ------------------------------------------------------------------ inbound
    def handle(self, conn: Connection, data: bytes) -> None:
        """Process one inbound text message of ``conn`` (already size-checked by the transport).

        This is the hot path of every request (a heartbeat costs ~1 µs here on top of the
        transport): one clock read serves the rate limit and the keepalive, sync handlers run
        inline, and handler latency is timed for one message in ``LATENCY_SAMPLE``. It never
        raises: a handler's failure, a reply that cannot be encoded or any other surprise ends in
        a typed error envelope (the ``try`` costs nothing until something raises).
        """
        message: Message | None = None
        try:
            self._metrics.messages_in += 1
            conn.received += 1
            now = self._monotonic()
            conn.last_seen = now
            rate = conn.rate
            tat = rate.tat if rate.tat > now else now  # RateLimiter.allow, inlined on the hot path
            if tat - now > rate.tolerance:
                self._reject_rate(conn, data, now)
                return
            rate.tat = tat + rate.interval
            try:
                message = self._decode(data)
            except (msgspec.DecodeError, RecursionError) as exc:
                self._reply_undecodable(conn, data, exc)
                return
            route = self._routes.get(type(message), self._unserved)
            if route.checked and not self._admit(conn, route, message):
                return
            if route.is_async:
                self._submit(conn, route, message)
                return
            if self._metrics.messages_in & LATENCY_SAMPLE_MASK:
                reply: Reply = route.handler(conn, message)  # type: ignore[assignment]
            else:
                reply = self._timed_call(conn, route, message)
            if reply is not None:
                if message.id is not None:
                    reply["id"] = message.id
                if "timestamp" not in reply:
                    reply["timestamp"] = self._iso_now()
                conn.send(_dumps(reply))
        except Exception as exc:  # noqa: BLE001 - boundary: mapped to an envelope, never raw text
            self._failed(exc, conn, message)

    def _timed_call(self, conn: Connection, route: Route, message: Message) -> Reply:
        """A sync handler call that also feeds the latency histogram (one message in 64)."""
        started = time.perf_counter()
        try:
            reply: Reply = route.handler(conn, message)  # type: ignore[assignment]
        except Exception as exc:  # noqa: BLE001 - boundary: mapped to an envelope, never raw text
            reply = self._failure_reply(exc, conn, message)
        self._metrics.observe_latency(message.__struct_config__.tag, time.perf_counter() - started)  # type: ignore[arg-type]
        return reply

    def _failed(self, exc: Exception, conn: Connection, message: Message | None) -> None:
        """A sync handler raised, or its reply could not be encoded (``orjson`` refuses e.g.
        integers beyond 64 bits — a validation gap, logged as a server error), or anything else
        went wrong: the client gets the RequestError's envelope or ``internal_error`` with a
        correlation id, never a dropped connection (1011)."""
        if message is None:
            self._metrics.errors[ErrorCode.INTERNAL_ERROR.value] += 1
            envelope = self._errors.internal(exc, None, client_id=conn.client_id, stage="router")
        else:
            envelope = self._failure_reply(exc, conn, message) | _id_field(message.id)
        self._send_envelope(conn, envelope)

    def _admit(self, conn: Connection, route: Route, message: Message) -> bool:
        """Authentication, permission and nesting checks of routes that need any of them."""
        if route.requires_auth and not self._allowed(conn, route, message.id):
            return False
        return not (route.free_fields and self._too_deep(conn, route, message))

    def _too_deep(self, conn: Connection, route: Route, message: Message) -> bool:
        """Free-form fields (``params``...) nested deeper than ``max_depth``: validation_error.

        Bounded depth keeps every value a handler stores or echoes encodable (orjson stops at
        254 levels) and keeps recursive validators far from Python's recursion limit.
        """
        for name in route.free_fields:
            if too_deep(getattr(message, name), self._max_depth):
                self.send_error(
                    conn,
                    ErrorCode.VALIDATION_ERROR,
                    f"`{name}` is nested more than {self._max_depth} levels deep",
                    message.id,
                    {"path": f"$.{name}", "max_depth": self._max_depth},
                )
                return True
        return False

    def _failure_reply(self, exc: Exception, conn: Connection, message: Message) -> dict[str, Any]:
        """The envelope for a handler exception: its RequestError, a translated domain error, or
        internal_error."""
        if not isinstance(exc, RequestError):
            for translate in self._translators:
                mapped = translate(exc)
                if mapped is not None:
                    exc = mapped
                    break
        if isinstance(exc, RequestError):
            self._metrics.errors[exc.code.value] += 1
            return self._errors.from_request_error(exc, None)
        return self._internal_reply(exc, conn, message)

    def _allowed(self, conn: Connection, route: Route, request_id: str | int | None) -> bool:
        principal = conn.principal
        if principal is None:
            self.send_error(conn, ErrorCode.AUTHENTICATION_REQUIRED, "authenticate first", request_id)
            return False
        if route.permission is not None and route.permission not in principal.permissions:
            self.send_error(
                conn,
                ErrorCode.INSUFFICIENT_PERMISSIONS,
                f"permission '{route.permission}' is required",
                request_id,
                {"required": route.permission.value},
            )
            return False
        return True

    def _submit(self, conn: Connection, route: Route, message: Message) -> None:
        if conn.inflight >= self._max_inflight:
            conn.pending.append((route, message))
            return
        conn.inflight += 1
        task = asyncio.get_running_loop().create_task(self._run_async(conn, route, message))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _run_async(self, conn: Connection, route: Route, message: Message) -> None:
        started = time.perf_counter()
        try:
            reply = await route.handler(conn, message)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - boundary: mapped to an envelope, never raw text
            reply = self._failure_reply(exc, conn, message)
        finally:
            conn.inflight -= 1
            self._start_next(conn)
        self._metrics.observe_latency(message.__struct_config__.tag, time.perf_counter() - started)  # type: ignore[arg-type]
        self._send_reply(conn, reply, message.id)

    def _start_next(self, conn: Connection) -> None:
        if conn.pending and not conn.closed:
            route, message = conn.pending.popleft()
            self._submit(conn, route, message)

    # ------------------------------------------------------------------ outbound
    def _send_reply(self, conn: Connection, reply: Reply, request_id: str | int | None) -> None:
        if reply is None:
            return
        if request_id is not None:
            reply["id"] = request_id
        if "timestamp" not in reply:
            reply["timestamp"] = self._clock.iso_now()
        self._send_envelope(conn, reply)

    def send_error(
        self,
        conn: Connection,
        code: ErrorCode,
        message: str,
        request_id: str | int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Send one error envelope to ``conn`` (``request_id`` only for direct replies)."""
        self._metrics.errors[code.value] += 1
        self._send_envelope(conn, self._errors.envelope(code, message, request_id, details))

    def _send_envelope(self, conn: Connection, reply: dict[str, Any]) -> None:
        """Encode and send ``reply``; one that cannot be encoded becomes ``internal_error``."""
        try:
            payload = _dumps(reply)
        except TypeError as exc:  # orjson.JSONEncodeError (integers beyond 64 bits, deep nesting...)
            self._metrics.errors[ErrorCode.INTERNAL_ERROR.value] += 1
            request_id = _valid_id(reply.get("id"))
            envelope = self._errors.internal(exc, request_id, client_id=conn.client_id, stage="encode")
            payload = _dumps(envelope)
        conn.send(payload)

    def _internal_reply(self, exc: Exception, conn: Connection, message: Message) -> dict[str, Any]:
        self._metrics.errors[ErrorCode.INTERNAL_ERROR.value] += 1
        return self._errors.internal(
            exc, None, client_id=conn.client_id, message_type=message.__struct_config__.tag
        )

    # ------------------------------------------------------------------ failures before dispatch
    def _reject_rate(self, conn: Connection, data: bytes, now: float) -> None:
        if not conn.strikes.allow(now):
            conn.close(CloseCode.RATE_LIMIT_ABUSE, "rate limit abuse")
            return
        self.send_error(
            conn,
            ErrorCode.RATE_LIMIT_EXCEEDED,
            "too many messages",
            _peek_id(data),
            {"retry_after": round(conn.rate.retry_after(now), 3)},
        )

    def _reply_undecodable(self, conn: Connection, data: bytes, exc: Exception) -> None:
        if isinstance(exc, msgspec.DecodeError):
            self._reply_decode_error(conn, data, exc)
        else:
            self._reply_too_deep(conn, data)

    def _reply_too_deep(self, conn: Connection, data: bytes) -> None:
        """The decoder gave up on the nesting (hundreds of levels, anywhere in the message)."""
        self.send_error(
            conn,
            ErrorCode.VALIDATION_ERROR,
            "message is nested too deeply",
            _peek_id(data),
            {"path": "$", "max_depth": self._max_depth},
        )

    def _reply_decode_error(self, conn: Connection, data: bytes, exc: msgspec.DecodeError) -> None:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.send_error(conn, ErrorCode.INVALID_JSON, "message is not valid JSON")
            return
        if not isinstance(raw, dict):
            self.send_error(conn, ErrorCode.VALIDATION_ERROR, "message must be a JSON object")
            return
        request_id = _valid_id(raw.get("id"))
        message_type = raw.get("type")
        if isinstance(message_type, str) and message_type not in _KNOWN_TYPES:
            self.send_error(
                conn,
                ErrorCode.UNKNOWN_MESSAGE_TYPE,
                f"unknown message type '{message_type[:64]}'",
                request_id,
            )
            return
        reason, _, path = str(exc).partition(" - at ")
        details: dict[str, Any] = {"path": path.strip("`") or "$", "reason": reason[:200]}
        missing = _MISSING_FIELD.match(reason)
        if missing is not None and missing.group(1) != "type":  # the seed's code for an absent parameter
            details["missing"] = [missing.group(1)]
            self.send_error(conn, ErrorCode.MISSING_PARAMETERS, reason, request_id, details)
            return
        self.send_error(conn, ErrorCode.VALIDATION_ERROR, reason, request_id, details)


def _unserved(conn: Connection, message: Message) -> Reply:
    raise RequestError(ErrorCode.SERVICE_UNAVAILABLE, "message type not served")


def _valid_id(value: object) -> str | int | None:
    """The request id if it is a usable one (so even a rejected message gets its id echoed):
    the same rule as the schema's ``RequestId``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else None
    if isinstance(value, str) and len(value) <= _MAX_ID_LENGTH:
        return value
    return None


def _id_field(request_id: str | int | None) -> dict[str, Any]:
    return {} if request_id is None else {"id": request_id}


def _peek_id(data: bytes) -> str | int | None:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return _valid_id(raw.get("id")) if isinstance(raw, dict) else None
