"""Throttling of credential guesses (password login, reconnect tokens) without account lockout.

A hard per-account limit lets anyone lock a user out by guessing wrong on purpose; exchanges
throttle per address *and* per account with backoff instead. :class:`GuessThrottle` combines:

* **per address** — a token bucket of *failed* attempts (``rate``/s, ``burst``): one address
  cannot guess fast, whichever accounts it tries. Successes cost nothing, so many honest users
  behind one NAT are not throttled by their own logins.
* **per (account, address)** — after ``free_failures`` failures in a row, the next attempt waits
  ``backoff_base`` seconds, and each further failure doubles the wait (capped at
  ``backoff_max``); a success resets it. A third
  party slows down only its own guesses, never the owner's address.
* **per account** — at most ``account_failures_per_hour`` failures from all addresses together
  (distributed guessing). Past it, only *known* addresses of the account (where it succeeded
  before; the last ``known_addresses``) may still try, so the owner keeps working even then.

``check`` reserves a failure slot (so concurrent requests cannot overshoot while a password is
being verified) and returns 0 or the seconds to wait; ``succeeded`` gives the slot back.
Memory is bounded: every table keeps at most ``max_keys`` entries (least recently used evicted).
Time is passed in (monotonic seconds), so the class is pure and testable.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from tradewire.core.limits import TokenBucket


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Limits of one :class:`GuessThrottle` (Settings fields, see README)."""

    rate: float  # failed attempts per second and address, sustained
    burst: int  # failed attempts per address at once
    free_failures: int = 5  # per (account, address) before backoff starts
    backoff_base: float = 1.0  # seconds; doubles with each further failure
    backoff_max: float = 900.0
    account_failures_per_hour: int = 100
    known_addresses: int = 8  # remembered per account (exempt from the per-account cap)
    max_keys: int = 10_000  # entries per table (addresses, pairs, accounts), LRU-evicted


@dataclass(slots=True)
class _Backoff:
    failures: int = 0
    until: float = 0.0  # monotonic time before which this (account, address) must wait


K = TypeVar("K")
V = TypeVar("V")


class _Lru(OrderedDict[K, V]):
    """An OrderedDict that forgets its least recently used keys beyond ``max_keys``."""

    def __init__(self, max_keys: int) -> None:
        super().__init__()
        self.max_keys = max_keys

    def touch(self, key: K, value: V) -> V:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.max_keys:
            self.popitem(last=False)
        return value


class GuessThrottle:
    """Per-address, per-(account, address) and per-account throttling of failed guesses."""

    def __init__(self, policy: ThrottlePolicy) -> None:
        self.policy = policy
        max_keys = policy.max_keys
        self._by_address: _Lru[str, TokenBucket] = _Lru(max_keys)
        self._backoff: _Lru[tuple[str, str], _Backoff] = _Lru(max_keys)
        self._by_account: _Lru[str, TokenBucket] = _Lru(max_keys)
        self._known: _Lru[str, list[str]] = _Lru(max_keys)

    def check(self, account: str | None, address: str, now: float) -> float:
        """0 if an attempt may proceed (a failure slot is then reserved), else seconds to wait."""
        if account is not None:
            wait = self._account_wait(account, address, now)
            if wait > 0:
                return wait
        bucket = self._address_bucket(address, now)
        if not bucket.take(now):
            return max(bucket.retry_after(), 1e-3)
        return 0.0

    def failed(self, account: str | None, address: str, now: float) -> None:
        """The attempt that passed :meth:`check` failed (its address slot stays spent)."""
        if account is None:
            return
        policy = self.policy
        state = self._backoff.touch((account, address), self._backoff.get((account, address)) or _Backoff())
        state.failures += 1
        extra = state.failures - policy.free_failures  # 0 at the last free failure
        if extra >= 0:
            state.until = now + min(policy.backoff_max, policy.backoff_base * 2 ** min(extra, 30))
        self._account_bucket(account, now).take(now)

    def succeeded(self, account: str, address: str, now: float) -> None:
        """The attempt succeeded: give the address slot back, reset backoff, remember the address."""
        self._address_bucket(address, now).refund()
        self._backoff.pop((account, address), None)
        self.remember(account, address)

    def remember(self, account: str, address: str) -> None:
        """``address`` legitimately used ``account`` (e.g. the connection a reconnect token was
        issued to): it stays allowed when the account's distributed-guessing cap is reached."""
        known = self._known.touch(account, self._known.get(account) or [])
        if address in known:
            known.remove(address)
        known.append(address)
        del known[: -self.policy.known_addresses]

    def _account_wait(self, account: str, address: str, now: float) -> float:
        state = self._backoff.get((account, address))
        if state is not None and state.until > now:
            return state.until - now
        bucket = self._by_account.get(account)
        if bucket is not None and not bucket.available(now) and address not in self._known.get(account, ()):
            return max(bucket.retry_after(), 1e-3)
        return 0.0

    def _address_bucket(self, address: str, now: float) -> TokenBucket:
        bucket = self._by_address.get(address) or TokenBucket(self.policy.rate, self.policy.burst, now)
        return self._by_address.touch(address, bucket)

    def _account_bucket(self, account: str, now: float) -> TokenBucket:
        per_hour = self.policy.account_failures_per_hour
        bucket = self._by_account.get(account) or TokenBucket(per_hour / 3600, per_hour, now)
        return self._by_account.touch(account, bucket)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
