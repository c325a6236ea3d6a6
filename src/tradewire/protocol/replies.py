"""Typed schemas of every server → client message: welcome, replies, errors, stream frames.

Like :mod:`tradewire.protocol.payloads`, these describe what the server writes (handlers build
plain dicts on the fast path); they feed the AsyncAPI document, and a test sends every message
type to a real server and converts each reply into the types :data:`REPLIES` declares for it
with ``forbid_unknown_fields``, so replies and document cannot drift apart.

Every reply carries the request's ``id`` (when it had one) and ``timestamp``. Clients must ignore
fields they do not know: later protocol versions may add some.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import MessageType, RequestId, Stream
from tradewire.protocol.payloads import (
    STREAM_PAYLOADS,
    IsoTime,
    MachineState,
    SessionError,
    SessionState,
    SignalType,
)

Level = Literal["basic", "trader", "premium", "admin"]


class ServerMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of server messages: ``id`` only on the direct reply to a request that had one."""

    id: RequestId | None = None
    timestamp: IsoTime


# --------------------------------------------------------------------------- connection
class RestoredSubscription(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A subscription given back on reconnect (or by the ``auth`` that un-parked it)."""

    stream: Stream
    status: Literal["subscribed", "awaiting_auth"]
    recovered: bool | None = None  # false: history no longer reaches back, refetch state
    offset: int | None = None
    epoch: str | None = None


class ReconnectRejected(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: str  # "invalid", "invalid_or_expired", "rate_limited", "unavailable"


class Welcome(ServerMessage, kw_only=True):
    """Sent once on connect (and on reconnect, with the restored state)."""

    type: Literal["status"]
    status: Literal["connected"]
    client_id: str
    reconnect_token: str | None  # keep the latest: present it to resume this session
    server_time: IsoTime
    protocol_version: str
    heartbeat_interval: float  # seconds between heartbeats the server expects
    features: list[str]
    reconnected: bool
    authenticated: bool | None = None  # reconnected: whether the session's JWT still holds
    user_id: str | None = None
    subscriptions: list[RestoredSubscription] | None = None
    reconnect_rejected: ReconnectRejected | None = None  # a token was presented and refused


class Pong(ServerMessage, kw_only=True):
    type: Literal["status"]
    status: Literal["pong"]
    server_time: IsoTime


class HandshakeAck(ServerMessage, kw_only=True):
    type: Literal["handshake_ack"]
    status: Literal["accepted", "rejected"]
    accepted: bool
    protocol_version: str
    server_version: str
    supported_versions: list[str]
    features: list[str]
    capabilities: list[str]
    heartbeat_interval: float
    reason: str | None = None


class Response(ServerMessage, kw_only=True):
    type: Literal["response"]


class Authenticated(Response, kw_only=True):
    status: Literal["authenticated"]
    user_id: str
    level: Level
    permissions: list[str]
    expires_at: IsoTime
    revoked_subscriptions: list[str] | None = None  # re-auth with fewer rights
    restored_subscriptions: list[RestoredSubscription] | None = None  # parked ones given back


class Subscribed(Response, kw_only=True):
    status: Literal["subscribed"]
    stream: Stream
    offset: int  # the stream's position now
    epoch: str
    recovered: bool | None  # null without `recover`
    filters: dict[str, Any]
    latest_sent: int


class Unsubscribed(Response, kw_only=True):
    status: Literal["unsubscribed"]
    stream: Stream
    was_subscribed: bool


class CommandResult(Response, kw_only=True):
    status: Literal["success"]
    command: str
    data: Any


class QueryResult(Response, kw_only=True):
    status: Literal["query_result"]
    query_type: str
    data: Any


# --------------------------------------------------------------------------- sessions
class SessionRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A session as ``session_status`` and ``GET /api/v1/sessions`` show it."""

    session_id: str
    owner: str
    session_type: Literal["backtest", "paper", "live"]
    status: SessionState
    strategy_config: dict[str, list[str]]  # strategy name → symbols
    config: dict[str, Any]  # the validated config, defaults filled in
    created_at: IsoTime
    started_at: IsoTime | None
    ended_at: IsoTime | None
    progress: float  # percent
    processed: int
    error: SessionError | None
    summary: dict[str, Any] | None  # headline metrics once finished
    has_results: bool
    equity: float | None = None  # while running
    open_positions: int | None = None
    trades: int | None = None
    data_time: IsoTime | None = None


class SessionStarted(Response, kw_only=True):
    status: Literal["session_started"]
    session_id: str
    existing: bool  # true: the same client_key started it before (idempotent start)
    session: SessionRecord


class SessionStopped(Response, kw_only=True):
    status: Literal["session_stopped"]
    session_id: str
    session: SessionRecord


class SessionStatusReply(Response, kw_only=True):
    """``session_data`` for one session, ``sessions`` (newest first) without ``session_id``."""

    status: Literal["session_status"]
    session_data: SessionRecord | None = None
    sessions: list[SessionRecord] | None = None


class Results(Response, kw_only=True):
    """``data``: for ``session_results`` an object with the requested sections (``session``,
    ``results_sha256``, ``end_reason``, ``metrics``, ``by_strategy``, ``by_symbol``, ``trades``,
    ``orders``, ``signals`` — lists as ``{total, offset, items}`` —, ``equity`` as
    ``{points, sample:[[time, value]]}``, ``open_positions``); for ``symbol_results`` /
    ``strategy_results`` a list of ``{session_id, session_type, status, created_at, symbol |
    strategy_name, metrics}``."""

    status: Literal["results"]
    request_type: Literal["session_results", "symbol_results", "strategy_results", "collection_list"]
    data: Any


# --------------------------------------------------------------------------- strategies
class StrategyInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    strategy_name: str
    version: int
    direction: Literal["LONG", "SHORT"]
    description: str
    symbols: list[str]
    active_symbols: list[str]
    updated_at: IsoTime
    owner: str  # who stored the first version ("tradewire" for the shipped examples)
    read_only: bool  # the caller may not change it (someone else's; admins may change all)
    updated_by: str | None = None  # only on the caller's own strategies (all of them for admins)
    document: dict[str, Any]  # the strategy document exactly as stored (its own key style)


class StrategiesList(Response, kw_only=True):
    status: Literal["strategies_list"]
    strategies: list[StrategyInfo]


class ValidationProblem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: str  # e.g. "z1_entry.positionSize.value" or "s1_signal.conditions[0].params.period"
    message: str
    code: str


class StrategyValidation(Response, kw_only=True):
    status: Literal["strategy_validation"]
    valid: bool
    errors: list[ValidationProblem]
    warnings: list[ValidationProblem]


class StrategyUpserted(Response, kw_only=True):
    status: Literal["strategy_upserted"]
    strategy_name: str
    version: int


class PairStatus(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One (strategy, symbol) state machine."""

    strategy_name: str
    strategy_version: int
    symbol: str
    state: MachineState
    signals: int
    transitions: int
    entry_price: float | None
    cooldown_until: IsoTime | None


class _PairReply(Response, kw_only=True):
    """A reply that is a :class:`PairStatus` with ``type``/``status`` added."""

    strategy_name: str
    strategy_version: int
    symbol: str
    state: MachineState
    signals: int
    transitions: int
    entry_price: float | None
    cooldown_until: IsoTime | None


class StrategyActivated(_PairReply, kw_only=True):
    status: Literal["strategy_activated"]


class StrategyDeactivated(_PairReply, kw_only=True):
    status: Literal["strategy_deactivated"]


class StrategyStatus(Response, kw_only=True):
    """One pair (``strategy_name`` and ``symbol`` given); an inactive pair has only ``state``."""

    status: Literal["strategy_status"]
    strategy_name: str
    symbol: str
    state: MachineState
    strategy_version: int | None = None
    signals: int | None = None
    transitions: int | None = None
    entry_price: float | None = None
    cooldown_until: IsoTime | None = None


class AllStrategiesStatus(Response, kw_only=True):
    status: Literal["all_strategies_status"]
    strategies: list[PairStatus]


# --------------------------------------------------------------------------- collection
class Collection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A recording of the live feed into one trade-tick dataset per symbol (docs/COLLECTION.md)."""

    collection_id: str
    owner: str
    symbols: list[str]
    duration: str  # "30s", "5m", "1h", "2d" or "continuous"
    status: Literal["running", "stopping", "completed", "stopped", "interrupted", "failed"]
    datasets: dict[str, int]  # symbol → dataset id (usable by a backtest at once)
    created_at: IsoTime
    started_at: IsoTime
    ends_at: IsoTime | None  # null when continuous
    ended_at: IsoTime | None
    count: int  # updates recorded: committed plus waiting
    written: int  # committed
    pending: int  # waiting for the next batched write
    dropped: int  # refused while the buffer was full (the database was slower than the feed)
    rate: float  # updates per second since the start
    per_symbol: dict[str, int]
    error: str | None


class CollectionStarted(Response, kw_only=True):
    status: Literal["collection_started"]
    collection_id: str
    collection: Collection


class CollectionStopped(Response, kw_only=True):
    """Sent once everything buffered is committed (idempotent)."""

    status: Literal["collection_stopped"]
    collection_id: str
    collection: Collection


class CollectionStatusReply(Response, kw_only=True):
    """``collection`` for one, ``collections`` (the caller's, newest first) without an id."""

    status: Literal["collection_status"]
    collection: Collection | None = None
    collections: list[Collection] | None = None


# --------------------------------------------------------------------------- errors and streams
class ErrorEnvelope(ServerMessage, kw_only=True):
    """Every failure. Unsolicited ones (``token_expired`` on a live connection) carry no ``id``."""

    type: Literal["error"]
    error_code: ErrorCode
    error_message: Annotated[str, msgspec.Meta(max_length=300)]
    details: dict[str, Any] | None = None


class DataFrame(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="stream"):
    """A stream message: ``offset`` grows by one per message of the stream, ``epoch`` names the
    history the offsets belong to. Never carries an ``id``."""

    type: Literal["data"]
    offset: int
    epoch: str
    timestamp: IsoTime


def _frame(stream: Stream) -> type[DataFrame]:
    """The frame type of ``stream``: :class:`DataFrame` with ``data`` typed by its payload."""
    name = "".join(part.title() for part in stream.value.split("_")) + "Frame"
    payload: Any = STREAM_PAYLOADS[stream.value]
    frame: Any = msgspec.defstruct(
        name,
        [("data", payload)],
        bases=(DataFrame,),
        kw_only=True,
        tag=stream.value,
        module=__name__,
    )
    return frame  # type: ignore[no-any-return]


FRAMES: Final[dict[Stream, type[DataFrame]]] = {stream: _frame(stream) for stream in Stream}
StreamFrame: Any = FRAMES[Stream.MARKET_DATA]
for _frame_type in list(FRAMES.values())[1:]:
    StreamFrame = StreamFrame | _frame_type
"""Union of every stream's frame, tagged by ``stream``."""

REPLIES: Final[dict[MessageType, tuple[type[ServerMessage], ...]]] = {
    MessageType.AUTH: (Authenticated,),
    MessageType.HANDSHAKE: (HandshakeAck,),
    MessageType.HEARTBEAT: (Pong,),
    MessageType.SUBSCRIBE: (Subscribed,),
    MessageType.UNSUBSCRIBE: (Unsubscribed,),
    MessageType.COMMAND: (CommandResult,),
    MessageType.QUERY: (QueryResult,),
    MessageType.SESSION_START: (SessionStarted,),
    MessageType.SESSION_STOP: (SessionStopped,),
    MessageType.SESSION_STATUS: (SessionStatusReply,),
    MessageType.COLLECTION_START: (CollectionStarted,),
    MessageType.COLLECTION_STOP: (CollectionStopped,),
    MessageType.COLLECTION_STATUS: (CollectionStatusReply,),
    MessageType.RESULTS_REQUEST: (Results,),
    MessageType.GET_STRATEGIES: (StrategiesList,),
    MessageType.ACTIVATE_STRATEGY: (StrategyActivated,),
    MessageType.DEACTIVATE_STRATEGY: (StrategyDeactivated,),
    MessageType.GET_STRATEGY_STATUS: (StrategyStatus, AllStrategiesStatus),
    MessageType.VALIDATE_STRATEGY_CONFIG: (StrategyValidation,),
    MessageType.UPSERT_STRATEGY: (StrategyUpserted,),
}
"""The success reply types of each client message; any of them may instead get an
:class:`ErrorEnvelope`."""

SIGNAL_TYPES: Final[tuple[SignalType, ...]] = ("S1", "Z1", "ZE1", "O1", "E1")
