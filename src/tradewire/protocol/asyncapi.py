"""The wire protocol as an AsyncAPI 3.0 document, generated from the server's own schemas.

Everything in it comes from code the server runs or tests check: client messages from
:mod:`tradewire.protocol.messages` (the decoder's msgspec Structs), replies and stream frames
from :mod:`tradewire.protocol.replies` / :mod:`~tradewire.protocol.payloads` (checked against
real traffic by the test suite), error and close codes from :mod:`tradewire.protocol.codes`.
``docs/asyncapi.yaml`` is this module's output, and a test fails when the two differ::

    python -m tradewire.protocol.asyncapi > docs/asyncapi.yaml

The YAML is written by a small emitter below (block style, JSON-compatible scalars), so the
generator needs nothing beyond msgspec.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Final

import msgspec

from tradewire._version import PROTOCOL_VERSION
from tradewire.engine.sessions.config import SessionConfig
from tradewire.handlers.results import SessionResultsParams, StrategyResultsParams, SymbolResultsParams
from tradewire.protocol.codes import CLOSE_INFO, ERROR_INFO, CloseCode, ErrorCode
from tradewire.protocol.messages import MESSAGE_CLASSES, MessageType
from tradewire.protocol.replies import FRAMES, REPLIES, ErrorEnvelope, ServerMessage, Welcome
from tradewire.streams.filters import FilterParams

CHANNEL: Final = "gateway"
_PARAMS: Final[dict[str, Any]] = {
    "subscribe": FilterParams,
    "session_start": SessionConfig,
    "session_results": SessionResultsParams,
    "symbol_results": SymbolResultsParams,
    "strategy_results": StrategyResultsParams,
}
_TYPED_FIELDS: Final = (
    ("Subscribe", "params", ("subscribe",)),
    ("SessionStart", "config", ("session_start",)),
    ("ResultsRequest", "params", ("session_results", "symbol_results", "strategy_results")),
)
REF: Final = "#/components/schemas/{name}"

EXAMPLES: Final[dict[MessageType, dict[str, Any]]] = {
    MessageType.AUTH: {"type": "auth", "token": "<JWT>", "id": 1},
    MessageType.HANDSHAKE: {"type": "handshake", "version": "1.0", "capabilities": ["recovery"], "id": 2},
    MessageType.HEARTBEAT: {"type": "heartbeat", "id": 3},
    MessageType.SUBSCRIBE: {
        "type": "subscribe",
        "stream": "market_data",
        "params": {"symbols": ["BTC-USD"]},
        "recover": {"offset": 1842, "epoch": "9f0c2a61d3b4"},
        "id": 4,
    },
    MessageType.UNSUBSCRIBE: {"type": "unsubscribe", "stream": "market_data", "id": 5},
    MessageType.COMMAND: {"type": "command", "action": "get_status", "id": 6},
    MessageType.QUERY: {"type": "query", "query_type": "datasets", "params": {"symbol": "GOOG"}, "id": 7},
    MessageType.SESSION_START: {
        "type": "session_start",
        "session_type": "backtest",
        "strategy_config": {"sma_cross": ["GOOG"]},
        "config": {"dataset_id": 1, "fee_bps": 10, "whole_units": True},
        "client_key": "nightly-goog",
        "id": 8,
    },
    MessageType.SESSION_STOP: {"type": "session_stop", "session_id": "s_zYB99FCUP8p-9I2N", "id": 9},
    MessageType.SESSION_STATUS: {"type": "session_status", "session_id": "s_zYB99FCUP8p-9I2N", "id": 10},
    MessageType.COLLECTION_START: {
        "type": "collection_start",
        "symbols": ["BTC-USD"],
        "duration": "5m",
        "id": 11,
    },
    MessageType.COLLECTION_STOP: {"type": "collection_stop", "collection_id": "col_1", "id": 12},
    MessageType.COLLECTION_STATUS: {"type": "collection_status", "id": 13},
    MessageType.RESULTS_REQUEST: {
        "type": "results_request",
        "request_type": "session_results",
        "params": {"session_id": "s_zYB99FCUP8p-9I2N", "sections": ["metrics", "trades"], "limit": 100},
        "id": 14,
    },
    MessageType.GET_STRATEGIES: {"type": "get_strategies", "id": 15},
    MessageType.ACTIVATE_STRATEGY: {
        "type": "activate_strategy",
        "strategy_name": "rsi_mean_reversion",
        "symbol": "BTC-USD",
        "id": 16,
    },
    MessageType.DEACTIVATE_STRATEGY: {
        "type": "deactivate_strategy",
        "strategy_name": "rsi_mean_reversion",
        "symbol": "BTC-USD",
        "id": 17,
    },
    MessageType.GET_STRATEGY_STATUS: {"type": "get_strategy_status", "id": 18},
    MessageType.VALIDATE_STRATEGY_CONFIG: {
        "type": "validate_strategy_config",
        "strategy_config": {"strategy_name": "draft", "direction": "LONG"},
        "id": 19,
    },
    MessageType.UPSERT_STRATEGY: {
        "type": "upsert_strategy",
        "strategy_config": {"strategy_name": "sma_cross", "direction": "LONG", "...": "see PROTOCOL.md"},
        "id": 20,
    },
}
"""One example per client message type (the test suite decodes each with the server's decoder,
except the elided strategy document of ``upsert_strategy``)."""

_SUMMARIES: Final[dict[MessageType, str]] = {
    MessageType.AUTH: "Present a JWT; sent again, refreshes the connection's token.",
    MessageType.HANDSHAKE: "Optional: negotiate the protocol version and capabilities.",
    MessageType.HEARTBEAT: "Liveness; send every heartbeat_interval seconds.",
    MessageType.SUBSCRIBE: "Subscribe to a stream with filters, optionally recovering from an offset.",
    MessageType.UNSUBSCRIBE: "End a subscription.",
    MessageType.COMMAND: "Run an action: get_status, health_check, get_stats (admin).",
    MessageType.QUERY: "Read-only look-ups: server_info, indicators, datasets.",
    MessageType.SESSION_START: "Start a backtest, paper or live session.",
    MessageType.SESSION_STOP: "Stop one of your sessions.",
    MessageType.SESSION_STATUS: "One session (session_id) or your sessions, newest first.",
    MessageType.COLLECTION_START: "Record the feed of some symbols for a duration as a dataset.",
    MessageType.COLLECTION_STOP: "Stop a collection.",
    MessageType.COLLECTION_STATUS: "One collection or all of yours.",
    MessageType.RESULTS_REQUEST: "Stored results: session_results, symbol_results, strategy_results.",
    MessageType.GET_STRATEGIES: "List stored strategies with their documents.",
    MessageType.ACTIVATE_STRATEGY: "Run a strategy on a symbol (live feed); idempotent.",
    MessageType.DEACTIVATE_STRATEGY: "Stop a strategy on a symbol; idempotent.",
    MessageType.GET_STRATEGY_STATUS: "State machine of one pair, or of all pairs.",
    MessageType.VALIDATE_STRATEGY_CONFIG: "Check a strategy document; every error and warning at its path.",
    MessageType.UPSERT_STRATEGY: "Store a strategy document as a new version.",
}


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of protocol version :data:`PROTOCOL_VERSION`."""
    client = {t: MESSAGE_CLASSES[t] for t in MessageType}
    replies = sorted({cls for types in REPLIES.values() for cls in types}, key=lambda c: c.__name__)
    frames = list(FRAMES.values())
    types: list[Any] = [*client.values(), Welcome, ErrorEnvelope, *replies, *frames, *_PARAMS.values()]
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    schemas = {name: _clean(schema) for name, schema in sorted(schemas.items())}
    _describe_codes(schemas)
    _refine(schemas)
    messages: dict[str, Any] = {}
    for message_type, cls in client.items():
        messages[message_type.value] = _message(cls, _SUMMARIES[message_type], EXAMPLES[message_type])
    server_types: list[type[ServerMessage]] = [Welcome, ErrorEnvelope, *replies]
    for reply in server_types:
        messages[_reply_name(reply)] = _message(reply, _first_line(reply.__doc__))
    for stream, frame in FRAMES.items():
        messages[f"{stream.value}_frame"] = _message(frame, f"A message of the `{stream.value}` stream.")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "tradewire wire protocol",
            "version": PROTOCOL_VERSION,
            "description": _description(),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "engine": {
                "host": "127.0.0.1:8765",
                "protocol": "ws",
                "description": "The picows engine (`tradewire serve`, TRADEWIRE_WS_PORT).",
            },
            "http": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "The same endpoint through the ASGI adapter on the HTTP port.",
            },
        },
        "channels": {CHANNEL: _channel(messages)},
        "operations": _operations(client),
        "components": {"messages": messages, "schemas": schemas},
    }


def _channel(messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": "/ws",
        "title": "The gateway's WebSocket",
        "description": "One JSON object per text frame, both ways. The direct reply to a client message "
        "carries its `id`; nothing else does.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
        "bindings": {
            "ws": {
                "method": "GET",
                "headers": {
                    "type": "object",
                    "properties": {
                        "X-Reconnect-Token": {
                            "type": "string",
                            "description": "The reconnect_token of the last welcome: resume that session.",
                        }
                    },
                },
                "query": {
                    "type": "object",
                    "properties": {
                        "reconnect_token": {
                            "type": "string",
                            "description": "The same, for browsers (which cannot set headers).",
                        }
                    },
                },
            }
        },
    }


def _operations(client: dict[MessageType, Any]) -> dict[str, Any]:
    channel = {"$ref": f"#/channels/{CHANNEL}"}
    error_ref = {"$ref": f"#/channels/{CHANNEL}/messages/{_reply_name(ErrorEnvelope)}"}
    operations: dict[str, Any] = {
        "receiveWelcome": {
            "action": "receive",
            "channel": channel,
            "summary": "Sent on connect; keep its reconnect_token.",
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{_reply_name(Welcome)}"}],
        },
        "receiveError": {
            "action": "receive",
            "channel": channel,
            "summary": "Unsolicited errors (token_expired on a live connection).",
            "messages": [error_ref],
        },
    }
    for message_type in client:
        reply = [
            {"$ref": f"#/channels/{CHANNEL}/messages/{_reply_name(cls)}"} for cls in REPLIES[message_type]
        ]
        operations[_camel("send", message_type.value)] = {
            "action": "send",
            "channel": channel,
            "summary": _SUMMARIES[message_type],
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{message_type.value}"}],
            "reply": {"channel": channel, "messages": [*reply, error_ref]},
        }
    for stream in FRAMES:
        operations[_camel("receive", stream.value)] = {
            "action": "receive",
            "channel": channel,
            "summary": f"Messages of the `{stream.value}` stream, after `subscribe`.",
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{stream.value}_frame"}],
        }
    return operations


def _refine(schemas: dict[str, Any]) -> None:
    """Free-form fields that the server validates with a schema of their own point to it."""
    for message, field, names in _TYPED_FIELDS:
        refs = [{"$ref": REF.format(name=_PARAMS[name].__name__)} for name in names]
        prop = schemas[message]["properties"][field]
        prop.pop("type", None)
        prop.pop("maxProperties", None)
        if len(refs) == 1:
            prop.update(refs[0])
        else:
            prop["description"] = "By `request_type`: " + ", ".join(names) + "."
            prop["oneOf"] = refs


def _message(cls: Any, summary: str, example: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": cls.__name__,
        "title": cls.__name__,
        "summary": summary,
        "payload": {"$ref": REF.format(name=cls.__name__)},
    }
    if example is not None:
        out["examples"] = [{"payload": example}]
    return out


def _reply_name(cls: type[ServerMessage]) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def _camel(prefix: str, snake: str) -> str:
    return prefix + "".join(part.title() for part in snake.split("_"))


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _clean(schema: Any) -> Any:
    """AsyncAPI's Schema Object from msgspec's JSON Schema: no OpenAPI-style ``discriminator``
    objects (each branch's ``enum`` on the tag already tells them apart) and no
    ``additionalProperties: false`` (clients must accept fields added later)."""
    if isinstance(schema, dict):
        return {
            key: _clean(value)
            for key, value in schema.items()
            if key != "discriminator" and not (key == "additionalProperties" and value is False)
        }
    if isinstance(schema, list):
        return [_clean(item) for item in schema]
    return schema


def _describe_codes(schemas: dict[str, Any]) -> None:
    schemas["ErrorCode"] = {
        "title": "ErrorCode",
        "description": "`error_code` of the error envelope: a closed set.",
        "enum": [code.value for code in ErrorCode],
        "x-codes": {
            code.value: {"meaning": ERROR_INFO[code].meaning, "advice": ERROR_INFO[code].advice}
            for code in ErrorCode
        },
    }
    schemas["CloseCode"] = {
        "title": "CloseCode",
        "description": "WebSocket close codes the server sends, and whether to reconnect.",
        "type": "integer",
        "enum": [int(code) for code in CloseCode],
        "x-codes": {
            str(int(code)): {"meaning": CLOSE_INFO[code].meaning, "advice": CLOSE_INFO[code].advice}
            for code in CloseCode
        },
    }


def _description() -> str:
    lines = [
        "Real-time gateway of a trading system: JSON text frames, one object per frame. Every client",
        "message has `type` and may have `id` (string of at most 64 characters, or an integer within",
        "±(2^53−1)); the direct reply carries the same `id`. Times are ISO 8601 UTC strings with",
        "milliseconds (`timestamp`, `*_at`, `*_time`, `*_until`); durations are seconds (`*_seconds`);",
        "keys are snake_case except inside a stored strategy document. Clients must ignore fields they",
        "do not know. Narrative documentation with examples: docs/PROTOCOL.md.",
        "",
        "Close codes:",
        "",
        "| code | meaning | advice |",
        "|---|---|---|",
    ]
    lines += [f"| {int(c)} | {CLOSE_INFO[c].meaning} | {CLOSE_INFO[c].advice} |" for c in CloseCode]
    lines += ["", "Error codes:", "", "| error_code | meaning | advice |", "|---|---|---|"]
    lines += [f"| `{c.value}` | {ERROR_INFO[c].meaning} | {ERROR_INFO[c].advice} |" for c in ErrorCode]
    return "\n".join(lines)


# --------------------------------------------------------------------------- YAML
_PLAIN = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$/-]*$")
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def to_yaml(value: Any) -> str:
    """Block-style YAML of JSON-like ``value``: plain scalars where unambiguous, otherwise
    JSON's double-quoted strings (valid YAML), ``|-`` blocks for multi-line text."""
    return "\n".join(_lines(value, 0)) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out = []
        for key, item in value.items():
            out.extend(_entry(pad + _scalar(str(key)) + ":", item, indent))
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if isinstance(item, dict) and item:
                nested = _lines(item, indent + 2)
                out.append(pad + "- " + nested[0].lstrip())
                out.extend(nested[1:])
            else:
                out.extend(_entry(pad + "-", item, indent))
        return out
    return [pad + _scalar(value)]


def _entry(head: str, item: Any, indent: int) -> list[str]:
    """``head`` (``key:`` or ``-``) followed by ``item``, inline when it is a scalar."""
    if isinstance(item, dict | list) and item:
        return [head, *_lines(item, indent + 2)]
    if isinstance(item, str) and "\n" in item and not item.endswith((" ", "\n")):
        block = " " * (indent + 2)
        return [head + " |-", *((block + line).rstrip() for line in item.split("\n"))]
    return [head + " " + _lines(item, 0)[0]]


def main() -> None:
    sys.stdout.write(to_yaml(document()))


if __name__ == "__main__":
    main()
