"""Cluster mode over real processes and a real Redis: delivery across nodes, one numbering,
resume on another node after a crash, a Redis outage, limits and jobs across nodes, --workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cluster_nodes import Cluster, Node, cluster, free_port, throwaway_redis
from tests.helpers import SECRET, TIMEOUT, call, recv_json, request, until
from tradewire import Level, Settings
from tradewire.auth.tokens import AuthHandler

pytestmark = pytest.mark.redis
FEED = {"synthetic_symbols": "BTC-USD,ETH-USD", "synthetic_interval": 0.02}


@pytest.fixture
def nodes(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(redis_url, redis_prefix, tmp_path, **FEED) as running:
        yield running


def token(user: str = "alice", level: Level = Level.TRADER) -> str:
    settings = Settings(jwt_secret=SECRET)
    return AuthHandler.from_settings(settings).mint(user, level, 3600)[0]


async def client(node: Node, user: str = "alice", **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(node.ws_url, open_timeout=TIMEOUT, **kwargs)
    welcome = await recv_json(ws)
    if not welcome.get("authenticated"):
        reply = await request(ws, {"type": "auth", "token": token(user)})
        assert reply["status"] == "authenticated", reply
    return ws, welcome


async def frames(ws: ClientConnection, stream: str, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT * 2):
        while len(out) < count:
            frame = await recv_json(ws)
            if frame.get("stream") == stream:
                out.append(frame)
    return out


async def test_publications_of_one_node_reach_the_others_with_the_same_offsets(nodes: Cluster) -> None:
    """The leader (B) runs the feed; a client on A gets B's market data, numbered as on B."""
    b = nodes.start("b")
    a = nodes.start("a")
    assert b.health()["components"]["engine"]["leader"] is True
    assert a.health()["components"]["engine"]["leader"] is False
    ws_a, _ = await client(a)
    ws_b, _ = await client(b)
    async with ws_a, ws_b:
        for ws in (ws_a, ws_b):
            reply = await request(ws, {"type": "subscribe", "stream": "market_data"})
            assert reply["status"] == "subscribed"
        got_a = await frames(ws_a, "market_data", 30)
        got_b = await frames(ws_b, "market_data", 30)
    on_a = {f["offset"]: (f["epoch"], f["data"]) for f in got_a}
    on_b = {f["offset"]: (f["epoch"], f["data"]) for f in got_b}
    common = set(on_a) & set(on_b)
    assert len(common) >= 10
    assert all(on_a[o] == on_b[o] for o in common)  # one numbering, one epoch, the same messages
    offsets = [f["offset"] for f in got_a]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # in order, no gap


async def test_client_of_a_killed_node_resumes_on_another(nodes: Cluster) -> None:
    """SIGKILL A with a client connected; its token on B: same id, subscription, missed messages."""
    b = nodes.start("b")
    a = nodes.start("a")
    ws, welcome = await client(a)
    await request(ws, {"type": "subscribe", "stream": "market_data"})
    seen = await frames(ws, "market_data", 20)
    await asyncio.sleep(1.5)  # a checkpoint or two of the session
    a.kill()
    with contextlib.suppress(ConnectionClosed):  # everything that reached the client before
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("stream") == "market_data":
                seen.append(frame)
    await asyncio.sleep(1.0)  # messages keep coming on B meanwhile
    headers = {"X-Reconnect-Token": welcome["reconnect_token"]}
    ws2, again = await client(b, additional_headers=headers)
    async with ws2:
        assert again["reconnected"] is True and again["client_id"] == welcome["client_id"]
        (status,) = again["subscriptions"]
        assert status["stream"] == "market_data" and status["recovered"] is True
        last = seen[-1]["offset"]
        after = await frames(ws2, "market_data", 1)
        while after[-1]["offset"] <= last + 20:  # replayed, then live
            after += await frames(ws2, "market_data", 1)
    offsets = [f["offset"] for f in after]
    assert offsets[0] <= last + 1  # at least once: nothing skipped at the seam
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # in order, no gap
    assert {f["epoch"] for f in after} == {seen[-1]["epoch"]}


async def test_redis_restart_during_traffic(tmp_path: Path, redis_prefix: str) -> None:
    """Both nodes survive, say `degraded`, resume sharing; clients see the epoch change."""
    with throwaway_redis() as (url, restart), cluster(url, redis_prefix, tmp_path, **FEED) as nodes:
        b = nodes.start("b")
        a = nodes.start("a")
        ws, _ = await client(a)
        async with ws:
            await request(ws, {"type": "subscribe", "stream": "market_data"})
            before = await frames(ws, "market_data", 10)
            down = 8.0  # long enough for a loaded 2-core machine to notice on both nodes
            restart_task = asyncio.create_task(asyncio.to_thread(restart, down))
            seen_degraded: set[str] = set()
            deadline = asyncio.get_running_loop().time() + down - 0.5
            while len(seen_degraded) < 2 and asyncio.get_running_loop().time() < deadline:
                for node in (a, b):  # Redis is down: both nodes say so meanwhile
                    if node.name not in seen_degraded and (await asyncio.to_thread(node.health))["degraded"]:
                        seen_degraded.add(node.name)
                await asyncio.sleep(0.1)
            assert seen_degraded == {"a", "b"}
            await restart_task
            for _ in range(200):  # reconnect with backoff: up to ~20 s on a loaded machine
                healths = [await asyncio.to_thread(n.health) for n in (a, b)]
                if not any(h["degraded"] for h in healths):
                    break
                await asyncio.sleep(0.1)
            assert not any(h["degraded"] for h in healths)
            epochs = [f["epoch"] for f in before]
            async with asyncio.timeout(TIMEOUT * 3):
                while epochs[-1] == epochs[0]:  # until frames of another epoch arrive
                    frame = await recv_json(ws)
                    if frame.get("stream") == "market_data":
                        epochs.append(frame["epoch"])
            assert len(set(epochs)) >= 2  # the change is visible in the frames
            ws_b, _ = await client(b)
            async with ws_b:
                await request(ws_b, {"type": "subscribe", "stream": "market_data"})
                on_b = await frames(ws_b, "market_data", 5)
                shared = on_b[-1]["epoch"]
                async with asyncio.timeout(TIMEOUT * 2):  # A's socket may still hold older frames
                    while (frame := await recv_json(ws)).get("epoch") != shared:
                        continue
            assert frame["stream"] == "market_data"  # sharing again: one epoch on both nodes


async def test_connections_per_user_are_counted_across_nodes(nodes: Cluster) -> None:
    a = nodes.start("a", max_connections_per_user=2)
    b = nodes.start("b", max_connections_per_user=2)
    ws1, _ = await client(a)
    ws2, _ = await client(a)
    ws3 = await connect(b.ws_url, open_timeout=TIMEOUT)
    async with ws1, ws2, ws3:
        await recv_json(ws3)
        await ws3.send(json.dumps({"type": "auth", "token": token()}))
        refused = await until(ws3, lambda f: f.get("error_code") == "connection_limit_exceeded")
        assert refused["details"]["scope"] == "cluster"
        reply = await request(ws3, {"type": "subscribe", "stream": "market_data"})
        assert reply["error_code"] == "authentication_required"
    await asyncio.sleep(0.5)  # closed connections leave the count
    ws4, _ = await client(b)
    await ws4.close()


async def test_backtest_started_on_one_node_is_watched_and_stopped_from_another(nodes: Cluster) -> None:
    a = nodes.start("a", synthetic_symbols="")
    b = nodes.start("b", synthetic_symbols="")
    ws_a, _ = await client(a)
    ws_b, _ = await client(b)
    async with ws_a, ws_b:
        await request(ws_b, {"type": "subscribe", "stream": "execution_status"})
        datasets = await call(ws_a, {"type": "query", "query_type": "datasets"})
        goog = next(d["id"] for d in datasets["data"] if d["symbol"] == "GOOG")
        strategies = await call(ws_a, {"type": "get_strategies"})
        name = strategies["strategies"][0]["strategy_name"]
        started = await call(
            ws_a,
            {
                "type": "session_start",
                "session_type": "backtest",
                "strategy_config": {name: ["GOOG"]},
                "config": {"dataset_id": goog, "acceleration_factor": 86400 * 20},
            },
        )
        assert started.get("status") == "session_started", started
        sid = started["session_id"]
        running = await until(
            ws_b, lambda f: f.get("stream") == "execution_status" and f["data"]["status"] == "running"
        )
        assert running["data"]["session_id"] == sid
        status = await call(ws_b, {"type": "session_status", "session_id": sid})
        assert status["session_data"]["status"] == "running"
        stopped = await call(ws_b, {"type": "session_stop", "session_id": sid})
        assert stopped["status"] == "session_stopped", stopped
        assert stopped["session"]["status"] == "stopped"
        final = await call(ws_a, {"type": "session_status", "session_id": sid})
        assert final["session_data"]["status"] == "stopped"


def test_workers_share_one_port(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """`--workers 2` serves one port from two processes; without Redis it refuses to start."""
    with cluster(redis_url, redis_prefix, tmp_path, synthetic_symbols="") as nodes:
        node = nodes.start("workers", "--workers", "2")
        seen = set()
        for _ in range(40):
            with httpx.Client() as http:  # a new connection each time: the kernel picks a worker
                health = http.get(f"http://127.0.0.1:{node.http_port}/health", timeout=2.0).json()
            seen.add(health["components"]["engine"]["node_id"])
            if len(seen) == 2:
                break
        assert len(seen) == 2
    env = nodes.env(redis_url="", ws_port=free_port(), http_port=free_port())
    refused = subprocess.run(
        [sys.executable, "-m", "tradewire.cli", "serve", "--workers", "2"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert b"needs TRADEWIRE_REDIS_URL" in refused.stderr
