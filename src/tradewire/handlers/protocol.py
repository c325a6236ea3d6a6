"""Protocol messages: ``handshake``, ``heartbeat``, and the ``command`` / ``query`` dispatchers.

Commands and queries are small registries keyed by ``action`` / ``query_type`` so that other
components add their own (e.g. the engine's) without editing this class.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tradewire._version import PROTOCOL_VERSION, __version__
from tradewire.auth.permissions import Permission
from tradewire.clock import Clock
from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.errors import PermissionDenied, RequestError
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import Command, Handshake, Heartbeat, MessageType, Query
from tradewire.protocol.wire import to_wire

Action = Callable[[Connection, dict[str, Any]], Any | Awaitable[Any]]
SUPPORTED_MAJOR = PROTOCOL_VERSION.split(".")[0]


@dataclass(frozen=True, slots=True)
class _Entry:
    action: Action
    permission: Permission | None


class ProtocolHandler:
    """Handshake, heartbeat, and the registries behind ``command`` and ``query``."""

    def __init__(self, clock: Clock, features: Callable[[], list[str]], heartbeat_interval: float) -> None:
        self._clock = clock
        self._iso_now = clock.iso_now
        self._features = features
        self._heartbeat_interval = heartbeat_interval
        self._commands: dict[str, _Entry] = {}
        self._queries: dict[str, _Entry] = {}

    def routes(self) -> list[RouteSpec]:
        return [
            RouteSpec(MessageType.HANDSHAKE, self.handle_handshake, requires_auth=False),
            RouteSpec(MessageType.HEARTBEAT, self.handle_heartbeat, requires_auth=False),
            RouteSpec(MessageType.COMMAND, self.handle_command),
            RouteSpec(MessageType.QUERY, self.handle_query),
        ]

    def register_command(self, name: str, action: Action, permission: Permission | None = None) -> None:
        self._commands[name] = _Entry(action, permission)

    def register_query(self, name: str, action: Action, permission: Permission | None = None) -> None:
        self._queries[name] = _Entry(action, permission)

    def commands(self) -> list[str]:
        return sorted(self._commands)

    def queries(self) -> list[str]:
        return sorted(self._queries)

    def handle_heartbeat(self, conn: Connection, message: Heartbeat) -> dict[str, Any]:
        now = self._iso_now()
        return {"type": "status", "status": "pong", "server_time": now, "timestamp": now}

    def handle_handshake(self, conn: Connection, message: Handshake) -> dict[str, Any]:
        features = self._features()
        accepted = message.version.split(".")[0] == SUPPORTED_MAJOR
        reply: dict[str, Any] = {
            "type": "handshake_ack",
            "status": "accepted" if accepted else "rejected",
            "accepted": accepted,
            "protocol_version": PROTOCOL_VERSION,
            "server_version": __version__,
            "supported_versions": [PROTOCOL_VERSION],
            "features": features,
            "capabilities": [c for c in message.capabilities if c in features],
            "heartbeat_interval": self._heartbeat_interval,
        }
        if not accepted:
            reply["reason"] = f"protocol version {message.version!r} is not supported"
        return reply

    async def handle_command(self, conn: Connection, message: Command) -> dict[str, Any]:
        data = await self._run(self._commands, "command", message.action, conn, message.params)
        return {"type": "response", "status": "success", "command": message.action, "data": data}

    async def handle_query(self, conn: Connection, message: Query) -> dict[str, Any]:
        data = await self._run(self._queries, "query", message.query_type, conn, message.params)
        return {"type": "response", "status": "query_result", "query_type": message.query_type, "data": data}

    @staticmethod
    async def _run(
        table: dict[str, _Entry], kind: str, name: str, conn: Connection, params: dict[str, Any]
    ) -> Any:
        entry = table.get(name)
        if entry is None:
            raise RequestError(
                ErrorCode.UNKNOWN_COMMAND, f"unknown {kind} '{name}'", {"available": sorted(table)}
            )
        if entry.permission is not None and (
            conn.principal is None or entry.permission not in conn.principal.permissions
        ):
            raise PermissionDenied(entry.permission.value)
        result = entry.action(conn, params)
        if inspect.isawaitable(result):
            result = await result
        return to_wire(result)
