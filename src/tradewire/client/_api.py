"""One typed method per protocol message, shared by the async and the sync client.

Each method builds the message through the server's own schema (:mod:`tradewire.protocol.
messages`), so a wrong type, an unknown stream or a value over a limit fails here with
``msgspec.ValidationError`` before anything is sent. Replies are returned as dicts (their
schemas: :mod:`tradewire.protocol.replies`, docs/asyncapi.yaml).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import msgspec

from tradewire.protocol.messages import MESSAGE_CLASSES, MessageType

Reply = dict[str, Any]


def build(message_type: MessageType | str, **fields: Any) -> dict[str, Any]:
    """A validated client message as a JSON-ready dict (fields left as None are omitted)."""
    kind = MessageType(message_type)
    given = {key: value for key, value in fields.items() if value is not None}
    typed = msgspec.convert({"type": kind.value, **given}, MESSAGE_CLASSES[kind])
    out: dict[str, Any] = msgspec.to_builtins(typed)
    return {key: value for key, value in out.items() if value is not None}


class ProtocolMethods(ABC):
    """The protocol's messages as methods; subclasses provide :meth:`request`."""

    @abstractmethod
    async def request(self, message: dict[str, Any], *, timeout: float | None = None) -> Reply:
        """Send ``message`` and return its reply; an error reply raises ``ServerError``."""

    async def heartbeat(self) -> Reply:
        return await self.request(build(MessageType.HEARTBEAT))

    async def handshake(self, version: str = "1.0", capabilities: list[str] | None = None) -> Reply:
        return await self.request(build(MessageType.HANDSHAKE, version=version, capabilities=capabilities))

    async def command(self, action: str, **params: Any) -> Any:
        """``data`` of a command's reply (``get_status``, ``health_check``, ``get_stats``)."""
        return (await self.request(build(MessageType.COMMAND, action=action, params=params)))["data"]

    async def query(self, query_type: str, **params: Any) -> Any:
        """``data`` of a query's reply (``server_info``, ``indicators``, ``datasets``)."""
        return (await self.request(build(MessageType.QUERY, query_type=query_type, params=params)))["data"]

    async def get_strategies(self) -> list[dict[str, Any]]:
        reply = await self.request(build(MessageType.GET_STRATEGIES))
        return list(reply["strategies"])

    async def validate_strategy_config(self, document: dict[str, Any]) -> Reply:
        """``{valid, errors:[{path, message, code}], warnings}`` for a strategy document."""
        return await self.request(build(MessageType.VALIDATE_STRATEGY_CONFIG, strategy_config=document))

    async def upsert_strategy(self, document: dict[str, Any]) -> Reply:
        return await self.request(build(MessageType.UPSERT_STRATEGY, strategy_config=document))

    async def activate_strategy(self, strategy_name: str, symbol: str) -> Reply:
        message = build(MessageType.ACTIVATE_STRATEGY, strategy_name=strategy_name, symbol=symbol)
        return await self.request(message)

    async def deactivate_strategy(self, strategy_name: str, symbol: str) -> Reply:
        message = build(MessageType.DEACTIVATE_STRATEGY, strategy_name=strategy_name, symbol=symbol)
        return await self.request(message)

    async def get_strategy_status(self, strategy_name: str | None = None, symbol: str | None = None) -> Reply:
        message = build(MessageType.GET_STRATEGY_STATUS, strategy_name=strategy_name, symbol=symbol)
        return await self.request(message)

    async def session_start(
        self,
        session_type: str,
        strategy_config: dict[str, list[str]],
        config: dict[str, Any] | None = None,
        client_key: str | None = None,
    ) -> Reply:
        """Start a session; ``strategy_config`` maps strategy names to symbols."""
        message = build(
            MessageType.SESSION_START,
            session_type=session_type,
            strategy_config=strategy_config,
            config=config,
            client_key=client_key,
        )
        return await self.request(message)

    async def session_stop(self, session_id: str) -> Reply:
        return await self.request(build(MessageType.SESSION_STOP, session_id=session_id))

    async def session_status(self, session_id: str | None = None) -> Reply:
        return await self.request(build(MessageType.SESSION_STATUS, session_id=session_id))

    async def results_request(self, request_type: str, **params: Any) -> Any:
        """``data`` of a results reply (``session_results``, ``symbol_results``, ...)."""
        message = build(MessageType.RESULTS_REQUEST, request_type=request_type, params=params)
        return (await self.request(message))["data"]

    async def collection_start(self, symbols: list[str], duration: str = "continuous") -> Reply:
        return await self.request(build(MessageType.COLLECTION_START, symbols=symbols, duration=duration))

    async def collection_stop(self, collection_id: str) -> Reply:
        return await self.request(build(MessageType.COLLECTION_STOP, collection_id=collection_id))

    async def collection_status(self, collection_id: str | None = None) -> Reply:
        return await self.request(build(MessageType.COLLECTION_STATUS, collection_id=collection_id))
