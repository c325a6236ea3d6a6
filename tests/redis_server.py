"""A real Redis for the tests: a configured one, the local one, or a throwaway redis-server.

Order: ``TRADEWIRE_TEST_REDIS_URL``; a server answering on 127.0.0.1:6379; a ``redis-server``
started on a free port (no persistence) and stopped after the session. If none is possible the
Redis tests are skipped — loudly, in the summary — except under ``CI=true``, where a missing
Redis fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT = 10.0


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_available() -> bool:
    """Whether :func:`redis_url` will find or start a Redis here."""
    return (
        bool(os.environ.get("TRADEWIRE_TEST_REDIS_URL"))
        or _answers(DEFAULT_URL)
        or bool(shutil.which("redis-server"))
    )


@contextmanager
def redis_url() -> Iterator[str | None]:
    """Yield a reachable Redis URL, or None when no Redis can be had here."""
    configured = os.environ.get("TRADEWIRE_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    if _answers(DEFAULT_URL):
        yield DEFAULT_URL
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
