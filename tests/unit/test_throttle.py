"""GuessThrottle without sockets: per address, per (account, address) backoff, per account cap."""

from __future__ import annotations

from tradewire.auth.throttle import GuessThrottle, ThrottlePolicy, retry_after_header


def _throttle(**overrides: float) -> GuessThrottle:
    values: dict[str, float] = {
        "rate": 1.0,
        "burst": 100,
        "free_failures": 2,
        "backoff_base": 1.0,
        "backoff_max": 8.0,
        "account_failures_per_hour": 1000,
    }
    values.update(overrides)
    return GuessThrottle(ThrottlePolicy(**values))  # type: ignore[arg-type]


def _fail(t: GuessThrottle, account: str | None, address: str, now: float) -> float:
    wait = t.check(account, address, now)
    if wait == 0:
        t.failed(account, address, now)
    return wait


def test_backoff_doubles_per_account_and_address_and_is_capped() -> None:
    t = _throttle()
    assert [_fail(t, "alice", "a", 0.0) for _ in range(2)] == [0, 0]
    assert t.check("alice", "a", 0.5) == 0.5  # 1 s after the second (last free) failure
    waits = []
    now = 0.0
    for _ in range(6):
        now += t.check("alice", "a", now)
        t.check("alice", "a", now)
        t.failed("alice", "a", now)
        waits.append(t.check("alice", "a", now))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert t.check("alice", "b", now) == 0  # the owner's address is not affected
    assert t.check("bob", "a", now) == 0  # nor are other accounts from that address


def test_success_resets_and_refunds() -> None:
    t = _throttle(burst=4, rate=1e-6)
    for _ in range(2):
        _fail(t, "alice", "a", 0.0)
    assert t.check("alice", "a", 1.0) == 0
    t.succeeded("alice", "a", 1.0)
    assert t.check("alice", "a", 1.0) == 0  # backoff gone; the success cost no address slot
    t.succeeded("alice", "a", 1.0)
    assert [t.check(f"u{n}", "a", 1.0) == 0 for n in range(3)] == [True, True, False]  # 4 - 2 failures


def test_account_cap_exempts_known_addresses() -> None:
    t = _throttle(account_failures_per_hour=3, known_addresses=2)
    for address in ("old", "home", "work", "home"):
        t.remember("alice", address)
    for n in range(3):
        assert _fail(t, "alice", f"bot{n}", 0.0) == 0
    assert t.check("alice", "bot9", 0.0) > 0
    assert t.check("alice", "home", 0.0) == 0
    assert t.check("alice", "work", 0.0) == 0
    assert t.check("alice", "old", 0.0) > 0  # only the last two are remembered
    assert t.check("bob", "bot9", 0.0) == 0


def test_tables_are_bounded() -> None:
    t = GuessThrottle(ThrottlePolicy(rate=1.0, burst=1, max_keys=50))
    for n in range(1000):
        _fail(t, f"user{n}", f"10.0.{n // 256}.{n % 256}", 0.0)
    assert max(len(t._by_address), len(t._backoff), len(t._by_account)) <= 50


def test_retry_after_header_is_whole_seconds() -> None:
    assert [retry_after_header(x) for x in (0.001, 1.0, 1.2)] == ["1", "1", "2"]
