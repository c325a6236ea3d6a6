"""Typed schemas of every client → server message (DESIGN §3.2).

Decoding is one ``msgspec`` call over a tagged union keyed by ``type``: enums, lengths and item
counts are enforced during decoding, so handlers receive valid objects only. Unknown fields are
ignored (forward compatibility); unknown ``type`` values are reported by the router.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

import msgspec
import msgspec.inspect

Text64 = Annotated[str, msgspec.Meta(max_length=64)]
Text256 = Annotated[str, msgspec.Meta(max_length=256)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Params = Annotated[dict[str, Any], msgspec.Meta(max_length=64)]
# Integer ids are bounded to the range every JSON client can represent exactly (RFC 7493 §2.2,
# JavaScript's safe integers), which is also inside what the reply encoder can write (64 bits).
MAX_SAFE_INTEGER: Final = 2**53 - 1
IntId = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
RequestId = Text64 | IntId
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


class MessageType(StrEnum):
    """The ``type`` values a client may send (the seed's ``MessageType``)."""

    AUTH = "auth"
    HANDSHAKE = "handshake"
    HEARTBEAT = "heartbeat"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    COMMAND = "command"
    QUERY = "query"
    SESSION_START = "session_start"
    SESSION_STOP = "session_stop"
    SESSION_STATUS = "session_status"
    COLLECTION_START = "collection_start"
    COLLECTION_STOP = "collection_stop"
    COLLECTION_STATUS = "collection_status"
    RESULTS_REQUEST = "results_request"
    GET_STRATEGIES = "get_strategies"
    ACTIVATE_STRATEGY = "activate_strategy"
    DEACTIVATE_STRATEGY = "deactivate_strategy"
    GET_STRATEGY_STATUS = "get_strategy_status"
    VALIDATE_STRATEGY_CONFIG = "validate_strategy_config"
    UPSERT_STRATEGY = "upsert_strategy"


class Stream(StrEnum):
    """The streams a client may subscribe to (docs/PROTOCOL.md, Streams)."""

    MARKET_DATA = "market_data"
    INDICATORS = "indicators"
    SIGNALS = "signals"
    EXECUTION_STATUS = "execution_status"
    EXECUTION_RESULT = "execution_result"
    STATE_MACHINES = "state_machines"
    ORDERS = "orders"
    POSITIONS = "positions"
    HEALTH_CHECK = "health_check"


class SessionType(StrEnum):
    BACKTEST = "backtest"
    PAPER = "paper"
    LIVE = "live"


class ResultsRequestType(StrEnum):
    SESSION_RESULTS = "session_results"
    SYMBOL_RESULTS = "symbol_results"
    STRATEGY_RESULTS = "strategy_results"
    COLLECTION_LIST = "collection_list"


class Message(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """Base of all client messages: ``id`` is echoed on the direct reply only."""

    id: RequestId | None = None


class Auth(Message, tag="auth"):
    token: Token


class Handshake(Message, tag="handshake"):
    version: Text64 = "1.0"
    capabilities: Annotated[list[Text64], msgspec.Meta(max_length=32)] = []


class Heartbeat(Message, tag="heartbeat"):
    pass


class Recover(msgspec.Struct):
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER)]
    epoch: Text64


class Subscribe(Message, tag="subscribe"):
    stream: Stream
    params: Params = {}
    recover: Recover | None = None


class Unsubscribe(Message, tag="unsubscribe"):
    stream: Stream


class Command(Message, tag="command"):
    action: Text64
    params: Params = {}


class Query(Message, tag="query"):
    query_type: Text64
    params: Params = {}


class SessionStart(Message, tag="session_start"):
    session_type: SessionType
    strategy_config: Annotated[
        dict[Text64, Annotated[list[Symbol], msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=50)
    ]
    config: Params = {}
    client_key: Text64 | None = None


class SessionStop(Message, tag="session_stop"):
    session_id: Text64


class SessionStatus(Message, tag="session_status"):
    session_id: Text64 | None = None


class CollectionStart(Message, tag="collection_start"):
    symbols: Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=100)]
    duration: Annotated[str, msgspec.Meta(pattern=r"^(\d{1,6}[smhd]|continuous)$")] = "continuous"


class CollectionStop(Message, tag="collection_stop"):
    collection_id: Text64


class CollectionStatus(Message, tag="collection_status"):
    collection_id: Text64 | None = None


class ResultsRequest(Message, tag="results_request"):
    request_type: ResultsRequestType
    params: Params = {}


class GetStrategies(Message, tag="get_strategies"):
    pass


class ActivateStrategy(Message, tag="activate_strategy"):
    strategy_name: Text256
    symbol: Symbol


class DeactivateStrategy(Message, tag="deactivate_strategy"):
    strategy_name: Text256
    symbol: Symbol


class GetStrategyStatus(Message, tag="get_strategy_status"):
    strategy_name: Text256 | None = None
    symbol: Symbol | None = None


class ValidateStrategyConfig(Message, tag="validate_strategy_config"):
    strategy_config: Params


class UpsertStrategy(Message, tag="upsert_strategy"):
    strategy_config: Params


ClientMessage = (
    Auth
    | Handshake
    | Heartbeat
    | Subscribe
    | Unsubscribe
    | Command
    | Query
    | SessionStart
    | SessionStop
    | SessionStatus
    | CollectionStart
    | CollectionStop
    | CollectionStatus
    | ResultsRequest
    | GetStrategies
    | ActivateStrategy
    | DeactivateStrategy
    | GetStrategyStatus
    | ValidateStrategyConfig
    | UpsertStrategy
)

MESSAGE_CLASSES: Final[dict[MessageType, type[Message]]] = {
    MessageType(cls.__struct_config__.tag): cls for cls in ClientMessage.__args__
}


def free_fields(cls: type[Message]) -> tuple[str, ...]:
    """Fields of ``cls`` that hold arbitrary JSON (``dict[str, Any]``): the only place a valid
    message can carry unbounded nesting, so the only fields the router depth-checks."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    names = []
    for field in info.fields:
        ftype = field.type.type if isinstance(field.type, msgspec.inspect.Metadata) else field.type
        if isinstance(ftype, msgspec.inspect.DictType) and isinstance(
            ftype.value_type, msgspec.inspect.AnyType
        ):
            names.append(field.name)
    return tuple(names)


def too_deep(value: object, limit: int) -> bool:
    """Whether ``value`` nests lists/objects more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def new_decoder() -> msgspec.json.Decoder[ClientMessage]:
    """A decoder for one JSON client message (bytes or str) into its typed Struct."""
    return msgspec.json.Decoder(ClientMessage)
