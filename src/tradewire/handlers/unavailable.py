"""Message types whose component is not part of this server.

They go through the real router (validation, authentication, permissions, rate limits) and are
answered with ``service_unavailable`` naming the missing component, so clients can tell "not
here" from "bad request".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.errors import RequestError
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import Message, MessageType


class UnavailableHandler:
    """Answers every message with ``service_unavailable`` for one named component."""

    def __init__(self, component: str) -> None:
        self.component = component

    def routes(self, message_types: Iterable[MessageType]) -> list[RouteSpec]:
        return [RouteSpec(message_type, self.handle) for message_type in message_types]

    def handle(self, conn: Connection, message: Message) -> dict[str, Any]:
        raise RequestError(
            ErrorCode.SERVICE_UNAVAILABLE,
            f"{self.component} is not available on this server",
            {"component": self.component},
        )
