"""A throwaway PostgreSQL database per test on the machine's server (127.0.0.1:5432, trust auth).

``TRADEWIRE_TEST_POSTGRES_DSN`` overrides the server. Without a server the PostgreSQL tests are
skipped loudly, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _dsn() -> str:
    return os.environ.get("TRADEWIRE_TEST_POSTGRES_DSN", DEFAULT_DSN)


async def _admin() -> asyncpg.Connection | None:
    dsn = _dsn()
    try:
        return await asyncpg.connect(dsn, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return None


def postgres_available() -> bool:
    """Whether a PostgreSQL server answers (probed once, at collection)."""

    async def probe() -> bool:
        admin = await _admin()
        if admin is None:
            return False
        await admin.close()
        return True

    return asyncio.run(probe())


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str | None]:
    """Yield a SQLAlchemy URL of a fresh, empty database (dropped afterwards), or None."""
    admin = await _admin()
    if admin is None:
        yield None
        return
    name = f"tradewire_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(_dsn())._replace(scheme="postgresql+asyncpg", path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
