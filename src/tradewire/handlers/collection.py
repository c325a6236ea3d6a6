"""Collection messages (the seed's CollectionMessageHandler): start, stop and status of recordings.

Starting and stopping need ``manage_collection`` (trader and above); status needs only to be
authenticated. The service shows and stops the caller's own collections only (all of them for
admins): the original let anyone stop anyone's (DESIGN §9). Domain errors (unknown symbol, limit,
not found) are mapped by the router.
"""

from __future__ import annotations

from typing import Any, Final

from tradewire.auth.permissions import Permission
from tradewire.controller import CollectionService
from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.handlers.session import caller_of
from tradewire.protocol.messages import CollectionStart, CollectionStatus, CollectionStop, MessageType
from tradewire.protocol.wire import to_wire

COLLECTION_TYPES: Final = (
    MessageType.COLLECTION_START,
    MessageType.COLLECTION_STOP,
    MessageType.COLLECTION_STATUS,
)
LIST_LIMIT = 100


class CollectionMessageHandler:
    def __init__(self, collections: CollectionService) -> None:
        self._collections = collections

    def routes(self) -> list[RouteSpec]:
        write = Permission.MANAGE_COLLECTION
        return [
            RouteSpec(MessageType.COLLECTION_START, self.handle_collection_start, permission=write),
            RouteSpec(MessageType.COLLECTION_STOP, self.handle_collection_stop, permission=write),
            RouteSpec(MessageType.COLLECTION_STATUS, self.handle_collection_status),
        ]

    async def handle_collection_start(self, conn: Connection, message: CollectionStart) -> dict[str, Any]:
        record = to_wire(
            await self._collections.start_collection(caller_of(conn), message.symbols, message.duration)
        )
        return {
            "type": "response",
            "status": "collection_started",
            "collection_id": record["collection_id"],
            "collection": record,
        }

    async def handle_collection_stop(self, conn: Connection, message: CollectionStop) -> dict[str, Any]:
        record = to_wire(await self._collections.stop_collection(caller_of(conn), message.collection_id))
        return {
            "type": "response",
            "status": "collection_stopped",
            "collection_id": message.collection_id,
            "collection": record,
        }

    async def handle_collection_status(self, conn: Connection, message: CollectionStatus) -> dict[str, Any]:
        caller = caller_of(conn)
        if message.collection_id is not None:
            record = to_wire(await self._collections.collection(caller, message.collection_id))
            return {"type": "response", "status": "collection_status", "collection": record}
        records = to_wire(await self._collections.collections(caller, LIST_LIMIT))
        return {"type": "response", "status": "collection_status", "collections": records}
