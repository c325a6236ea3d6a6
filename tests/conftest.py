from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.browser_support import browser_missing
from tests.helpers import Running, make_settings, run_server
from tests.postgres_server import postgres_available, postgres_database
from tests.redis_server import redis_available
from tests.redis_server import redis_url as find_redis

_service_skips: list[str] = []  # services whose tests were skipped (printed in the summary)

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
        yield require_service(url, _REDIS_MISSING)


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key namespace of this test only, so tests never see each other's keys."""
    return f"tradewire-test:{uuid.uuid4().hex[:12]}:"


def require_service(url: str | None, reason: str) -> str:
    """``url`` of a service that collection found available (tests of missing ones never run)."""
    if url is None:
        pytest.fail(f"a required service went away during the run: {reason}")
    return url


_REDIS_MISSING = "no Redis server on 127.0.0.1:6379 and no redis-server binary"
_POSTGRES_MISSING = "no PostgreSQL server on 127.0.0.1:5432"


def _needs(item: pytest.Item, fixture: str, marker: str) -> bool:
    return fixture in getattr(item, "fixturenames", ()) or item.get_closest_marker(marker) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of a service that is missing here are skipped loudly — or, under CI=true, the run
    stops: there a missing Redis, PostgreSQL or Chromium is a failure, never a silent pass."""
    missing = {}
    if any(_needs(item, "redis_url", "redis") for item in items) and not redis_available():
        missing["redis"] = (_REDIS_MISSING, "redis_url")
    if any(_needs(item, "postgres_url", "postgres") for item in items) and not postgres_available():
        missing["postgres"] = (_POSTGRES_MISSING, "postgres_url")
    if any(_needs(item, "browser", "browser") for item in items) and (reason := browser_missing()):
        missing["browser"] = (reason, "browser")
    if missing and os.environ.get("CI") == "true":
        raise pytest.UsageError(
            "CI=true: required services missing: " + "; ".join(r for r, _ in missing.values())
        )
    for marker, (reason, fixture) in missing.items():
        _service_skips.append(reason)
        for item in items:
            if _needs(item, fixture, marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database on the machine's real PostgreSQL, dropped after the test."""
    async with postgres_database() as url:
        yield require_service(url, _POSTGRES_MISSING)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in sorted(set(_service_skips)):
        terminalreporter.write_sep("!", "SERVICE TESTS SKIPPED: " + reason, red=True, bold=True)
