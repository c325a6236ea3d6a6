"""The two closed registries of the wire protocol: error codes and close codes.

Every error envelope carries an :class:`ErrorCode`; every close the server initiates carries a
:class:`CloseCode`. Each value documents what it means and whether the client should retry or
reconnect; a test checks that docs/PROTOCOL.md documents every value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """``error_code`` values of the error envelope (DESIGN §3.3)."""

    VALIDATION_ERROR = "validation_error"
    INVALID_JSON = "invalid_json"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    UNKNOWN_COMMAND = "unknown_command"
    AUTHENTICATION_REQUIRED = "authentication_required"
    INVALID_TOKEN = "invalid_token"
    INVALID_CREDENTIALS = "invalid_credentials"
    TOKEN_EXPIRED = "token_expired"
    INSUFFICIENT_PERMISSIONS = "insufficient_permissions"
    CONNECTION_LIMIT_EXCEEDED = "connection_limit_exceeded"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    SUBSCRIPTION_LIMIT_EXCEEDED = "subscription_limit_exceeded"
    SERVICE_UNAVAILABLE = "service_unavailable"
    MISSING_PARAMETERS = "missing_parameters"
    SESSION_CONFLICT = "session_conflict"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_LIMIT_EXCEEDED = "session_limit_exceeded"
    LIVE_TRADING_UNAVAILABLE = "live_trading_unavailable"
    STRATEGY_NOT_FOUND = "strategy_not_found"
    DATASET_NOT_FOUND = "dataset_not_found"
    UNKNOWN_SYMBOL = "unknown_symbol"
    COLLECTION_NOT_FOUND = "collection_not_found"
    COLLECTION_LIMIT_EXCEEDED = "collection_limit_exceeded"
    RESULTS_NOT_AVAILABLE = "results_not_available"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """Human description of a code and what a client should do about it."""

    meaning: str
    advice: str


ERROR_INFO: dict[ErrorCode, CodeInfo] = {
    ErrorCode.VALIDATION_ERROR: CodeInfo(
        "A field is missing, has the wrong type, or breaks a limit; `details` names the path.",
        "Fix the message; do not resend unchanged.",
    ),
    ErrorCode.INVALID_JSON: CodeInfo("The frame is not valid JSON.", "Fix the encoder."),
    ErrorCode.UNKNOWN_MESSAGE_TYPE: CodeInfo(
        "`type` is not one of the protocol's message types.", "Check the protocol version."
    ),
    ErrorCode.UNKNOWN_COMMAND: CodeInfo(
        "`action` of a `command` or `query_type` of a `query` is not known.", "See `server_info`."
    ),
    ErrorCode.AUTHENTICATION_REQUIRED: CodeInfo(
        "Only `auth`, `handshake` and `heartbeat` work before authentication.", "Send `auth` first."
    ),
    ErrorCode.INVALID_TOKEN: CodeInfo(
        "The JWT failed verification (signature, algorithm, claims).", "Obtain a new token."
    ),
    ErrorCode.INVALID_CREDENTIALS: CodeInfo(
        "HTTP login only (401): unknown user or wrong password (which one is not said).",
        "Check the credentials; repeated failures are throttled with backoff (429, `Retry-After`).",
    ),
    ErrorCode.TOKEN_EXPIRED: CodeInfo(
        "The JWT has expired; privileges were dropped. Sent unsolicited on a live connection.",
        "Send `auth` with a fresh token within the grace period, or the server closes with 4001.",
    ),
    ErrorCode.INSUFFICIENT_PERMISSIONS: CodeInfo(
        "The authenticated user lacks the permission this message needs; `details.required` names it.",
        "Do not retry with the same token.",
    ),
    ErrorCode.CONNECTION_LIMIT_EXCEEDED: CodeInfo(
        "The user already holds the maximum number of authenticated connections.",
        "Close another connection of this user first.",
    ),
    ErrorCode.RATE_LIMIT_EXCEEDED: CodeInfo(
        "The connection's token bucket is empty; the message was not processed. (HTTP login: 429, "
        "too many failed attempts from this address or for this account.)",
        "Wait `details.retry_after` seconds (HTTP: `Retry-After`). Persisting closes the connection "
        "with 4029.",
    ),
    ErrorCode.SUBSCRIPTION_LIMIT_EXCEEDED: CodeInfo(
        "Too many subscriptions (100 per client, a symbol list counting one per symbol) or too many "
        "subscribe operations (50 per hour).",
        "Unsubscribe first, or wait `details.retry_after` seconds.",
    ),
    ErrorCode.SERVICE_UNAVAILABLE: CodeInfo(
        "The component that serves this message is not available in this server.", "Retry later."
    ),
    ErrorCode.MISSING_PARAMETERS: CodeInfo("Required parameters are missing.", "Add them."),
    ErrorCode.SESSION_CONFLICT: CodeInfo(
        "The caller already runs a session of this type with the same strategy on the same symbol; "
        "`details.session_id` names it.",
        "Stop that session first, or watch it instead.",
    ),
    ErrorCode.SESSION_NOT_FOUND: CodeInfo(
        "No session with that id is visible to the caller (other users' sessions look absent).",
        "List your sessions with `session_status` without `session_id`.",
    ),
    ErrorCode.SESSION_LIMIT_EXCEEDED: CodeInfo(
        "Too many running sessions: `details.scope` is `per user` or `in total`, `details.limit` the bound.",
        "Stop a session or wait for one to finish.",
    ),
    ErrorCode.LIVE_TRADING_UNAVAILABLE: CodeInfo(
        "`session_type: live` needs an exchange adapter: this server has none configured, or it is "
        "not connected now (`details.connected: false`).",
        "Use `paper`, ask the operator to configure an exchange, or retry when it is back.",
    ),
    ErrorCode.STRATEGY_NOT_FOUND: CodeInfo("No strategy has that name.", "List strategies."),
    ErrorCode.DATASET_NOT_FOUND: CodeInfo(
        "No dataset with that id.", "List datasets with `query` `datasets` or `GET /api/v1/datasets`."
    ),
    ErrorCode.UNKNOWN_SYMBOL: CodeInfo(
        "The engine knows no such symbol (or, where a live feed is needed, none publishes it); "
        "`details.matches` lists up to three close known spellings (`btc-usd` → `BTC-USD`).",
        "Use a symbol from `query` `symbols`; spellings are exact and never rewritten.",
    ),
    ErrorCode.COLLECTION_NOT_FOUND: CodeInfo(
        "No collection with that id is visible to the caller (other users' collections look absent).",
        "List your collections with `collection_status` without `collection_id`.",
    ),
    ErrorCode.COLLECTION_LIMIT_EXCEEDED: CodeInfo(
        "The caller already runs the maximum number of collections; `details.limit` is the bound.",
        "Stop a collection or wait for one to end.",
    ),
    ErrorCode.RESULTS_NOT_AVAILABLE: CodeInfo(
        "The session has no stored results: it is still running, or it failed (`details.status`).",
        "Wait for `execution_result`, or check `session_status` for its error.",
    ),
    ErrorCode.INTERNAL_ERROR: CodeInfo(
        "The server failed; `details.correlation_id` identifies the log entry.",
        "Retry once; report the correlation id if it persists.",
    ),
}


class CloseCode(IntEnum):
    """WebSocket close codes the server sends (DESIGN §3.6)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    IDLE_TIMEOUT = 4000
    TOKEN_EXPIRED = 4001
    AUTH_TIMEOUT = 4003
    SLOW_CONSUMER = 4008
    RATE_LIMIT_ABUSE = 4029


# Codes a close frame may carry on the wire (RFC 6455 §7.4; 1004-1006 and 1015 are reserved for
# local use and never sent). Both directions: the server echoes only these and sends only these.
WIRE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame: a defined code, or 3000-4999."""
    return code in WIRE_CLOSE_CODES or 3000 <= code < 5000


CLOSE_INFO: dict[CloseCode, CodeInfo] = {
    CloseCode.NORMAL: CodeInfo("Normal closure.", "Final: do not reconnect automatically."),
    CloseCode.GOING_AWAY: CodeInfo(
        "The server is shutting down or restarting.", "Reconnect with backoff (1–5 s, jittered)."
    ),
    CloseCode.PROTOCOL_ERROR: CodeInfo(
        "The client broke RFC 6455 framing: reserved bits without an extension, a new message inside a "
        "fragmented one, a continuation without a first frame, an invalid close frame, ...",
        "Final: fix the client (or its WebSocket library) before reconnecting.",
    ),
    CloseCode.UNSUPPORTED_DATA: CodeInfo(
        "A binary frame: the protocol is JSON in text frames only.", "Final: send text frames."
    ),
    CloseCode.INVALID_DATA: CodeInfo(
        "A text message (or a close reason) that is not valid UTF-8.", "Final: fix the encoder."
    ),
    CloseCode.POLICY_VIOLATION: CodeInfo(
        "Policy violation (e.g. a browser Origin refused before the upgrade).",
        "Final: fix the client before reconnecting.",
    ),
    CloseCode.MESSAGE_TOO_BIG: CodeInfo(
        "An inbound frame or message exceeded `max_message_size`.",
        "Reconnect only after shrinking the message.",
    ),
    CloseCode.INTERNAL_ERROR: CodeInfo("Unexpected server failure.", "Reconnect with backoff."),
    CloseCode.TRY_AGAIN_LATER: CodeInfo(
        "The server is at `max_connections`, or the client's address at `max_connections_per_address` "
        "(the reason says which); no welcome was sent.",
        "Reconnect with exponential backoff (start 1 s, cap 30 s); over the address limit, close other "
        "connections first.",
    ),
    CloseCode.IDLE_TIMEOUT: CodeInfo(
        "Nothing (no message, no pong) arrived for 3 × heartbeat_interval.",
        "Reconnect; send `heartbeat` every heartbeat_interval seconds.",
    ),
    CloseCode.TOKEN_EXPIRED: CodeInfo(
        "The JWT expired and no fresh `auth` arrived within the grace period.",
        "Reconnect and authenticate with a new token.",
    ),
    CloseCode.AUTH_TIMEOUT: CodeInfo(
        "No successful `auth` within `auth_timeout` seconds of connecting.",
        "Reconnect and send `auth` right after the welcome.",
    ),
    CloseCode.SLOW_CONSUMER: CodeInfo(
        "The connection's outbound queue exceeded its byte bound: the client reads too slowly (replies, "
        "stream frames or pongs to its own pings).",
        "Reconnect (and recover missed messages); read faster or subscribe to less.",
    ),
    CloseCode.RATE_LIMIT_ABUSE: CodeInfo(
        "The client kept sending after `rate_limit_exceeded` replies.",
        "Reconnect after at least 60 s, at a lower message rate.",
    ),
}
