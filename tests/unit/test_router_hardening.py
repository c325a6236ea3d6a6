"""MessageRouter.handle never raises (issue 9, fault 5), without sockets."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from tests.unit.test_core import make_conn
from tradewire import ManualClock
from tradewire.core.connection import Connection
from tradewire.core.router import MessageRouter
from tradewire.errors import ErrorHandler
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import MessageType, too_deep


def _router(clock: ManualClock, metrics: ServerMetrics, reply: Any) -> MessageRouter:
    router = MessageRouter(clock, ErrorHandler(clock), metrics, max_depth=4)

    def handler(conn: Connection, message: Any) -> Any:
        if isinstance(reply, Exception):
            raise reply
        return dict(reply)

    router.register(MessageType.HEARTBEAT, handler, requires_auth=False)
    router.register(MessageType.QUERY, handler, requires_auth=False)
    return router


def _handle(reply: Any, *frames: bytes) -> list[dict[str, Any]]:
    clock, metrics = ManualClock(), ServerMetrics()
    router = _router(clock, metrics, reply)
    conn, out = make_conn(clock, metrics, burst=100, rate=100.0)
    for frame in frames:
        for _ in range(2):  # once sampled for latency, once not: both paths
            router.handle(conn, frame)
    assert out.closed_with is None
    return list(out.frames)


def test_a_reply_the_encoder_refuses_becomes_internal_error_with_the_id() -> None:
    with capture_logs() as logs:
        frames = _handle({"type": "status", "value": 2**64}, b'{"type":"heartbeat","id":"h"}')
    assert [(f["error_code"], f["id"]) for f in frames] == [(ErrorCode.INTERNAL_ERROR, "h")] * 2
    correlation = {f["details"]["correlation_id"] for f in frames}
    assert correlation == {e["correlation_id"] for e in logs if e["event"] == "request.failed"}


def test_a_crashing_sync_handler_is_internal_error_never_raw_text() -> None:
    frames = _handle(RuntimeError("secret internals"), b'{"type":"heartbeat","id":1}')
    assert [f["error_code"] for f in frames] == [ErrorCode.INTERNAL_ERROR] * 2
    assert all("secret" not in str(f) for f in frames)


def test_nesting_limits() -> None:
    deep = b'{"type":"heartbeat","id":2,"x":' + b"[" * 1000 + b"]" * 1000 + b"}"  # past the decoder's limit
    params = b'{"type":"query","query_type":"q","id":3,"params":{"a":{"b":{"c":{"d":{}}}}}}'
    shallow = b'{"type":"query","query_type":"q","id":4,"params":{"a":{"b":{"c":{}}}}}'
    frames = _handle({"type": "response"}, deep, params, shallow)
    assert [(f.get("error_code"), f["id"]) for f in frames] == [
        (ErrorCode.VALIDATION_ERROR, 2),
        (ErrorCode.VALIDATION_ERROR, 2),
        (ErrorCode.VALIDATION_ERROR, 3),
        (ErrorCode.VALIDATION_ERROR, 3),
        (None, 4),
        (None, 4),
    ]
    assert frames[2]["details"] == {"path": "$.params", "max_depth": 4}


def test_too_deep_counts_levels_without_recursion() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert too_deep(value, 99_999) and not too_deep(value, 100_000)
    assert not too_deep({"a": [1, {"b": 2}]}, 3) and too_deep({"a": [1, {"b": {}}]}, 3)
