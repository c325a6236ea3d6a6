from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.helpers import Running, make_settings, run_server
from tests.redis_server import redis_url as find_redis

_redis_skips: list[str] = []

structlog.configure(
    wrapper_class=structlog.make_filtering_bound_logger(30),  # warnings and up while testing
)


@pytest.fixture(params=["picows", "asgi"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Any]:
    return lambda **overrides: make_settings(tmp_path, **overrides)


@pytest.fixture
async def running(transport: str, settings_factory: Callable[..., Any]) -> AsyncIterator[Running]:
    async with run_server(transport, settings_factory()) as r:
        yield r


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis (never a fake); see tests/redis_server.py for where it comes from."""
    with find_redis() as url:
        if url is None:
            if os.environ.get("CI") == "true":
                pytest.fail("CI=true: Redis is required but neither a server nor redis-server is available")
            _redis_skips.append("no Redis server and no redis-server binary")
            pytest.skip("Redis not available: no server on 127.0.0.1:6379 and no redis-server binary")
        yield url


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key namespace of this test only, so tests never see each other's keys."""
    return f"tradewire-test:{uuid.uuid4().hex[:12]}:"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _redis_skips:
        terminalreporter.write_sep("!", "REDIS TESTS SKIPPED: " + _redis_skips[0], red=True, bold=True)
