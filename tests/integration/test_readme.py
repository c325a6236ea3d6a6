"""Every README recipe, run as a user would: against `tradewire serve` started from the command
line, in the repository, with the commands exactly as written (`.venv/bin/` pointing at the
interpreter running the tests)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.helpers import SECRET, TIMEOUT
from tradewire.client import Client

ROOT = Path(__file__).resolve().parents[2]
RECIPE = re.compile(r"<!-- recipe: (\w+) -->\n```(\w+)\n(.*?)```", re.S)
BIN = str(Path(sys.executable).parent) + "/"


def recipes() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return {name: (lang, code.replace(".venv/bin/", BIN)) for name, lang, code in RECIPE.findall(text)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
    env.update({"TRADEWIRE_DATA_DIR": str(data_dir), "TRADEWIRE_SYNTHETIC_INTERVAL": "0.05", **extra})
    return env


async def _healthy(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not become healthy")


@asynccontextmanager
async def _serve(args: list[str], env: dict[str, str], http_url: str, log: Path) -> AsyncIterator[None]:
    """`tradewire serve` in a subprocess (its log in ``log``), stopped with SIGINT."""
    with log.open("w") as sink:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=sink, stderr=sink, text=True)
        try:
            await _healthy(http_url)
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=TIMEOUT * 2)
    assert proc.returncode == 0, "tradewire serve did not stop cleanly"


async def _run(code: str, lang: str, env: dict[str, str], tmp: Path) -> str:
    return (await _run_both(code, lang, env, tmp))[0]


async def _run_both(code: str, lang: str, env: dict[str, str], tmp: Path) -> tuple[str, str]:
    """stdout and stderr of a recipe, which must succeed."""
    if lang == "sh":
        args = ["bash", "-euo", "pipefail", "-c", code]
    else:
        script = tmp / "recipe.py"
        script.write_text(code)
        args = [sys.executable, str(script)]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 6)
    assert proc.returncode == 0, f"{code}\n{err.decode()}"
    return out.decode(), err.decode()


def test_the_readme_has_the_recipes_these_tests_run() -> None:
    assert set(recipes()) == {"token", "prices", "backtest", "login", "embed"}


async def test_server_recipes(tmp_path: Path) -> None:
    """token → dashboard hint in the log → prices → backtest → password login."""
    book = recipes()
    ws_port, http_port = _free_port(), _free_port()
    http_url, ws_url = f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}/ws"
    env = _env(tmp_path / "data", TRADEWIRE_WS_URL=ws_url, TRADEWIRE_HTTP_URL=http_url)
    serve = [
        sys.executable,
        "-m",
        "tradewire.cli",
        "serve",
        "--ws-port",
        str(ws_port),
        "--http-port",
        str(http_port),
    ]
    log = tmp_path / "serve.log"
    async with _serve([*serve, "--log-format", "json"], env, http_url, log):
        lang, code = book["token"]
        token, said = await _run_both(code + '\nprintf %s "$TRADEWIRE_TOKEN"', lang, env, tmp_path)
        async with Client(ws_url, token) as client:
            assert client.user is not None and client.user["user_id"] == "alice"
        env["TRADEWIRE_TOKEN"] = token
        lines = (await _run(*reversed(book["prices"]), env, tmp_path)).splitlines()
        assert len(lines) == 5 and all(line.split()[1] == "BTC-USD" for line in lines)
        assert [int(line.split()[0]) for line in lines] == sorted(int(line.split()[0]) for line in lines)
        backtest = (await _run(*reversed(book["backtest"]), env, tmp_path)).splitlines()
        assert backtest[0].endswith(": completed") and int(backtest[5].split(":")[1]) > 20
        login = json.loads(await _run(*reversed(book["login"]), env, tmp_path))
        async with Client(ws_url, login["access_token"]) as client:
            assert client.user is not None and client.user["level"] == "trader"
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    events = {entry["event"]: entry for entry in entries}
    assert events["server.ready"]["dashboard_url"] == f"{http_url}/"
    steps = events["server.next_steps"]
    assert steps["token"].startswith("tradewire token --user alice --level trader --data-dir")
    assert f"HS256 key {steps['key_fingerprint']} (the dev secret in" in said  # token and server agree


async def test_embed_recipe_runs_the_engine(tmp_path: Path) -> None:
    """The embedding recipe serves strategies and prices (the engine runs), not service_unavailable."""
    lang, code = recipes()["embed"]
    assert lang == "python"
    (tmp_path / "app.py").write_text(code)
    port = _free_port()
    env = _env(tmp_path / "data", EMBED_PORT=str(port), TRADEWIRE_JWT_SECRET=SECRET)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "app.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        token = _mint(SECRET)
        async with asyncio.timeout(TIMEOUT * 4):
            while True:
                try:
                    client = await Client(f"ws://127.0.0.1:{port}/ws", token, reconnect=False).connect()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        async with client:  # already connected: entering does not connect again
            names = {s["strategy_name"] for s in await client.get_strategies()}
            prices = await client.subscribe("market_data")
            first = await prices.get(TIMEOUT)
        assert names == {"pump_detector", "rsi_mean_reversion"}
        assert first.data["symbol"] in ("BTC-USD", "ETH-USD", "SOL-USD")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT * 2)
    assert proc.returncode == 0


def _mint(secret: str) -> str:
    from tradewire import Level, Settings
    from tradewire.auth.tokens import AuthHandler

    return AuthHandler.from_settings(Settings(jwt_secret=secret)).mint("alice", Level.TRADER)[0]
