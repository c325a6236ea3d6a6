"""Strategy messages (DESIGN §3.2): list, validate, upsert, activate, deactivate, status.

No storage or file I/O here (the seed's problem #3): every message is one call into the
strategy service. Writes need ``manage_strategies`` (trader and above), enforced by the router;
the service checks ownership (a trader changes only their own strategies, the shipped examples
only admins) and symbols.
"""

from __future__ import annotations

from typing import Any, Final

from tradewire.auth.permissions import Permission
from tradewire.controller import StrategyService
from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.handlers.session import caller_of
from tradewire.protocol.messages import (
    ActivateStrategy,
    DeactivateStrategy,
    GetStrategies,
    GetStrategyStatus,
    MessageType,
    UpsertStrategy,
    ValidateStrategyConfig,
)
from tradewire.protocol.wire import to_wire

STRATEGY_TYPES: Final = (
    MessageType.GET_STRATEGIES,
    MessageType.ACTIVATE_STRATEGY,
    MessageType.DEACTIVATE_STRATEGY,
    MessageType.GET_STRATEGY_STATUS,
    MessageType.VALIDATE_STRATEGY_CONFIG,
    MessageType.UPSERT_STRATEGY,
)


class StrategyHandler:
    def __init__(self, service: StrategyService) -> None:
        self._service = service

    def routes(self) -> list[RouteSpec]:
        write = Permission.MANAGE_STRATEGIES
        return [
            RouteSpec(MessageType.GET_STRATEGIES, self.handle_get_strategies),
            RouteSpec(MessageType.GET_STRATEGY_STATUS, self.handle_get_strategy_status),
            RouteSpec(MessageType.VALIDATE_STRATEGY_CONFIG, self.handle_validate_strategy_config),
            RouteSpec(MessageType.UPSERT_STRATEGY, self.handle_upsert_strategy, permission=write),
            RouteSpec(MessageType.ACTIVATE_STRATEGY, self.handle_activate_strategy, permission=write),
            RouteSpec(MessageType.DEACTIVATE_STRATEGY, self.handle_deactivate_strategy, permission=write),
        ]

    def handle_get_strategies(self, conn: Connection, message: GetStrategies) -> dict[str, Any]:
        strategies = to_wire(self._service.strategies(caller_of(conn)))
        return {"type": "response", "status": "strategies_list", "strategies": strategies}

    def handle_validate_strategy_config(
        self, conn: Connection, message: ValidateStrategyConfig
    ) -> dict[str, Any]:
        return {
            "type": "response",
            "status": "strategy_validation",
            **self._service.validate(message.strategy_config),
        }

    async def handle_upsert_strategy(self, conn: Connection, message: UpsertStrategy) -> dict[str, Any]:
        name, version = await self._service.upsert(caller_of(conn), message.strategy_config)
        return {"type": "response", "status": "strategy_upserted", "strategy_name": name, "version": version}

    async def handle_activate_strategy(self, conn: Connection, message: ActivateStrategy) -> dict[str, Any]:
        status = to_wire(await self._service.activate(caller_of(conn), message.strategy_name, message.symbol))
        return {"type": "response", "status": "strategy_activated", **status}

    async def handle_deactivate_strategy(
        self, conn: Connection, message: DeactivateStrategy
    ) -> dict[str, Any]:
        status = to_wire(
            await self._service.deactivate(caller_of(conn), message.strategy_name, message.symbol)
        )
        return {"type": "response", "status": "strategy_deactivated", **status}

    def handle_get_strategy_status(self, conn: Connection, message: GetStrategyStatus) -> dict[str, Any]:
        pairs = to_wire(self._service.status(message.strategy_name, message.symbol))
        if message.strategy_name is not None and message.symbol is not None:
            if not pairs:
                return {
                    "type": "response",
                    "status": "strategy_status",
                    "strategy_name": message.strategy_name,
                    "symbol": message.symbol,
                    "state": "inactive",
                }
            return {"type": "response", "status": "strategy_status", **pairs[0]}
        return {"type": "response", "status": "all_strategies_status", "strategies": pairs}
