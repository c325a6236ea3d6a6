"""Session stores and reconnect tokens without sockets."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests import redis_server
from tradewire.sessions.session_store import (
    SavedSession,
    SavedSubscription,
    decode_session,
    encode_session,
    new_token,
    split_token,
    token_matches,
)
from tradewire.sessions.session_store_memory import MemorySessionStore
from tradewire.sessions.session_store_redis import RedisSessionStore


def _session(client_id: str, token_hash: str = "0" * 64) -> SavedSession:
    return SavedSession(client_id, token_hash, 0.0, subscriptions=[SavedSubscription("signals", {}, 3, "e1")])


def test_tokens_are_random_hashed_and_checked_in_constant_time() -> None:
    token, stored = new_token("c_abc")
    client_id, secret = split_token(token) or ("", "")
    assert client_id == "c_abc"
    assert len(secret) >= 32  # 192 bits, url-safe base64
    assert secret not in stored
    assert token_matches(secret, stored)
    assert not token_matches(secret + "x", stored)
    assert new_token("c_abc")[0] != token
    assert split_token("no-dot") is None
    assert split_token("c_abc.short") is None


def test_saved_session_round_trips_as_json() -> None:
    session = _session("c_1")
    assert decode_session(encode_session(session)) == session


async def test_memory_store_is_bounded_and_expires_100k_sessions() -> None:
    now = [1000.0]
    store = MemorySessionStore(max_sessions=100_000, clock=lambda: now[0])
    _, digest_ = new_token("c_0")
    for i in range(120_000):
        await store.save(_session(f"c_{i}", digest_ if i == 119_999 else "0" * 64), ttl=60)
    assert await store.count() == 100_000
    assert store.evicted == 20_000
    assert await store.claim("c_0", "whatever-secret-whatever-secret") is None  # evicted first
    now[0] += 61
    assert store.expire() == 100_000
    assert await store.count() == 0


async def test_memory_store_claim_is_single_use_and_wrong_secret_changes_nothing() -> None:
    store = MemorySessionStore()
    token, stored = new_token("c_1")
    secret = token.rpartition(".")[2]
    await store.save(_session("c_1", stored), ttl=60)
    assert await store.claim("c_1", "wrong-secret-wrong-secret-wrong-secret") is None
    assert await store.claim("c_1", secret) is not None
    assert await store.claim("c_1", secret) is None


@pytest.mark.redis
async def test_redis_store_claim_is_single_use_and_ttl_bound(redis_url: str, redis_prefix: str) -> None:
    store = RedisSessionStore(redis_url, prefix=redis_prefix)
    await store.start()
    try:
        token, stored = new_token("c_1")
        secret = token.rpartition(".")[2]
        await store.save(_session("c_1", stored), ttl=60)
        assert await store.count() == 1
        assert await store.claim("c_1", "wrong-secret-wrong-secret-wrong-secret") is None
        claimed = await store.claim("c_1", secret)
        assert claimed is not None and claimed.subscriptions[0].last_offset == 3
        assert await store.claim("c_1", secret) is None
        await store.save(_session("c_2", stored), ttl=0.05)
        await asyncio.sleep(0.15)
        assert await store.claim("c_2", secret) is None
    finally:
        await store.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server binary not installed here")
def test_throwaway_redis_server_is_started_when_none_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make test` does on a machine without a running Redis but with the binary."""
    monkeypatch.delenv("TRADEWIRE_TEST_REDIS_URL", raising=False)
    monkeypatch.setattr(redis_server, "DEFAULT_URL", f"redis://127.0.0.1:{redis_server._free_port()}/0")
    with redis_server.redis_url() as url:
        assert url is not None and url != redis_server.DEFAULT_URL
        assert redis_server._answers(url)
    assert not redis_server._answers(url)
