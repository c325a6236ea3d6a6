"""The HTTP side over a real socket: health, stats, metrics, login, OpenAPI, WS on the HTTP port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.helpers import TIMEOUT, recv_json, request, serve_asgi
from tradewire import Level, WebSocketAPIServer
from tradewire.auth.users import UserStore
from tradewire.http.app import create_http_app


@pytest.fixture
async def http_server(settings_factory: Callable[..., Any]) -> AsyncIterator[tuple[WebSocketAPIServer, str]]:
    settings = settings_factory()
    UserStore(settings.users_path).add("alice", "correct horse battery", Level.TRADER)
    server = WebSocketAPIServer(settings=settings)
    await server.start()
    try:
        async with serve_asgi(create_http_app(server)) as port:
            yield server, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def test_health_stats_and_metrics(http_server: tuple[WebSocketAPIServer, str]) -> None:
    _, base = http_server
    async with httpx.AsyncClient(base_url=base) as client:
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json()["components"]["websocket"]["listening"] is True
        stats = (await client.get("/stats")).json()
        assert stats["connections"]["current"] == 0
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "tradewire_connections 0.0" in metrics.text
        assert "process_cpu_seconds_total" in metrics.text
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "tradewire"


async def test_health_reports_unhealthy_once_stopped(http_server: tuple[WebSocketAPIServer, str]) -> None:
    server, base = http_server
    await server.stop()
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "unhealthy"


async def test_login_issues_a_token_that_authenticates_on_the_websocket(
    http_server: tuple[WebSocketAPIServer, str],
) -> None:
    server, base = http_server
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "correct horse battery"}
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["user_id"], body["level"], body["token_type"]) == ("alice", "trader", "bearer")
        wrong = await client.post("/api/v1/auth/login", json={"username": "alice", "password": "nope-nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error_code"] == "invalid_credentials"
        unknown = await client.post("/api/v1/auth/login", json={"username": "zed", "password": "whatever1"})
        assert unknown.status_code == 401
        invalid = await client.post("/api/v1/auth/login", json={"username": ""})
        assert invalid.status_code == 422
    async with _connect(server.ws_url) as ws:
        await recv_json(ws)
        reply = await request(ws, {"type": "auth", "token": body["access_token"]})
        assert reply["user_id"] == "alice"


async def test_login_attempts_are_rate_limited(http_server: tuple[WebSocketAPIServer, str]) -> None:
    _, base = http_server
    async with httpx.AsyncClient(base_url=base) as client:
        attempt = {"username": "alice", "password": "guess-123"}
        codes = [(await client.post("/api/v1/auth/login", json=attempt)).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5
    assert 429 in codes[5:]


async def test_websocket_also_served_on_the_http_port(http_server: tuple[WebSocketAPIServer, str]) -> None:
    _, base = http_server
    async with _connect(base.replace("http://", "ws://") + "/ws") as ws:
        welcome = await recv_json(ws)
        assert welcome["status"] == "connected"
        assert (await request(ws, {"type": "heartbeat", "id": 1}))["id"] == 1


def _connect(url: str) -> Any:
    return connect(url, open_timeout=TIMEOUT)
