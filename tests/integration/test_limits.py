"""Limits over a real socket: size, rate, capacity, idle, slow consumer, origin, shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.helpers import TIMEOUT, open_client, open_stalling_client, request, run_server, wait_closed


async def test_oversize_message_closes_1009(transport: str, settings_factory: Callable[..., Any]) -> None:
    """A message over max_message_size closes the connection with 1009; others are unaffected."""
    async with run_server(transport, settings_factory(max_message_size=4096)) as r:
        ws, _ = await open_client(r)
        other, _ = await open_client(r)
        async with ws, other:
            assert (await request(ws, {"type": "heartbeat", "pad": "x" * 3000}))["status"] == "pong"
            await ws.send(json.dumps({"type": "heartbeat", "pad": "x" * 5000}))
            assert await wait_closed(ws) == 1009
            assert (await request(other, {"type": "heartbeat", "id": 1}))["id"] == 1


async def test_rate_limit_replies_then_closes_4029_on_abuse(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """Past the burst each message gets rate_limit_exceeded; continuing closes with 4029."""
    settings = settings_factory(rate_limit_per_minute=60, rate_limit_burst=5, rate_limit_strikes=10)
    async with run_server(transport, settings) as r:
        ws, _ = await open_client(r)
        async with ws:
            for i in range(5):
                assert (await request(ws, {"type": "heartbeat", "id": i}))["status"] == "pong"
            limited = await request(ws, {"type": "heartbeat", "id": "over"})
            assert limited["error_code"] == "rate_limit_exceeded"
            assert limited["id"] == "over"
            assert 0 < limited["details"]["retry_after"] <= 1.0
            for _ in range(20):
                await ws.send(json.dumps({"type": "heartbeat"}))
            assert await wait_closed(ws) == 4029


async def test_capacity_closes_1013(transport: str, settings_factory: Callable[..., Any]) -> None:
    """Over max_connections the new client is closed with 1013 and no welcome."""
    async with run_server(transport, settings_factory(max_connections=2)) as r:
        first, _ = await open_client(r)
        second, _ = await open_client(r)
        async with first, second:
            third = await r.connect()
            assert await wait_closed(third) == 1013
            assert r.server.get_stats()["connections"]["rejected"]["capacity"] == 1
            assert (await request(first, {"type": "heartbeat", "id": 1}))["id"] == 1


async def test_silent_client_is_closed_4000_and_a_heartbeating_one_is_not(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """With heartbeat_interval 0.2 s a client silent for 0.6 s is closed; one sending heartbeats stays."""
    settings = settings_factory(heartbeat_interval=0.2, ping_interval=30)
    async with run_server(transport, settings) as r:
        silent, _ = await open_client(r, ping_interval=None)
        alive, _ = await open_client(r, ping_interval=None)
        async with silent, alive:
            for _ in range(10):
                await request(alive, {"type": "heartbeat"})
                await asyncio.sleep(0.1)
            assert silent.close_code == 4000
            assert (await request(alive, {"type": "heartbeat", "id": "still"}))["id"] == "still"


async def test_server_pings_keep_a_quiet_client_alive(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A client that only answers the server's pings (pongs count as traffic) stays connected."""
    settings = settings_factory(heartbeat_interval=0.3, ping_interval=0.1)
    async with run_server(transport, settings) as r:
        ws, _ = await open_client(r, ping_interval=None)
        async with ws:
            reader = asyncio.create_task(ws.recv())  # keep reading so pongs are sent
            await asyncio.sleep(1.5)
            assert not reader.done()
            reader.cancel()
            assert (await request(ws, {"type": "heartbeat", "id": 1}))["id"] == 1


async def test_client_pings_count_as_traffic(transport: str, settings_factory: Callable[..., Any]) -> None:
    """A client that sends only its own pings (no messages) is not closed 4000, and gets its pongs."""
    settings = settings_factory(heartbeat_interval=0.2, ping_interval=30)
    async with run_server(transport, settings) as r:
        ws, _ = await open_client(r, ping_interval=None)
        async with ws:
            for _ in range(12):  # 1.2 s: twice the idle timeout
                pong = await ws.ping()
                await asyncio.wait_for(pong, TIMEOUT)
                await asyncio.sleep(0.1)
            assert ws.close_code is None
            assert (await request(ws, {"type": "heartbeat", "id": 1}))["id"] == 1


async def test_stalled_reader_gets_4008_while_others_keep_receiving(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    """A client that stops reading overflows its queue and is closed 4008; a reading one is fine.

    The ASGI route bounds it too: uvicorn's websockets-sansio protocol makes ``send`` wait while
    the socket is backed up, so the adapter's own queue fills.
    """
    async with run_server(transport, settings_factory(outbound_queue_bytes=64 * 1024)) as r:
        stalled, welcome = await open_stalling_client(r)
        healthy, healthy_welcome = await open_client(r, max_size=2**20)
        async with stalled, healthy:
            manager = r.server.connection_manager
            payload = json.dumps({"type": "data", "pad": "x" * 200_000}).encode()
            sent = 0
            for _ in range(400):  # bounded: ~80 MB at most, the close comes after a few MB
                if not manager.send(welcome["client_id"], payload):
                    break
                sent += 1
                await asyncio.sleep(0)
            conn_closed = manager.get(welcome["client_id"])
            assert conn_closed is None or conn_closed.close_code == 4008
            assert sent < 400
            assert manager.send(healthy_welcome["client_id"], b'{"type":"data","n":1}')
            assert json.loads(await asyncio.wait_for(healthy.recv(), TIMEOUT)) == {"type": "data", "n": 1}
            assert await wait_closed(stalled, timeout=TIMEOUT * 2) == 4008
            assert r.server.get_stats()["closes"]["4008"] == 1


async def test_origin_allow_list(transport: str, settings_factory: Callable[..., Any]) -> None:
    """A browser Origin not on the list is refused before the upgrade (403); a listed one works."""
    settings = settings_factory(allowed_origins="https://desk.example.com, https://ops.example.com")
    async with run_server(transport, settings) as r:
        with pytest.raises(InvalidStatus) as refused:
            await r.connect(origin="https://evil.example.net")
        assert refused.value.response.status_code == 403
        ws, welcome = await open_client(r, origin="https://ops.example.com")
        async with ws:
            assert welcome["status"] == "connected"
        assert r.server.get_stats()["connections"]["rejected"]["origin"] == 1


async def test_stop_closes_clients_with_1001(transport: str, settings_factory: Callable[..., Any]) -> None:
    """A graceful stop() sends 1001 (going away: reconnect) to every client."""
    async with run_server(transport, settings_factory()) as r:
        clients = [(await open_client(r))[0] for _ in range(3)]
        await r.server.stop()
        codes = await asyncio.gather(*(wait_closed(ws) for ws in clients))
        assert codes == [1001, 1001, 1001]
        assert len(r.server.connection_manager) == 0


async def test_forwarded_for_is_trusted_only_from_configured_proxies(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    headers = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}
    async with run_server(transport, settings_factory(trusted_proxies="127.0.0.0/8")) as r:
        ws, welcome = await open_client(r, additional_headers=headers)
        async with ws:
            conn = r.server.connection_manager.get(welcome["client_id"])
            assert conn is not None
            assert conn.info.address == "203.0.113.9"
    async with run_server(transport, settings_factory()) as r:
        ws, welcome = await open_client(r, additional_headers=headers)
        async with ws:
            conn = r.server.connection_manager.get(welcome["client_id"])
            assert conn is not None
            assert conn.info.address == "127.0.0.1"
