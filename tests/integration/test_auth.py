"""Authentication over a real socket: JWT checks, refresh, expiry on a live connection."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt

from tests.helpers import SECRET, Running, open_client, recv_json, request, run_server, wait_closed
from tradewire import Level


def _forge(claims: dict[str, Any], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _alg_none(claims: dict[str, Any]) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


async def test_auth_success_reports_user_permissions_and_expiry(running: Running) -> None:
    ws, _ = await open_client(running)
    async with ws:
        reply = await request(ws, {"type": "auth", "token": running.token("bob", Level.BASIC), "id": 1})
        assert reply["status"] == "authenticated"
        assert reply["user_id"] == "bob"
        assert reply["level"] == "basic"
        assert "read_market_data" in reply["permissions"]
        assert "read_signals" not in reply["permissions"]
        assert reply["expires_at"].endswith("Z")


async def test_bad_tokens_are_rejected_with_invalid_token(running: Running) -> None:
    """Wrong key, alg none, missing exp, missing sub, bad level, garbage: all invalid_token."""
    now = int(time.time())
    good = {"sub": "eve", "exp": now + 600, "level": "admin"}
    cases = {
        "wrong key": _forge(good, key="another-secret-that-is-also-long-enough-0000"),
        "alg none": _alg_none(good),
        "missing exp": _forge({"sub": "eve", "level": "admin"}),
        "missing sub": _forge({"exp": now + 600}),
        "unknown level": _forge({**good, "level": "god"}),
        "garbage": "not.a.jwt",
    }
    ws, _ = await open_client(running)
    async with ws:
        for name, token in cases.items():
            reply = await request(ws, {"type": "auth", "token": token, "id": name})
            assert reply["error_code"] == "invalid_token", name
            assert reply["id"] == name
        status = await request(ws, {"type": "command", "action": "get_status", "id": "after"})
        assert status["error_code"] == "authentication_required"


async def test_expired_token_is_refused_as_token_expired(running: Running) -> None:
    ws, _ = await open_client(running)
    async with ws:
        reply = await request(ws, {"type": "auth", "token": running.token(ttl=-60), "id": 1})
        assert reply["error_code"] == "token_expired"


async def test_failed_reauth_keeps_existing_authentication(running: Running) -> None:
    ws, _ = await open_client(running)
    async with ws:
        await request(ws, {"type": "auth", "token": running.token()})
        assert (await request(ws, {"type": "auth", "token": "bad.token.value"}))[
            "error_code"
        ] == "invalid_token"
        status = await request(ws, {"type": "command", "action": "get_status"})
        assert status["data"]["user_id"] == "alice"


async def test_per_user_connection_limit(transport: str, settings_factory: Callable[..., Any]) -> None:
    """The (n+1)-th authenticated connection of one user is refused; other users are not."""
    async with run_server(transport, settings_factory(max_connections_per_user=2)) as r:
        clients = [(await open_client(r))[0] for _ in range(4)]
        try:
            for ws in clients[:2]:
                assert (await request(ws, {"type": "auth", "token": r.token()}))["status"] == "authenticated"
            refused = await request(clients[2], {"type": "auth", "token": r.token(), "id": 1})
            assert refused["error_code"] == "connection_limit_exceeded"
            other = await request(clients[3], {"type": "auth", "token": r.token("carol")})
            assert other["status"] == "authenticated"
            await clients[0].close()
            await wait_closed(clients[0])
            for _ in range(50):
                if r.server.connection_manager.user_connections("alice") < 2:
                    break
                await asyncio.sleep(0.02)
            again = await request(clients[2], {"type": "auth", "token": r.token()})
            assert again["status"] == "authenticated"
        finally:
            for ws in clients:
                await ws.close()


async def test_live_token_expiry_drops_privileges_then_closes_4001(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """At exp the client gets token_expired and loses access; after the grace period, 4001."""
    async with run_server(transport, settings_factory(token_expiry_grace=0.5)) as r:
        ws, _ = await open_client(r)
        async with ws:
            await request(ws, {"type": "auth", "token": r.token(ttl=1)})
            notice = await recv_json(ws, timeout=3)
            assert notice["error_code"] == "token_expired"
            assert "id" not in notice
            denied = await request(ws, {"type": "command", "action": "get_status", "id": 1})
            assert denied["error_code"] == "authentication_required"
            assert await wait_closed(ws) == 4001


async def test_reauth_within_grace_keeps_the_connection(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    async with run_server(transport, settings_factory(token_expiry_grace=0.6)) as r:
        ws, _ = await open_client(r)
        async with ws:
            await request(ws, {"type": "auth", "token": r.token(ttl=1)})
            assert (await recv_json(ws, timeout=3))["error_code"] == "token_expired"
            assert (await request(ws, {"type": "auth", "token": r.token()}))["status"] == "authenticated"
            await asyncio.sleep(1.0)
            status = await request(ws, {"type": "command", "action": "get_status", "id": 2})
            assert status["data"]["authenticated"] is True
