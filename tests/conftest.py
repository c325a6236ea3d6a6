from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.helpers import Running, make_settings, run_server

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
