"""The core without sockets: router, limits, connections (an in-memory Outbound)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tradewire import CloseCode, ManualClock, Settings
from tradewire.auth.tokens import AuthHandler
from tradewire.core.client_utils import ClientInfo, client_address, origin_allowed, parse_networks
from tradewire.core.connection import Connection
from tradewire.core.connection_manager import ConnectionManager
from tradewire.core.flusher import Flusher
from tradewire.core.frames import Frame
from tradewire.core.limits import RateLimiter, TokenBucket
from tradewire.core.router import MessageRouter
from tradewire.errors import ErrorHandler, RequestError
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import MessageType


class MemoryOutbound:
    """Records frames and closes; ``backlog`` simulates bytes the kernel has not taken."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed_with: tuple[int, str] | None = None
        self.backlog = 0
        self.pings = 0
        self.writes = 0

    def write(self, payload: bytes) -> None:
        self.frames.append(json.loads(payload))

    def write_frame(self, frame: Frame) -> None:
        self.write_frames([frame])

    def write_frames(self, frames: list[Frame]) -> None:
        self.writes += 1
        for frame in frames:
            self.write(frame.payload)

    def buffered(self) -> int:
        return self.backlog

    def set_flow_control(self, high_water: int, on_pause: Any, on_resume: Any) -> None:
        self.high_water = high_water

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def ping(self) -> None:
        self.pings += 1

    def is_open(self) -> bool:
        return self.closed_with is None


def make_conn(
    clock: ManualClock, metrics: ServerMetrics, outbound: Any = None, **limits: Any
) -> tuple[Connection, Any]:
    """A connection over ``outbound`` (default: a :class:`MemoryOutbound`)."""
    out = outbound if outbound is not None else MemoryOutbound()
    conn = Connection(
        "c_test",
        ClientInfo("127.0.0.1", "", None, "/ws"),
        out,
        metrics,
        flusher=Flusher(),
        queue_limit=limits.get("queue_limit", 1024),
        rate=RateLimiter(limits.get("rate", 1.0), limits.get("burst", 3)),
        strikes=RateLimiter(0.1, limits.get("strikes", 2)),
        now=clock.monotonic(),
    )
    return conn, out


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def metrics() -> ServerMetrics:
    return ServerMetrics()


@pytest.fixture
def router(clock: ManualClock, metrics: ServerMetrics) -> MessageRouter:
    r = MessageRouter(clock, ErrorHandler(clock), metrics)
    r.register(
        MessageType.HEARTBEAT, lambda conn, msg: {"type": "status", "status": "pong"}, requires_auth=False
    )

    def fail(conn: Connection, msg: Any) -> None:
        raise RequestError(ErrorCode.MISSING_PARAMETERS, "need symbols", {"missing": ["symbols"]})

    r.register(MessageType.QUERY, fail, requires_auth=False)
    return r


def test_token_bucket_allows_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    assert bucket.take(0.5)
    assert not bucket.take(0.5)
    assert bucket.take(100.0)  # refill is capped at capacity
    assert bucket.take(100.0) and bucket.take(100.0) and not bucket.take(100.0)


def test_rate_limiter_allows_burst_then_the_sustained_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow(10.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after(10.0) == pytest.approx(0.5)
    assert limiter.allow(10.5)
    assert not limiter.allow(10.5)
    assert [limiter.allow(100.0) for _ in range(4)] == [True, True, True, False]  # burst, not more


def test_router_replies_with_id_and_timestamp(
    router: MessageRouter, clock: ManualClock, metrics: ServerMetrics
) -> None:
    conn, out = make_conn(clock, metrics, burst=100, rate=100.0)
    router.handle(conn, b'{"type":"heartbeat","id":"x1"}')
    assert out.frames[0]["status"] == "pong"
    assert out.frames[0]["id"] == "x1"
    assert out.frames[0]["timestamp"].endswith("Z")
    assert metrics.messages_in == 1
    for _ in range(63):
        router.handle(conn, b'{"type":"heartbeat"}')
    assert sum(metrics.latency["heartbeat"].counts) == 1  # sync handlers are timed 1 in 64


def test_router_turns_request_errors_into_envelopes(
    router: MessageRouter, clock: ManualClock, metrics: ServerMetrics
) -> None:
    conn, out = make_conn(clock, metrics)
    router.handle(conn, b'{"type":"query","query_type":"symbols","id":3}')
    err = out.frames[0]
    assert (err["type"], err["error_code"], err["id"]) == ("error", "missing_parameters", 3)
    assert err["details"] == {"missing": ["symbols"]}
    assert metrics.errors["missing_parameters"] == 1


def test_router_requires_auth_for_protected_routes(clock: ManualClock, metrics: ServerMetrics) -> None:
    r = MessageRouter(clock, ErrorHandler(clock), metrics)
    r.register(MessageType.GET_STRATEGIES, lambda conn, msg: {"type": "response"})
    conn, out = make_conn(clock, metrics)
    r.handle(conn, b'{"type":"get_strategies","id":1}')
    assert out.frames[0]["error_code"] == "authentication_required"


def test_unregistered_type_is_service_unavailable(
    router: MessageRouter, clock: ManualClock, metrics: ServerMetrics
) -> None:
    conn, out = make_conn(clock, metrics)
    router.handle(conn, b'{"type":"get_strategies","id":1}')
    assert out.frames[0]["error_code"] == "service_unavailable"


def test_rate_limit_uses_the_clock_and_closes_after_strikes(
    router: MessageRouter, clock: ManualClock, metrics: ServerMetrics
) -> None:
    conn, out = make_conn(clock, metrics, burst=2, rate=1.0, strikes=2)
    for _ in range(2):
        router.handle(conn, b'{"type":"heartbeat"}')
    router.handle(conn, b'{"type":"heartbeat","id":9}')
    assert out.frames[-1]["error_code"] == "rate_limit_exceeded"
    assert out.frames[-1]["id"] == 9
    clock.advance(1.0)
    router.handle(conn, b'{"type":"heartbeat"}')
    assert out.frames[-1]["status"] == "pong"
    router.handle(conn, b'{"type":"heartbeat"}')
    router.handle(conn, b'{"type":"heartbeat"}')
    assert out.closed_with == (CloseCode.RATE_LIMIT_ABUSE, "rate limit abuse")


def test_send_over_the_queue_bound_closes_4008(clock: ManualClock, metrics: ServerMetrics) -> None:
    conn, out = make_conn(clock, metrics, queue_limit=100)
    assert conn.send(b'{"n":1}')
    out.backlog = 101
    assert conn.send(b'{"n":2}')  # the bound is checked once the transport reports backpressure
    conn.pause()
    assert not conn.send(b'{"n":3}')
    assert out.closed_with == (CloseCode.SLOW_CONSUMER, "slow consumer")
    assert not conn.send(b'{"n":4}')
    assert metrics.closes[4008] == 1


def test_connection_manager_enforces_per_user_limit(
    clock: ManualClock, metrics: ServerMetrics, tmp_path: Any
) -> None:
    auth = AuthHandler.from_settings(Settings(jwt_secret="k" * 40, data_dir=tmp_path))
    principal = auth.verify(auth.mint("u", __import__("tradewire").Level.BASIC)[0])
    manager = ConnectionManager(metrics, max_connections=10, max_per_user=1)
    a, _ = make_conn(clock, metrics)
    b, _ = make_conn(clock, metrics)
    b.client_id = "c_other"
    manager.add(a)
    manager.add(b)
    manager.bind_user(a, principal)
    manager.bind_user(a, principal)  # re-auth of the same connection is not a new one
    with pytest.raises(RequestError) as exc:
        manager.bind_user(b, principal)
    assert exc.value.code is ErrorCode.CONNECTION_LIMIT_EXCEEDED
    manager.remove(a)
    manager.bind_user(b, principal)
    assert manager.user_connections("u") == 1


def test_forwarded_for_needs_a_trusted_peer() -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    assert client_address("10.1.2.3", "198.51.100.7, 10.0.0.5", trusted) == "198.51.100.7"
    assert client_address("192.0.2.1", "198.51.100.7", trusted) == "192.0.2.1"
    assert client_address("10.1.2.3", None, trusted) == "10.1.2.3"
    assert client_address("10.1.2.3", "198.51.100.7", ()) == "10.1.2.3"


def test_origin_allow_list() -> None:
    allowed = frozenset({"https://a.example"})
    assert origin_allowed("https://a.example/", allowed)
    assert not origin_allowed("https://b.example", allowed)
    assert origin_allowed(None, allowed)
    assert origin_allowed("https://b.example", frozenset())


def test_refused_reauth_as_another_user_keeps_the_count(
    clock: ManualClock, metrics: ServerMetrics, tmp_path: Any
) -> None:
    """A re-auth refused by the per-user limit leaves the connection counted for its old user."""
    auth = AuthHandler.from_settings(Settings(jwt_secret="k" * 40, data_dir=tmp_path))
    alice = auth.verify(auth.mint("alice", __import__("tradewire").Level.BASIC)[0])
    bob = auth.verify(auth.mint("bob", __import__("tradewire").Level.BASIC)[0])
    manager = ConnectionManager(metrics, max_connections=10, max_per_user=1)
    a, _ = make_conn(clock, metrics)
    b, _ = make_conn(clock, metrics)
    b.client_id = "c_b"
    for conn in (a, b):
        manager.add(conn)
    manager.bind_user(a, alice)
    manager.bind_user(b, bob)
    with pytest.raises(RequestError):
        manager.bind_user(a, bob)
    assert a.user_id == "alice"
    assert manager.user_connections("alice") == 1


class QueueingOutbound(MemoryOutbound):
    """Like the ASGI route's outbound under uvloop: a written frame waits in a queue until a
    later loop iteration, so ``buffered()`` right after a write is never 0."""

    def write_frames(self, frames: list[Frame]) -> None:
        super().write_frames(frames)
        self.backlog = sum(len(frame.payload) for frame in frames)  # the older ones went out

    def drain(self) -> None:
        self.backlog = 0


async def test_unconfirmed_holds_only_what_the_buffer_can_hold(
    clock: ManualClock, metrics: ServerMetrics
) -> None:
    """A transport that never reports empty between writes must not make the connection keep
    (and replay on reconnect) everything ever written: only frames still in the buffer count."""
    conn, out = make_conn(clock, metrics, QueueingOutbound(), queue_limit=1 << 20)
    for offset in range(1, 501):
        conn.queue_frame(Frame(b'{"type":"data","offset":%d}' % offset, offset, None, "market_data"))
        await asyncio.sleep(0)  # the next loop iteration (and flush pass)
    assert len(out.frames) == 500
    assert len(conn.unconfirmed) == 1
    assert conn.unsent_offsets() == {"market_data": 500}  # a close now may have lost only 500
    out.drain()
    conn.resume()  # the transport reports it drained
    assert conn.unsent_offsets() == {}
