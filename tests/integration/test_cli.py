"""The ``tradewire`` command as a user runs it: token, users add, serve, refusal in production."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
from websockets.asyncio.client import connect

from tests.helpers import SECRET, TIMEOUT

CLI = [sys.executable, "-m", "tradewire.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    env.update({"TRADEWIRE_DATA_DIR": str(tmp_path), **extra})
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_token_is_signed_with_the_configured_secret(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CLI, "token", "--user", "bot-1", "--level", "premium", "--ttl", "120"],
        env=_env(tmp_path, TRADEWIRE_JWT_SECRET=SECRET),
        capture_output=True,
        text=True,
        check=True,
    )
    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["level"]) == ("bot-1", "premium")
    assert 100 <= claims["exp"] - claims["iat"] <= 120


def test_users_add_writes_a_hash(tmp_path: Path) -> None:
    subprocess.run(
        [*CLI, "users", "add", "alice", "--level", "trader", "--password-stdin"],
        env=_env(tmp_path),
        input="a long enough password\n",
        capture_output=True,
        text=True,
        check=True,
    )
    users = json.loads((tmp_path / "users.json").read_text())["users"]
    assert users["alice"]["level"] == "trader"
    assert users["alice"]["password_hash"].startswith("$argon2id$")


def test_production_without_secret_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--mode", "production", "--ws-port", "0", "--http-port", "0"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "TRADEWIRE_JWT_SECRET" in result.stderr


async def test_serve_runs_both_servers_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``tradewire serve`` in dev mode: generated secret, /health, WebSocket, dev token, clean exit."""
    ws_port, http_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--ws-port", str(ws_port), "--http-port", str(http_port), "--log-format", "json"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"http://127.0.0.1:{http_port}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("server did not become healthy")
        token = subprocess.run(
            [*CLI, "token", "--user", "dev"], env=_env(tmp_path), capture_output=True, text=True, check=True
        ).stdout.strip()
        async with connect(f"ws://127.0.0.1:{ws_port}/ws", open_timeout=TIMEOUT) as ws:
            assert json.loads(await ws.recv())["status"] == "connected"
            await ws.send(json.dumps({"type": "auth", "token": token, "id": 1}))
            assert json.loads(await ws.recv())["status"] == "authenticated"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TIMEOUT * 2)
    assert proc.returncode == 0
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "server.ready" in events
    assert "auth.dev_secret" in events
    assert "server.stopped" in events


def test_data_import_stores_a_dataset(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "src/tradewire/engine/sample_data/GOOG.csv"
    out = subprocess.run(
        [*CLI, "data", "import", str(sample), "--symbol", "GOOG"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert (summary["symbol"], summary["kind"], summary["rows"]) == ("GOOG", "ohlcv", 2148)
    assert (tmp_path / "tradewire.db").is_file()
    missing = subprocess.run(
        [*CLI, "data", "import", str(tmp_path / "nope.csv"), "--symbol", "X"], env=_env(tmp_path)
    )
    assert missing.returncode == 1


def test_token_help_shows_only_its_own_options() -> None:
    out = subprocess.run([*CLI, "token", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--data-dir" in out and "--config" in out and "--ttl" in out
    assert "--ws-port" not in out and "--jwt-secret" not in out and "--max-connections" not in out


async def test_a_token_from_another_data_dir_is_refused_naming_the_key(tmp_path: Path) -> None:
    """Two data directories, two dev secrets: the refusal names the server's key fingerprint,
    and `tradewire token` said which key it signed with — so the mismatch is visible."""
    from tests.helpers import make_settings, run_picows

    minted = subprocess.run(
        [*CLI, "token", "--user", "alice", "--data-dir", str(tmp_path / "a")],
        env=_env(tmp_path / "unused"),
        capture_output=True,
        text=True,
        check=True,
    )
    token_key = minted.stderr.split("HS256 key ")[1].split()[0]
    settings = make_settings(tmp_path / "b", jwt_secret=None)
    async with run_picows(settings) as r:
        server_key = r.server.auth_handler.key_fingerprint
        async with connect(r.url, open_timeout=TIMEOUT) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth", "token": minted.stdout.strip(), "id": 1}))
            refused = json.loads(await ws.recv())
    assert token_key != server_key
    assert refused["error_code"] == "invalid_token"
    assert refused["details"] == {"algorithm": "HS256", "key_fingerprint": server_key, "issuer": None}
    assert server_key in refused["error_message"] and "tradewire token" in refused["error_message"]
