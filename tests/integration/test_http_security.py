"""The HTTP side under hostile clients (issue 9, faults 5 and 10), over a real socket.

Validation errors never echo what was submitted, lone surrogates are a 422 (not a 500), login
guesses are throttled per address and per account with backoff but never lock the owner out,
docs are off in production, and the operator endpoints can require a token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.helpers import serve_asgi
from tradewire import Level, WebSocketAPIServer
from tradewire.auth.users import UserStore
from tradewire.http.app import create_http_app
from tradewire.protocol.codes import ErrorCode

LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery"


@asynccontextmanager
async def _http(settings_factory: Callable[..., Any], **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(**overrides)
    UserStore(settings.users_path).add("alice", PASSWORD, Level.TRADER)
    server = WebSocketAPIServer(settings=settings)
    await server.start()
    try:
        async with (
            serve_asgi(create_http_app(server)) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            yield client
    finally:
        await server.stop()


def _from(address: str) -> dict[str, str]:
    """Headers of a request relayed by the trusted proxy (127.0.0.1) for ``address``."""
    return {"x-forwarded-for": address}


async def _login(client: httpx.AsyncClient, password: str, address: str | None = None) -> httpx.Response:
    headers = _from(address) if address else {}
    return await client.post(LOGIN, json={"username": "alice", "password": password}, headers=headers)


async def test_validation_errors_name_fields_but_never_echo_values(
    settings_factory: Callable[..., Any],
) -> None:
    """A 422 lists path and rule only: the submitted password does not come back."""
    marker = "hunter2-" + "x" * 1100
    async with _http(settings_factory) as client:
        response = await client.post(LOGIN, json={"username": "alice", "password": marker})
        assert response.status_code == 422
        body = response.json()
        assert body["error_code"] == ErrorCode.VALIDATION_ERROR
        assert body["details"]["errors"] == [{"path": "body.password", "reason": "string_too_long"}]
        assert "hunter2" not in response.text
        missing = await client.post(LOGIN, json={"username": "alice"})
        assert missing.json()["details"]["errors"] == [{"path": "body.password", "reason": "missing"}]
        broken = await client.post(LOGIN, content=b"{hunter2", headers={"content-type": "application/json"})
        assert broken.status_code == 422 and "hunter2" not in broken.text


async def test_lone_surrogates_in_a_login_body_are_422_not_500(settings_factory: Callable[..., Any]) -> None:
    async with _http(settings_factory) as client:
        for raw in (
            rb'{"username":"alice","password":"a\ud83d"}',
            rb'{"username":"al\ud83dice","password":"whatever-123"}',
            rb'{"username":"al\u0000ice","password":"whatever-123"}',
        ):
            response = await client.post(LOGIN, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 422, raw
            assert response.json()["error_code"] == ErrorCode.VALIDATION_ERROR


async def test_a_third_party_cannot_lock_the_owner_out(settings_factory: Callable[..., Any]) -> None:
    """Wrong passwords for alice from 10.0.0.66 back off that address only; alice from her own
    address logs in at once."""
    async with _http(settings_factory, trusted_proxies=["127.0.0.0/8"], auth_free_failures=3) as client:
        codes = [(await _login(client, "guess-123", "10.0.0.66")).status_code for _ in range(6)]
        assert codes[:3] == [401, 401, 401]
        assert set(codes[3:]) == {429}
        throttled = await _login(client, "guess-123", "10.0.0.66")
        assert int(throttled.headers["retry-after"]) >= 1
        assert throttled.json()["error_code"] == ErrorCode.RATE_LIMIT_EXCEEDED
        owner = await _login(client, PASSWORD, "10.0.0.7")
        assert owner.status_code == 200


async def test_success_resets_the_backoff(settings_factory: Callable[..., Any]) -> None:
    async with _http(settings_factory, auth_free_failures=2, auth_backoff_base=0.001) as client:
        for _ in range(2):
            assert (await _login(client, "typo-typo")).status_code == 401
        assert (await _login(client, PASSWORD)).status_code == 200
        assert [(await _login(client, "typo-typo")).status_code for _ in range(2)] == [401, 401]


async def test_distributed_guessing_is_capped_but_known_addresses_still_log_in(
    settings_factory: Callable[..., Any],
) -> None:
    """Past the per-account cap, new addresses get 429 for that account; the address alice
    logged in from before still works, and other accounts are unaffected."""
    async with _http(
        settings_factory, trusted_proxies=["127.0.0.0/8"], auth_account_failures_per_hour=3
    ) as client:
        assert (await _login(client, PASSWORD, "10.0.0.7")).status_code == 200
        for n in range(3):
            assert (await _login(client, "guess-123", f"10.9.0.{n}")).status_code == 401
        assert (await _login(client, "guess-123", "10.9.0.99")).status_code == 429
        assert (await _login(client, PASSWORD, "10.9.0.100")).status_code == 429
        assert (await _login(client, PASSWORD, "10.0.0.7")).status_code == 200
        other = await client.post(
            LOGIN, json={"username": "bob", "password": "guess-123"}, headers=_from("10.9.0.99")
        )
        assert other.status_code == 401


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(settings_factory: Callable[..., Any]) -> None:
    """A client cannot dodge the per-address limit by inventing X-Forwarded-For addresses."""
    async with _http(settings_factory, login_failure_burst=3, auth_free_failures=100) as client:
        codes = []
        for n in range(5):
            response = await client.post(
                LOGIN, json={"username": f"user{n}", "password": "guess-123"}, headers=_from(f"10.1.0.{n}")
            )
            codes.append(response.status_code)
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429]


async def test_docs_are_off_in_production_and_configurable(settings_factory: Callable[..., Any]) -> None:
    async with _http(settings_factory, mode="production") as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 404, path
    async with _http(settings_factory, mode="production", http_docs=True) as client:
        assert (await client.get("/openapi.json")).status_code == 200
    async with _http(settings_factory) as client:  # dev
        assert (await client.get("/docs")).status_code == 200


async def test_operator_endpoints_require_the_ops_token_when_set(
    settings_factory: Callable[..., Any],
) -> None:
    token = "ops-" + "Zq3xT9vLm2Kp8Rw5Yb7Nc4Hd6Jf1Gs0E"
    async with _http(settings_factory, ops_token=token) as client:
        for path in ("/stats", "/metrics"):
            denied = await client.get(path)
            assert denied.status_code == 401, path
            assert denied.json()["error_code"] == ErrorCode.AUTHENTICATION_REQUIRED
            wrong = await client.get(path, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            allowed = await client.get(path, headers={"authorization": f"Bearer {token}"})
            assert allowed.status_code == 200, path
        assert (await client.get("/health")).status_code == 200  # load balancers need no token
