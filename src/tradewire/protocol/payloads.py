"""Typed schemas of every stream payload the reference engine publishes (``data`` of a frame).

These Structs are documentation that is checked, not a decoding step on the hot path: the
publish path stays untyped (encode once, fan out). :mod:`tradewire.protocol.asyncapi` turns them
into the AsyncAPI document, and a test runs a backtest with ``stream_events:true`` beside the
synthetic feed and converts every frame it receives into these types with
``forbid_unknown_fields``, so a field the engine adds or renames fails the build until it is
documented here.

Each payload carries ``event``, the event-bus topic it came from (the tag that tells e.g. a price
update from an order-book update on ``market_data``). Events of a session also carry its
``session_id`` and ``owner``; only the owner (and admins) receive them.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

ISO_PATTERN: Final = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
IsoTime = Annotated[
    str, msgspec.Meta(pattern=ISO_PATTERN, description="ISO 8601 UTC with milliseconds", examples=[
        "2026-11-26T10:04:27.298Z"
    ])
]  # fmt: skip
Direction = Literal["LONG", "SHORT"]
SignalType = Literal["S1", "Z1", "ZE1", "O1", "E1"]
MachineState = Literal[
    "inactive",
    "monitoring",
    "signal_detected",
    "entry_evaluation",
    "position_active",
    "close_order_evaluation",
    "exited",
    "signal_cancelled",
    "emergency_exit",
]
SessionState = Literal["starting", "running", "stopping", "stopped", "completed", "failed", "interrupted"]
Scalar = str | int | float | bool | None


class Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="event"):
    """Base of stream payloads: ``event`` (the tag) names the topic."""


class _SessionScoped(Payload, kw_only=True):
    session_id: str | None = None  # set on events of a backtest/paper session
    owner: str | None = None  # the session's user: only they (and admins) receive it


# --------------------------------------------------------------------------- market_data
class PriceUpdate(Payload, kw_only=True, tag="market.price_update"):
    """A trade or last price of one symbol."""

    symbol: str
    price: float
    volume: float
    side: Literal["buy", "sell"]
    timestamp: IsoTime
    source: str  # the feed: "synthetic", "replay", ...


class OrderBookUpdate(Payload, kw_only=True, tag="market.orderbook_update"):
    """Top of book of one symbol."""

    symbol: str
    bid: float
    ask: float
    spread_pct: float
    timestamp: IsoTime
    source: str


# --------------------------------------------------------------------------- indicators
class IndicatorUpdate(Payload, kw_only=True, tag="indicator.updated"):
    """One indicator instance's value for a symbol (at most once a second per symbol)."""

    symbol: str
    indicator_type: str  # a name of `query indicators`
    params: dict[str, Scalar]  # the instance's parameters, e.g. {"period": 14}
    value: float
    timestamp: IsoTime


# --------------------------------------------------------------------------- signals
class ConditionValue(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One condition of the rule set that fired, with the values it saw."""

    id: str
    indicator: str
    params: dict[str, Scalar]
    value: float | None  # the indicator's value
    threshold: float | None  # what it was compared with


class PositionSize(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["fixed", "percentage"]
    value: float


class Signal(_SessionScoped, kw_only=True, tag="signal_generated"):
    """A signal of a (strategy, symbol) state machine: S1 detection, Z1 entry, ZE1 close,
    O1 cancel, E1 emergency exit."""

    strategy_name: str
    strategy_version: int
    symbol: str
    signal_type: SignalType
    direction: Direction
    price: float
    indicators: dict[str, float | None]  # by indicator name
    conditions: list[ConditionValue]
    state: MachineState  # the machine's state after the signal
    timestamp: IsoTime
    reason: str | None = None  # O1, ZE1, E1: timeout, stop_loss, take_profit, conditions, ...
    entry_price: float | None = None  # Z1 (indicative), ZE1/E1 context
    position_size: PositionSize | None = None  # Z1
    leverage: float | None = None  # Z1
    stop_loss_price: float | None = None  # Z1, when the strategy sets a stop
    take_profit_price: float | None = None  # Z1, when the strategy sets a target
    pnl_pct: float | None = None  # ZE1, E1 with an open position
    exit_price: float | None = None  # ZE1 after a fill
    cooldown_seconds: float | None = None  # E1
    actions: list[str] | None = None  # E1
    interrupted_state: MachineState | None = None  # E1


# --------------------------------------------------------------------------- state_machines
class StateChange(_SessionScoped, kw_only=True, tag="strategy.state_changed"):
    """A transition of one (strategy, symbol) state machine."""

    strategy_name: str
    strategy_version: int
    symbol: str
    from_state: MachineState
    to_state: MachineState
    state: MachineState  # = to_state
    reason: str
    timestamp: IsoTime


# --------------------------------------------------------------------------- execution_status
class SessionError(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: str  # "session_failed"
    message: str  # safe to show
    correlation_id: str | None = None  # names the server log entry


class ExecutionEvent(Payload, kw_only=True):
    """A session's life: started, progress, stopping, completed, stopped, failed, interrupted."""

    session_id: str
    owner: str
    session_type: Literal["backtest", "paper", "live"]
    status: SessionState
    progress_pct: float  # backtests: share of the data replayed; 0 for open-ended sessions
    processed: int  # bars or ticks processed
    error: SessionError | None = None  # failed sessions


class ExecutionStarted(ExecutionEvent, kw_only=True, tag="execution.started"):
    pass


class ExecutionProgress(ExecutionEvent, kw_only=True, tag="execution.progress"):
    equity: float
    open_positions: int
    trades: int
    data_time: IsoTime | None  # market time of the last bar or tick processed


class ExecutionStopping(ExecutionEvent, kw_only=True, tag="execution.stopping"):
    pass


class ExecutionCompleted(ExecutionEvent, kw_only=True, tag="execution.completed"):
    pass


class ExecutionStopped(ExecutionEvent, kw_only=True, tag="execution.stopped"):
    pass


class ExecutionFailed(ExecutionEvent, kw_only=True, tag="execution.failed"):
    pass


class ExecutionInterrupted(ExecutionEvent, kw_only=True, tag="execution.interrupted"):
    pass


# --------------------------------------------------------------------------- execution_result
class SessionResult(ExecutionEvent, kw_only=True, tag="session.result"):
    """A finished session: headline metrics (``summary``) or its ``error``. The full results
    are fetched with ``results_request`` ``session_results`` or ``GET /api/v1/sessions/{id}``."""

    summary: dict[str, Any] | None = None  # metric name → value, plus by_strategy / by_symbol


# --------------------------------------------------------------------------- orders
class OrderEvent(_SessionScoped, kw_only=True):
    """An order of a session's simulated broker."""

    order_id: int
    strategy_name: str
    symbol: str
    kind: Literal["entry", "exit"]
    side: Literal["buy", "sell"]
    status: Literal["pending", "filled", "cancelled", "rejected"]
    reason: str
    submitted_at: IsoTime
    filled_at: IsoTime | None
    fill_price: float | None
    units: float
    fee: float
    note: str
    timestamp: IsoTime


class OrderSubmitted(OrderEvent, kw_only=True, tag="order.submitted"):
    pass


class OrderFilled(OrderEvent, kw_only=True, tag="order.filled"):
    pass


class OrderCancelled(OrderEvent, kw_only=True, tag="order.cancelled"):
    pass


class OrderRejected(OrderEvent, kw_only=True, tag="order.rejected"):
    pass


# --------------------------------------------------------------------------- positions
class PositionOpened(_SessionScoped, kw_only=True, tag="position.opened"):
    strategy_name: str
    symbol: str
    direction: Direction
    units: float
    entry_price: float
    entry_time: IsoTime
    stop_loss: float | None
    take_profit: float | None
    leverage: float
    timestamp: IsoTime


class PositionClosed(_SessionScoped, kw_only=True, tag="position.closed"):
    """A closed position, i.e. a trade."""

    strategy_name: str
    symbol: str
    direction: Direction
    units: float
    entry_time: IsoTime
    entry_price: float
    exit_time: IsoTime
    exit_price: float
    fees: float
    pnl: float
    return_pct: float
    exit_reason: str
    stop_loss: float | None
    take_profit: float | None
    bars: int
    timestamp: IsoTime


# --------------------------------------------------------------------------- health_check
class StrategyEmergency(_SessionScoped, kw_only=True, tag="health.strategy_emergency"):
    """An emergency exit with the ``notify`` action (an operator alert)."""

    strategy_name: str
    strategy_version: int
    symbol: str
    price: float
    timestamp: IsoTime


MarketDataPayload = PriceUpdate | OrderBookUpdate
ExecutionStatusPayload = (
    ExecutionStarted
    | ExecutionProgress
    | ExecutionStopping
    | ExecutionCompleted
    | ExecutionStopped
    | ExecutionFailed
    | ExecutionInterrupted
)
OrdersPayload = OrderSubmitted | OrderFilled | OrderCancelled | OrderRejected
PositionsPayload = PositionOpened | PositionClosed

STREAM_PAYLOADS: Final[dict[str, Any]] = {
    "market_data": MarketDataPayload,
    "indicators": IndicatorUpdate,
    "signals": Signal,
    "execution_status": ExecutionStatusPayload,
    "execution_result": SessionResult,
    "state_machines": StateChange,
    "orders": OrdersPayload,
    "positions": PositionsPayload,
    "health_check": StrategyEmergency,
}
"""The payload type (a Struct or a tagged union of Structs) of each stream, by stream name."""
