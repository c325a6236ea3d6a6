"""Values the reply path cannot encode, and half-applied authentication (issue 9, faults 5 and 6).

Every case runs on both endpoints over a real socket. The rule under test: anything a client
sends gets a typed error envelope (or a documented close), the connection stays usable, and a
refused request leaves nothing half-applied behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
from websockets.asyncio.client import ClientConnection

from tests.helpers import SECRET, Running, open_client, recv_json, request, wait_closed
from tradewire import Level
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import MAX_SAFE_INTEGER
from tradewire.sessions.session_store import SavedSession, new_token

HUGE = 18446744073709551616  # 2**64: one past what the reply encoder can write


async def _usable(ws: ClientConnection) -> None:
    """The connection still answers: a heartbeat barrier gets its pong."""
    pong = await request(ws, {"type": "heartbeat", "id": "barrier"})
    assert (pong["status"], pong["id"]) == ("pong", "barrier")


async def _authed(r: Running, level: Level = Level.ADMIN) -> ClientConnection:
    ws, _ = await open_client(r)
    assert (await request(ws, {"type": "auth", "token": r.token(level=level)}))["status"] == "authenticated"
    return ws


def _signed(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_integer_ids_outside_the_safe_range_are_validation_errors(running: Running) -> None:
    """2**64 (sync and async types) and 2**53 are refused with a typed error, not a 1011 close;
    the async message's side effect does not happen; the largest safe integer is echoed."""
    ws = await _authed(running)
    async with ws:
        for message in (
            {"type": "heartbeat", "id": HUGE},
            {"type": "heartbeat", "id": -HUGE},
            {"type": "heartbeat", "id": MAX_SAFE_INTEGER + 1},
            {"type": "command", "action": "get_status", "id": HUGE},
            {"type": "subscribe", "stream": "signals", "id": HUGE},
        ):
            reply = await request(ws, json.dumps(message))
            assert reply["error_code"] == ErrorCode.VALIDATION_ERROR, message
            assert reply["details"]["path"] == "$.id"
            assert "id" not in reply
        status = await request(ws, {"type": "command", "action": "get_status", "id": MAX_SAFE_INTEGER})
        assert status["id"] == MAX_SAFE_INTEGER
        assert status["data"]["subscriptions"] == []  # the refused subscribe changed nothing
        await _usable(ws)


async def test_deep_nesting_is_a_validation_error_anywhere(running: Running) -> None:
    """~1,000 levels in an ignored field, and more than max_nesting_depth in params: typed errors
    on both endpoints, and the connection stays usable."""
    ws = await _authed(running)
    async with ws:
        deep_anywhere = '{"type":"heartbeat","id":7,"x":' + "[" * 1000 + "]" * 1000 + "}"
        reply = await request(ws, deep_anywhere)
        assert (reply["error_code"], reply["id"]) == (ErrorCode.VALIDATION_ERROR, 7)
        params: Any = {}
        for _ in range(40):
            params = {"a": params}
        for message in (
            {"type": "command", "action": "get_status", "params": params, "id": 8},
            {"type": "upsert_strategy", "strategy_config": params, "id": 9},
            {"type": "subscribe", "stream": "signals", "params": params, "id": 10},
        ):
            reply = await request(ws, message)
            assert reply["error_code"] == ErrorCode.VALIDATION_ERROR, message
            assert reply["id"] == message["id"]
            assert reply["details"]["max_depth"] == running.server.settings.max_nesting_depth
        shallow = {"type": "command", "action": "get_status", "params": {"a": [[{"b": 1}]]}, "id": 11}
        assert (await request(ws, shallow))["status"] == "success"
        await _usable(ws)


async def test_lone_surrogate_escapes_are_invalid_json(running: Running) -> None:
    """A JSON string escape of an unpaired surrogate is not Unicode text: invalid_json, in any
    field; a correctly paired escape is fine."""
    ws, _ = await open_client(running)
    async with ws:
        for raw in (
            r'{"type":"heartbeat","id":"a\ud83d"}',
            r'{"type":"heartbeat","id":"\udc00"}',
            r'{"type":"heartbeat","x":"kate\ud83d","id":1}',
            r'{"type":"auth","token":"\ud800abc"}',
        ):
            assert (await request(ws, raw))["error_code"] == ErrorCode.INVALID_JSON, raw
        paired = await request(ws, r'{"type":"heartbeat","id":"\ud83d\ude00"}')
        assert paired["id"] == "😀"
        await _usable(ws)


async def test_token_claims_that_replies_cannot_carry_are_invalid_token(running: Running) -> None:
    """A validly signed JWT with a lone surrogate, control or bidi characters in ``sub``, or an
    ``exp`` in milliseconds or 10**20: invalid_token, the connection stays unauthenticated, and
    closing it saves no session (nothing to resume with that token)."""
    now = int(time.time())
    hostile = [
        {"sub": "kate\ud83d", "exp": now + 600},
        {"sub": "kate\x07", "exp": now + 600},
        {"sub": "\u202ekate", "exp": now + 600},
        {"sub": "kate", "exp": (now + 600) * 1000, "level": "admin"},
        {"sub": "kate", "exp": 10**20, "level": "admin"},
    ]
    ws, _ = await open_client(running)
    async with ws:
        for n, claims in enumerate(hostile):
            reply = await request(ws, {"type": "auth", "token": _signed(claims), "id": n})
            assert (reply["error_code"], reply["id"]) == (ErrorCode.INVALID_TOKEN, n), claims
        denied = await request(ws, {"type": "subscribe", "stream": "signals", "id": "s"})
        assert denied["error_code"] == ErrorCode.AUTHENTICATION_REQUIRED
    await asyncio.sleep(0.05)
    assert await running.server.session_store.count() == 0


async def test_failed_auth_after_a_good_one_changes_nothing(running: Running) -> None:
    """An admin connection presenting an exp-in-ms token keeps its admin principal and expiry."""
    ws = await _authed(running, Level.BASIC)
    async with ws:
        bad = _signed({"sub": "mallory", "exp": int(time.time() + 600) * 1000, "level": "admin"})
        assert (await request(ws, {"type": "auth", "token": bad}))["error_code"] == ErrorCode.INVALID_TOKEN
        status = await request(ws, {"type": "command", "action": "get_status"})
        assert status["data"]["user_id"] == "alice"
        stats = await request(ws, {"type": "command", "action": "get_stats"})
        assert stats["error_code"] == ErrorCode.INSUFFICIENT_PERMISSIONS


async def test_unrestorable_saved_session_closes_1011_and_frees_the_slot(running: Running) -> None:
    """A saved session the welcome cannot carry (written by an older server, or a corrupt store)
    closes the reconnecting client with 1011 instead of hanging, releases its connection slot,
    and is not saved again."""
    token, token_hash = new_token("c_corrupted00000")
    session = SavedSession(
        client_id="c_corrupted00000",
        token_hash=token_hash,
        saved_at=time.time(),
        user_id="kate\ud83d",
        level="basic",
        auth_expires_at=time.time() + 600,
    )
    await running.server.session_store.save(session, 60)
    ws = await running.connect(additional_headers={"X-Reconnect-Token": token})
    assert await wait_closed(ws) == 1011
    for _ in range(100):
        if len(running.server.connection_manager) == 0:
            break
        await asyncio.sleep(0.01)
    assert len(running.server.connection_manager) == 0
    assert await running.server.session_store.count() == 0
    fresh, welcome = await open_client(running, additional_headers={"X-Reconnect-Token": token})
    async with fresh:
        assert welcome["reconnect_rejected"]["reason"] == "invalid_or_expired"


async def test_async_reply_that_cannot_be_encoded_is_internal_error(running: Running) -> None:
    """A handler whose reply holds a value the encoder refuses answers internal_error with the
    request id and a correlation id: never a silent drop or a 1011 close."""

    async def unencodable(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {"value": HUGE}

    def unencodable_sync(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {"value": HUGE}

    running.server.protocol_handler.register_command("unencodable", unencodable)
    running.server.protocol_handler.register_query("unencodable", unencodable_sync)
    ws = await _authed(running)
    async with ws:
        for message in (
            {"type": "command", "action": "unencodable", "id": "u1"},
            {"type": "query", "query_type": "unencodable", "id": "u2"},
        ):
            reply = await request(ws, message)
            assert (reply["error_code"], reply["id"]) == (ErrorCode.INTERNAL_ERROR, message["id"])
            assert len(reply["details"]["correlation_id"]) == 16
        await _usable(ws)


async def test_every_reply_is_followed_by_nothing_unexpected(running: Running) -> None:
    """After the hostile inputs above, no unsolicited frame is pending: one request, one reply."""
    ws = await _authed(running)
    async with ws:
        await ws.send(json.dumps({"type": "heartbeat", "id": HUGE}))
        await ws.send(json.dumps({"type": "heartbeat", "id": 1}))
        first, second = await recv_json(ws), await recv_json(ws)
        assert first["error_code"] == ErrorCode.VALIDATION_ERROR
        assert second["id"] == 1
