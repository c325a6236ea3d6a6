"""``tradewire serve --workers N``: N processes on one machine sharing the ports, each a node.

Every worker binds the WebSocket and HTTP ports with ``SO_REUSEPORT`` (the kernel spreads new
connections over them) and is a full cluster node; Redis connects them, so N > 1 needs
``TRADEWIRE_REDIS_URL``. The supervisor forks the first worker, waits until it listens (it runs
the database migrations and installs the examples, once), then forks the others; it restarts a
worker that dies (once per second at most) and forwards SIGINT/SIGTERM to all of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import structlog

from tradewire.cluster.link import new_node_id
from tradewire.config import Settings
from tradewire.errors import ConfigError

_log = structlog.get_logger("tradewire.workers")
READY_TIMEOUT = 60.0


def check_workers(settings: Settings) -> None:
    """Refuse what cannot work: several workers without Redis, or on a random port."""
    if settings.workers <= 1:
        return
    if not settings.redis_url:
        raise ConfigError(
            f"--workers {settings.workers} needs TRADEWIRE_REDIS_URL: workers share streams, history, "
            "sessions and jobs through Redis (without it each process would number streams on its own)"
        )
    if settings.ws_port == 0 or settings.http_port == 0:
        raise ConfigError("--workers > 1 needs fixed ports (the workers share them), not 0")


def cluster_settings(settings: Settings) -> Settings:
    """Settings with this process's node id (a random one unless configured)."""
    if settings.redis_url and not settings.node_id:
        return settings.model_copy(update={"node_id": new_node_id()})
    return settings


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket other processes may bind too (SO_REUSEPORT), for uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_workers(settings: Settings, run_one: Callable[[Settings], int]) -> int:
    """Fork ``settings.workers`` processes running ``run_one`` and supervise them."""
    check_workers(settings)
    base = settings.node_id or new_node_id()
    children: dict[int, int] = {}
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 1
            try:
                code = run_one(
                    settings.model_copy(update={"node_id": f"{base}-{index}", "workers": settings.workers})
                )
            finally:
                os._exit(code)
        children[pid] = index

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    spawn(0)
    _wait_listening(settings.host, settings.ws_port)
    for index in range(1, settings.workers):
        spawn(index)
    _log.info("workers.started", workers=settings.workers, pids=sorted(children))
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        if index >= 0 and not stopping:
            _log.error("workers.died", worker=index, pid=pid, status=status)
            time.sleep(1.0)
            spawn(index)
    return 0


def _wait_listening(host: str, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    _log.warning("workers.first_not_ready", seconds=READY_TIMEOUT)
