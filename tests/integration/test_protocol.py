"""Protocol messages over a real socket, on both transports (picows engine and ASGI adapter)."""

from __future__ import annotations

import asyncio
import json

from tests.helpers import Running, open_client, recv_json, request
from tradewire import Level


async def test_welcome_has_the_documented_shape(running: Running) -> None:
    """The first frame is the §3.1 welcome with a fresh client id."""
    ws, welcome = await open_client(running)
    async with ws:
        assert welcome["type"] == "status"
        assert welcome["status"] == "connected"
        assert welcome["client_id"].startswith("c_")
        assert "reconnect_token" in welcome
        assert welcome["protocol_version"] == "1.0"
        assert welcome["heartbeat_interval"] == running.server.settings.heartbeat_interval
        assert welcome["reconnected"] is False
        assert "heartbeat" in welcome["features"]
        assert welcome["server_time"].endswith("Z")
        assert "id" not in welcome
    ws2, welcome2 = await open_client(running)
    async with ws2:
        assert welcome2["client_id"] != welcome["client_id"]


async def test_heartbeat_echoes_integer_and_string_ids(running: Running) -> None:
    """A heartbeat gets a pong carrying the request's id, whatever its JSON type."""
    ws, _ = await open_client(running)
    async with ws:
        pong = await request(ws, {"type": "heartbeat", "id": 41})
        assert pong["type"] == "status"
        assert pong["status"] == "pong"
        assert pong["id"] == 41
        assert "server_time" in pong
        pong = await request(ws, {"type": "heartbeat", "id": "req-7"})
        assert pong["id"] == "req-7"
        pong = await request(ws, {"type": "heartbeat"})
        assert "id" not in pong


async def test_handshake_accepts_v1_and_rejects_v2(running: Running) -> None:
    """Major version 1 is accepted with the common capabilities; 2 is rejected with a reason."""
    ws, _ = await open_client(running)
    async with ws:
        ack = await request(
            ws, {"type": "handshake", "id": 1, "version": "1.0", "capabilities": ["heartbeat", "x"]}
        )
        assert ack["type"] == "handshake_ack"
        assert ack["accepted"] is True
        assert ack["capabilities"] == ["heartbeat"]
        assert ack["id"] == 1
        ack = await request(ws, {"type": "handshake", "id": 2, "version": "2.0"})
        assert ack["accepted"] is False
        assert ack["status"] == "rejected"
        assert "2.0" in ack["reason"]


async def test_bad_inputs_get_typed_errors_and_the_connection_survives(running: Running) -> None:
    """Malformed JSON, unknown type, wrong types and oversize fields: one envelope each, no close."""
    ws, _ = await open_client(running)
    async with ws:
        err = await request(ws, "{not json")
        assert err["error_code"] == "invalid_json"
        assert "id" not in err
        err = await request(ws, "[1, 2]")
        assert err["error_code"] == "validation_error"
        err = await request(ws, {"type": "teleport", "id": "u1"})
        assert (err["error_code"], err["id"]) == ("unknown_message_type", "u1")
        err = await request(ws, {"type": "auth", "token": 12, "id": 5})
        assert err["error_code"] == "validation_error"
        assert err["details"]["path"] == "$.token"
        assert err["id"] == 5
        err = await request(ws, {"type": "auth", "token": "x" * 9000, "id": 6})
        assert err["error_code"] == "validation_error"
        assert err["details"]["path"] == "$.token"
        err = await request(ws, {"type": "heartbeat", "id": "i" * 65})
        assert err["error_code"] == "validation_error"
        assert "id" not in err
        err = await request(ws, {"id": 3})
        assert err["error_code"] == "validation_error"
        assert err["id"] == 3
        err = await request(ws, {"type": "auth", "id": 4})
        assert (err["error_code"], err["details"]["missing"], err["id"]) == (
            "missing_parameters",
            ["token"],
            4,
        )
        pong = await request(ws, {"type": "heartbeat", "id": 99})
        assert pong["status"] == "pong"
        assert pong["id"] == 99


async def test_unauthenticated_clients_may_only_auth_handshake_heartbeat(running: Running) -> None:
    """Everything else answers authentication_required, with the id echoed."""
    ws, _ = await open_client(running)
    async with ws:
        for message in (
            {"type": "command", "action": "get_status", "id": 1},
            {"type": "query", "query_type": "server_info", "id": 2},
            {"type": "subscribe", "stream": "market_data", "id": 3},
            {"type": "get_strategies", "id": 4},
        ):
            err = await request(ws, message)
            assert err["error_code"] == "authentication_required"
            assert err["id"] == message["id"]


async def test_commands_and_queries_after_auth(running: Running) -> None:
    """get_status, health_check and server_info answer with their documented shapes."""
    ws, welcome = await open_client(running)
    async with ws:
        auth = await request(ws, {"type": "auth", "token": running.token(), "id": "a"})
        assert auth["status"] == "authenticated"
        status = await request(ws, {"type": "command", "action": "get_status", "id": 1})
        assert status["status"] == "success"
        assert status["command"] == "get_status"
        assert status["data"]["client_id"] == welcome["client_id"]
        assert status["data"]["user_id"] == "alice"
        health = await request(ws, {"type": "command", "action": "health_check", "id": 2})
        assert health["data"]["status"] == "healthy"
        info = await request(ws, {"type": "query", "query_type": "server_info", "id": 3})
        assert info["status"] == "query_result"
        assert "heartbeat" in info["data"]["message_types"]
        err = await request(ws, {"type": "command", "action": "launch_rocket", "id": 4})
        assert err["error_code"] == "unknown_command"
        assert "get_status" in err["details"]["available"]


async def test_components_not_yet_built_answer_service_unavailable(running: Running) -> None:
    """Valid messages for absent components go through the router and say which is missing."""
    ws, _ = await open_client(running)
    async with ws:
        await request(ws, {"type": "auth", "token": running.token()})
        err = await request(ws, {"type": "session_stop", "session_id": "s1", "id": 9})
        assert err["error_code"] == "service_unavailable"
        assert err["details"]["component"] == "sessions"
        assert err["id"] == 9
        err = await request(ws, {"type": "session_start", "session_type": "warp", "strategy_config": {}})
        assert err["error_code"] == "validation_error"
        assert err["details"]["path"] == "$.session_type"


async def test_permission_denied_for_admin_command(running: Running) -> None:
    """A trader may not run the admin-only get_stats command; an admin may."""
    ws, _ = await open_client(running)
    async with ws:
        await request(ws, {"type": "auth", "token": running.token(level=Level.TRADER)})
        err = await request(ws, {"type": "command", "action": "get_stats", "id": 1})
        assert err["error_code"] == "insufficient_permissions"
        assert err["details"]["required"] == "admin"
        await request(ws, {"type": "auth", "token": running.token("root", Level.ADMIN)})
        stats = await request(ws, {"type": "command", "action": "get_stats", "id": 2})
        assert stats["data"]["connections"]["current"] >= 1


async def test_slow_handler_blocks_neither_heartbeats_nor_other_clients(running: Running) -> None:
    """A request that takes 0.5 s runs beside heartbeats; replies keep their ids."""

    async def slow(conn: object, params: dict[str, object]) -> dict[str, object]:
        await asyncio.sleep(0.5)
        return {"slept": True}

    running.server.protocol_handler.register_command("slow", slow)
    ws, _ = await open_client(running)
    other, _ = await open_client(running)
    async with ws, other:
        await request(ws, {"type": "auth", "token": running.token()})
        await ws.send(json.dumps({"type": "command", "action": "slow", "id": "slow-1"}))
        await ws.send(json.dumps({"type": "heartbeat", "id": "hb-1"}))
        first = await recv_json(ws, timeout=0.4)
        assert first["id"] == "hb-1"
        pong = await request(other, {"type": "heartbeat", "id": 1})
        assert pong["id"] == 1
        second = await recv_json(ws)
        assert second["id"] == "slow-1"
        assert second["data"] == {"slept": True}


async def test_handler_failure_becomes_internal_error_without_exception_text(running: Running) -> None:
    """An exception inside a handler yields internal_error with a correlation id only."""

    def broken(conn: object, params: dict[str, object]) -> None:
        raise ValueError("secret database password in message")

    running.server.protocol_handler.register_command("broken", broken)
    ws, _ = await open_client(running)
    async with ws:
        await request(ws, {"type": "auth", "token": running.token()})
        err = await request(ws, {"type": "command", "action": "broken", "id": 1})
        assert err["error_code"] == "internal_error"
        assert "secret" not in json.dumps(err)
        assert len(err["details"]["correlation_id"]) == 16
        assert (await request(ws, {"type": "heartbeat", "id": 2}))["id"] == 2
