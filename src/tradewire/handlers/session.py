"""Session messages (the seed's SessionMessageHandler): start, stop and status of jobs.

Permissions: starting needs the permission of the session's type (``execute_backtest``,
``execute_paper_trading``, ``execute_live_trading``); everything else needs only to be
authenticated, because the controller shows and stops the caller's own sessions only (all of
them for admins). Domain errors (conflict, limits, unknown strategy...) are mapped by the router.
"""

from __future__ import annotations

from typing import Any, Final

from tradewire.auth.permissions import Permission
from tradewire.controller import Caller, SessionService
from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.errors import PermissionDenied
from tradewire.protocol.messages import MessageType, SessionStart, SessionStatus, SessionStop, SessionType
from tradewire.protocol.wire import to_wire

SESSION_TYPES: Final = (MessageType.SESSION_START, MessageType.SESSION_STOP, MessageType.SESSION_STATUS)
START_PERMISSION: Final = {
    SessionType.BACKTEST: Permission.EXECUTE_BACKTEST,
    SessionType.PAPER: Permission.EXECUTE_PAPER_TRADING,
    SessionType.LIVE: Permission.EXECUTE_LIVE_TRADING,
}
LIST_LIMIT = 100


def caller_of(conn: Connection) -> Caller:
    """The authenticated user of ``conn`` (the router guarantees one on these routes)."""
    principal = conn.principal
    assert principal is not None
    return Caller(principal.user_id, Permission.ADMIN in principal.permissions)


class SessionHandler:
    def __init__(self, sessions: SessionService) -> None:
        self._sessions = sessions

    def routes(self) -> list[RouteSpec]:
        return [
            RouteSpec(MessageType.SESSION_START, self.handle_session_start),
            RouteSpec(MessageType.SESSION_STOP, self.handle_session_stop),
            RouteSpec(
                MessageType.SESSION_STATUS, self.handle_session_status, permission=Permission.READ_SESSIONS
            ),
        ]

    async def handle_session_start(self, conn: Connection, message: SessionStart) -> dict[str, Any]:
        required = START_PERMISSION[message.session_type]
        principal = conn.principal
        if principal is None or required not in principal.permissions:
            raise PermissionDenied(required.value)
        record = await self._sessions.start_session(
            caller_of(conn),
            message.session_type.value,
            message.strategy_config,
            message.config,
            message.client_key,
        )
        existing = bool(record.pop("existing", False))
        record = to_wire(record)
        return {
            "type": "response",
            "status": "session_started",
            "session_id": record["session_id"],
            "existing": existing,
            "session": record,
        }

    async def handle_session_stop(self, conn: Connection, message: SessionStop) -> dict[str, Any]:
        record = to_wire(await self._sessions.stop_session(caller_of(conn), message.session_id))
        return {
            "type": "response",
            "status": "session_stopped",
            "session_id": message.session_id,
            "session": record,
        }

    async def handle_session_status(self, conn: Connection, message: SessionStatus) -> dict[str, Any]:
        caller = caller_of(conn)
        if message.session_id is not None:
            record = to_wire(await self._sessions.session(caller, message.session_id))
            return {"type": "response", "status": "session_status", "session_data": record}
        sessions = to_wire(await self._sessions.sessions(caller, LIST_LIMIT))
        return {"type": "response", "status": "session_status", "sessions": sessions}
