"""Real cluster nodes for the tests: ``tradewire serve`` subprocesses sharing one Redis.

Each node gets its own ports and the test's key prefix; all share one data directory (one SQLite
file, WAL). Every node is stopped (SIGTERM, then SIGKILL) when the test's ``Cluster`` closes, and
every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import SECRET

READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Node:
    """One ``tradewire serve`` process."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.ws_port = int(env["TRADEWIRE_WS_PORT"])
        self.http_port = int(env["TRADEWIRE_HTTP_PORT"])
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tradewire.cli", "serve", *args], env=env, stdout=out, stderr=out
            )

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"http://127.0.0.1:{self.http_port}/health", timeout=2.0)
        value = response.json()
        assert isinstance(value, dict)
        return value

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                self.health()
                return
            except (httpx.HTTPError, ValueError):
                time.sleep(0.1)
        raise AssertionError(f"node {self.name} not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Cluster:
    """Nodes of one test: same Redis, same prefix, same database."""

    def __init__(self, redis_url: str, prefix: str, data_dir: Path, **settings: Any) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.data_dir = data_dir
        self.settings = settings
        self.nodes: list[Node] = []

    def env(self, **settings: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}
        values: dict[str, Any] = {
            "redis_url": self.redis_url,
            "redis_prefix": self.prefix,
            "jwt_secret": SECRET,
            "data_dir": str(self.data_dir),
            "ws_port": free_port(),
            "http_port": free_port(),
            "rate_limit_per_minute": 6000,
            "rate_limit_burst": 200,
            "log_level": "info",
            "cluster_lease_seconds": 1.0,
            **self.settings,
            **settings,
        }
        env.update({f"TRADEWIRE_{k.upper()}": str(v) for k, v in values.items()})
        return env

    def start(self, name: str, *args: str, **settings: Any) -> Node:
        node = Node(name, self.env(**settings), self.data_dir, args)
        self.nodes.append(node)
        node.wait_ready()
        return node

    def close(self) -> None:
        for node in self.nodes:
            node.stop()


@contextmanager
def cluster(redis_url: str, prefix: str, data_dir: Path, **settings: Any) -> Iterator[Cluster]:
    running = Cluster(redis_url, prefix, data_dir, **settings)
    try:
        yield running
    finally:
        running.close()


@contextmanager
def throwaway_redis() -> Iterator[tuple[str, Any]]:
    """A redis-server of this test only (no persistence), with a restart function."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is needed for the outage test"
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    url = f"redis://127.0.0.1:{port}/0"

    def wait_up() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("throwaway redis-server did not start")

    def restart(down_for: float) -> None:
        procs[-1].terminate()
        procs[-1].wait(10)
        time.sleep(down_for)
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_up()

    wait_up()
    try:
        yield url, restart
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
