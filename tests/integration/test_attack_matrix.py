"""Attack matrix (issue 9): each attack with its expected answer, on both endpoints, real sockets.

JWT forgeries, privilege escalation per message type × level (every type the router serves, with
the reference engine behind it), reconnect-token forgery/reuse/replay, CSWSH (Origin) and
X-Forwarded-For spoofing. Transport attacks (slowloris, floods, compression bombs) live with the
transport tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.helpers import SECRET, Running, open_client, recv_json, request, serve_asgi
from tradewire import Level, Settings, WebSocketAPIServer
from tradewire.auth.permissions import Permission, permissions_for
from tradewire.engine.controller import EmbeddedEngine
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import MessageType

NONE_HEADER = b'{"alg":"none","typ":"JWT"}'
DENIALS = {ErrorCode.AUTHENTICATION_REQUIRED.value, ErrorCode.INSUFFICIENT_PERMISSIONS.value}


@asynccontextmanager
async def _serve(transport: str, settings: Settings, engine: bool = False) -> AsyncIterator[Running]:
    """A server on ``transport`` (picows port or ASGI under uvicorn), optionally with the engine."""
    server = WebSocketAPIServer(settings=settings, controller=EmbeddedEngine(settings) if engine else None)
    if transport == "picows":
        await server.start()
        try:
            yield Running(server, server.ws_url, transport)
        finally:
            await server.stop()
        return
    app = FastAPI()
    app.add_api_websocket_route(settings.ws_path, server.fastapi_endpoint)
    async with serve_asgi(app) as port:
        await server.startup_embedded()
        try:
            yield Running(server, f"ws://127.0.0.1:{port}{settings.ws_path}", transport)
        finally:
            await server.stop()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A token signed by hand (PyJWT refuses to sign some of these forgeries itself)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _forgeries() -> dict[str, tuple[str, str]]:
    """name → (token, expected error_code)."""
    now = int(time.time())
    good = {"sub": "eve", "exp": now + 600, "level": "basic"}
    admin = {**good, "level": "admin"}
    valid_basic = jwt.encode(good, SECRET, algorithm="HS256")
    header, _, signature = valid_basic.split(".")
    tampered = f"{header}.{_b64(json.dumps(admin).encode())}.{signature}"
    invalid, expired = ErrorCode.INVALID_TOKEN.value, ErrorCode.TOKEN_EXPIRED.value
    return {
        "alg none": (f"{_b64(NONE_HEADER)}.{_b64(json.dumps(admin).encode())}.", invalid),
        "wrong key": (
            jwt.encode(admin, "not-the-server-secret-but-long-enough-000", algorithm="HS256"),
            invalid,
        ),
        "HS384 with the right key": (jwt.encode(admin, SECRET, algorithm="HS384"), invalid),
        "tampered payload (basic → admin)": (tampered, invalid),
        "expired": (jwt.encode({**admin, "exp": now - 60}, SECRET, algorithm="HS256"), expired),
        "nbf in the future": (jwt.encode({**admin, "nbf": now + 600}, SECRET, algorithm="HS256"), invalid),
        "iat in the future": (jwt.encode({**admin, "iat": now + 600}, SECRET, algorithm="HS256"), invalid),
        "missing sub": (jwt.encode({"exp": now + 600, "level": "admin"}, SECRET, algorithm="HS256"), invalid),
        "missing exp": (jwt.encode({"sub": "eve", "level": "admin"}, SECRET, algorithm="HS256"), invalid),
        "exp in milliseconds": (
            jwt.encode({**admin, "exp": (now + 600) * 1000}, SECRET, algorithm="HS256"),
            invalid,
        ),
        "unknown level": (jwt.encode({**good, "level": "root"}, SECRET, algorithm="HS256"), invalid),
        "kid pointing elsewhere": (
            _hs256({"alg": "HS256", "kid": "../../dev/null"}, admin, b"attacker-key-attacker-key-0000"),
            invalid,
        ),
        "garbage": ("not.a.jwt", invalid),
    }


async def test_jwt_forgeries_are_refused(running: Running) -> None:
    """Every forgery gets its code with the request id, and the connection stays anonymous."""
    ws, _ = await open_client(running)
    async with ws:
        for name, (token, code) in _forgeries().items():
            reply = await request(ws, {"type": "auth", "token": token, "id": name})
            assert (reply.get("error_code"), reply.get("id")) == (code, name), name
        status = await request(ws, {"type": "command", "action": "get_status"})
        assert status["error_code"] == ErrorCode.AUTHENTICATION_REQUIRED
        for token in ("", "x" * 8193):
            assert (await request(ws, {"type": "auth", "token": token}))["error_code"] == "validation_error"


async def test_hs256_token_signed_with_the_rs256_public_key_is_refused(
    transport: str, tmp_path: Path, settings_factory: Callable[..., Any]
) -> None:
    """Algorithm confusion: the server's public key used as an HMAC secret."""
    private = rsa.generate_private_key(65537, 2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(public_pem)
    settings = settings_factory(
        jwt_algorithm="RS256", jwt_public_key_file=tmp_path / "pub.pem", jwt_secret=None
    )
    claims = {"sub": "eve", "exp": int(time.time()) + 600, "level": "admin"}
    async with _serve(transport, settings) as r:
        ws, _ = await open_client(r)
        async with ws:
            confused = _hs256({"alg": "HS256", "typ": "JWT"}, claims, public_pem)
            assert (await request(ws, {"type": "auth", "token": confused}))["error_code"] == "invalid_token"
            genuine = jwt.encode(claims, private, algorithm="RS256")
            assert (await request(ws, {"type": "auth", "token": genuine}))["status"] == "authenticated"


# ---------------------------------------------------------------------- privilege escalation
AUTH = "authenticated"  # any authenticated user
PUBLIC = None

# (label, message, what it needs). Messages are chosen to have no lasting side effect.
MATRIX: list[tuple[str, dict[str, Any], Permission | str | None]] = [
    ("handshake", {"type": "handshake"}, PUBLIC),
    ("heartbeat", {"type": "heartbeat"}, PUBLIC),
    ("subscribe market_data", {"type": "subscribe", "stream": "market_data"}, Permission.READ_MARKET_DATA),
    ("subscribe indicators", {"type": "subscribe", "stream": "indicators"}, Permission.READ_INDICATORS),
    ("subscribe signals", {"type": "subscribe", "stream": "signals"}, Permission.READ_SIGNALS),
    (
        "subscribe execution_status",
        {"type": "subscribe", "stream": "execution_status"},
        Permission.READ_SESSIONS,
    ),
    (
        "subscribe execution_result",
        {"type": "subscribe", "stream": "execution_result"},
        Permission.READ_SESSIONS,
    ),
    ("subscribe state_machines", {"type": "subscribe", "stream": "state_machines"}, Permission.READ_SIGNALS),
    ("subscribe orders", {"type": "subscribe", "stream": "orders"}, Permission.READ_SIGNALS),
    ("subscribe positions", {"type": "subscribe", "stream": "positions"}, Permission.READ_SIGNALS),
    ("subscribe health_check", {"type": "subscribe", "stream": "health_check"}, AUTH),
    ("unsubscribe", {"type": "unsubscribe", "stream": "orders"}, AUTH),
    ("command get_status", {"type": "command", "action": "get_status"}, AUTH),
    ("command health_check", {"type": "command", "action": "health_check"}, AUTH),
    ("command get_stats", {"type": "command", "action": "get_stats"}, Permission.ADMIN),
    ("query server_info", {"type": "query", "query_type": "server_info"}, AUTH),
    ("query indicators", {"type": "query", "query_type": "indicators"}, AUTH),
    ("query datasets", {"type": "query", "query_type": "datasets"}, AUTH),
    ("query symbols", {"type": "query", "query_type": "symbols"}, AUTH),
    (
        "session_start live",
        {"type": "session_start", "session_type": "live", "strategy_config": {}},
        Permission.EXECUTE_LIVE_TRADING,
    ),
    (
        "session_start paper",
        {"type": "session_start", "session_type": "paper", "strategy_config": {}},
        Permission.EXECUTE_PAPER_TRADING,
    ),
    (
        "session_start backtest",
        {"type": "session_start", "session_type": "backtest", "strategy_config": {}},
        Permission.EXECUTE_BACKTEST,
    ),
    ("session_stop", {"type": "session_stop", "session_id": "s1"}, AUTH),
    ("session_status", {"type": "session_status"}, Permission.READ_SESSIONS),
    (
        "collection_start",
        {"type": "collection_start", "symbols": ["BTC-USD"]},
        Permission.MANAGE_COLLECTION,
    ),
    ("collection_stop", {"type": "collection_stop", "collection_id": "c1"}, Permission.MANAGE_COLLECTION),
    ("collection_status", {"type": "collection_status"}, AUTH),
    (
        "results_request",
        {"type": "results_request", "request_type": "collection_list"},
        Permission.READ_RESULTS,
    ),
    ("get_strategies", {"type": "get_strategies"}, AUTH),
    ("get_strategy_status", {"type": "get_strategy_status"}, AUTH),
    ("validate_strategy_config", {"type": "validate_strategy_config", "strategy_config": {}}, AUTH),
    ("upsert_strategy", {"type": "upsert_strategy", "strategy_config": {}}, Permission.MANAGE_STRATEGIES),
    (
        "activate_strategy",
        {"type": "activate_strategy", "strategy_name": "no-such", "symbol": "BTC-USD"},
        Permission.MANAGE_STRATEGIES,
    ),
    (
        "deactivate_strategy",
        {"type": "deactivate_strategy", "strategy_name": "no-such", "symbol": "BTC-USD"},
        Permission.MANAGE_STRATEGIES,
    ),
]


def _expected(level: Level | None, needs: Permission | str | None) -> str:
    if needs is PUBLIC:
        return "allowed"
    if level is None:
        return ErrorCode.AUTHENTICATION_REQUIRED.value
    if isinstance(needs, Permission) and needs not in permissions_for(level):
        return ErrorCode.INSUFFICIENT_PERMISSIONS.value
    return "allowed"


def test_the_matrix_covers_every_message_type() -> None:
    covered = {message["type"] for _, message, _ in MATRIX} | {MessageType.AUTH.value}
    assert covered == {t.value for t in MessageType}


@pytest.mark.parametrize("level", [None, Level.BASIC, Level.TRADER, Level.PREMIUM, Level.ADMIN])
async def test_privileges_per_message_type_and_level(
    transport: str, settings_factory: Callable[..., Any], level: Level | None
) -> None:
    """Anonymous: only auth/handshake/heartbeat. Each level: exactly its permissions."""
    settings = settings_factory(synthetic_symbols=[])
    async with _serve(transport, settings, engine=True) as r:
        ws, _ = await open_client(r)
        async with ws:
            if level is not None:
                assert (await request(ws, {"type": "auth", "token": r.token(level=level)}))["level"] == level
            outcomes = {}
            for label, message, _ in MATRIX:
                reply = await _reply_to(ws, {**message, "id": label})
                code = reply.get("error_code")
                outcomes[label] = code if code in DENIALS else "allowed"
            expected = {label: _expected(level, needs) for label, _, needs in MATRIX}
            assert outcomes == expected


async def _reply_to(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """The direct reply to ``message`` (stream frames that a subscription brings are skipped)."""
    await ws.send(json.dumps(message))
    while True:
        frame = await recv_json(ws)
        if frame.get("id") == message["id"]:
            return frame
        assert frame.get("type") == "data", frame


# ---------------------------------------------------------------------- reconnect tokens
async def _saved_session(r: Running, user: str = "alice") -> dict[str, Any]:
    ws, welcome = await open_client(r)
    await request(ws, {"type": "auth", "token": r.token(user)})
    await ws.close()
    for _ in range(200):
        if await r.server.session_store.count() and not r.server.reconnect._saving:
            break
        await _tick()
    return welcome


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.01)


async def _resume(r: Running, token: str, address: str | None = None) -> dict[str, Any]:
    headers = {"X-Reconnect-Token": token}
    if address is not None:
        headers["X-Forwarded-For"] = address
    ws, welcome = await open_client(r, additional_headers=headers)
    await ws.close()
    return welcome


async def test_reconnect_token_forgery_reuse_and_replay(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """Another user's client id with one's own secret, a guessed secret, a replayed token: each a
    fresh anonymous session; the genuine token works once."""
    async with _serve(transport, settings_factory()) as r:
        alice = await _saved_session(r, "alice")
        mallory = await _saved_session(r, "mallory")
        alice_id = alice["client_id"]
        mallory_secret = mallory["reconnect_token"].rpartition(".")[2]
        attempts = {
            "alice's id, mallory's secret": f"{alice_id}.{mallory_secret}",
            "alice's id, guessed secret": f"{alice_id}.{'A' * 32}",
            "truncated": alice["reconnect_token"][:-1],
        }
        for name, token in attempts.items():
            welcome = await _resume(r, token)
            assert welcome["reconnected"] is False, name
            assert welcome["client_id"] != alice_id, name
        genuine = await _resume(r, alice["reconnect_token"])
        assert (genuine["reconnected"], genuine["user_id"]) == (True, "alice")
        replayed = await _resume(r, alice["reconnect_token"])
        assert replayed["reconnected"] is False
        assert replayed["reconnect_rejected"]["reason"] == "invalid_or_expired"


async def test_guessing_tokens_for_a_client_does_not_lock_its_owner_out(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A third party (10.6.6.6) guessing alice's reconnect secret backs off itself; alice
    resumes from her own address."""
    settings = settings_factory(trusted_proxies=["127.0.0.0/8"], auth_free_failures=2, reconnect_burst=50)
    async with _serve(transport, settings) as r:
        alice = await _saved_session(r)
        reasons = [
            (await _resume(r, f"{alice['client_id']}.{'B' * 32}{n}", "10.6.6.6"))["reconnect_rejected"][
                "reason"
            ]
            for n in range(4)
        ]
        assert reasons == ["invalid_or_expired", "invalid_or_expired", "rate_limited", "rate_limited"]
        resumed = await _resume(r, alice["reconnect_token"], "127.0.0.1")
        assert resumed["reconnected"] is True


# ---------------------------------------------------------------------- CSWSH and spoofing
async def test_cross_site_websocket_hijacking_is_refused_before_the_upgrade(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A browser page from another origin gets HTTP 403 (no WebSocket at all); the allowed origin
    and non-browser clients (no Origin) connect."""
    async with _serve(transport, settings_factory(allowed_origins=["https://app.example"])) as r:
        for origin in ("https://evil.example", "null", "https://app.example.evil.example"):
            with pytest.raises(InvalidStatus) as exc:
                await r.connect(origin=origin)
            assert exc.value.response.status_code == 403, origin
        for kwargs in ({"origin": "https://app.example"}, {}):
            ws, welcome = await open_client(r, **kwargs)
            async with ws:
                assert welcome["status"] == "connected"


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        ([], "6.6.6.6", "127.0.0.1"),  # no trusted proxy: the header is ignored
        (["10.0.0.0/8"], "6.6.6.6", "127.0.0.1"),  # the peer is not a trusted proxy
        (["127.0.0.0/8"], "6.6.6.6", "6.6.6.6"),  # relayed by a trusted proxy
        (["127.0.0.0/8"], "1.1.1.1, 6.6.6.6", "6.6.6.6"),  # a client-forged left part is not taken
        (["127.0.0.0/8", "10.0.0.0/8"], "6.6.6.6, 10.0.0.2", "6.6.6.6"),  # chain of trusted proxies
    ],
)
async def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    transport: str, settings_factory: Callable[..., Any], trusted: list[str], forwarded: str, expected: str
) -> None:
    async with _serve(transport, settings_factory(trusted_proxies=trusted)) as r:
        ws, _ = await open_client(r, additional_headers={"X-Forwarded-For": forwarded})
        async with ws:
            await request(ws, {"type": "auth", "token": r.token()})
            status = await request(ws, {"type": "command", "action": "get_status"})
            assert status["data"]["address"] == expected
