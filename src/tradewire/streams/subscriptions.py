"""Who is subscribed to what: per-client subscriptions, limits, and an index for publishing.

Index: stream → symbol → {client_id: Subscription} for symbol-filtered subscriptions, and
stream → {client_id: Subscription} for the rest, so a publish visits only the subscribers of
its symbol plus the unfiltered ones instead of every client. Subscriptions are removed when the
connection closes (the original leaked them).

Limits (seed defaults): a client's subscriptions weigh at most 100 (a subscription with a symbol
list weighs one per symbol, otherwise one); at most 50 subscribe operations per hour, as a token
bucket. Subscribing again to a stream replaces its filter.

Coverage (what keeps re-subscribing honest): per client and stream the manager remembers from which
offset its (last) subscription received every matching message (``start``) and with which filter;
while subscribed every offset up to the stream's position may already be queued to it, and after
``unsubscribe`` every offset up to the position at that moment. :meth:`coverage` reports this, so
recovery replays only above what the connection may already hold (each offset at most once and in
increasing order) and says ``recovered: false`` when it cannot fill a gap in that order. It costs
nothing per published message: it is written only on subscribe and unsubscribe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tradewire.core.connection import Connection
from tradewire.core.limits import TokenBucket
from tradewire.errors import RequestError
from tradewire.protocol.codes import ErrorCode
from tradewire.protocol.messages import Stream
from tradewire.streams.filters import StreamFilter


@dataclass(slots=True, eq=False)
class Subscription:
    conn: Connection
    stream: Stream
    filter: StreamFilter
    start: int = 0  # every matching message after this offset was (or will be) queued to conn

    @property
    def client_id(self) -> str:
        return self.conn.client_id


@dataclass(frozen=True, slots=True)
class Coverage:
    """What one connection may already hold of one stream: every message in ``(start, floor]``
    that matches ``selection`` was queued to it, and nothing above ``floor``."""

    start: int
    floor: int
    selection: dict[str, Any]  # the filter's params without presentation flags (``latest``)


def selection(flt: StreamFilter) -> dict[str, Any]:
    """Which messages a filter lets through (its params, minus ``latest``), for comparison."""
    params = flt.params_dict()
    params.pop("latest", None)
    return params


@dataclass(slots=True)
class _Client:
    subscriptions: dict[Stream, Subscription] = field(default_factory=dict)
    operations: TokenBucket | None = None
    ended: dict[Stream, Coverage] = field(default_factory=dict)  # of subscriptions no longer held

    @property
    def weight(self) -> int:
        return sum(sub.filter.weight for sub in self.subscriptions.values())


class SubscriptionManager:
    """Per-client subscriptions and the stream/symbol index."""

    def __init__(self, max_per_client: int = 100, operations_per_hour: int = 50) -> None:
        self.max_per_client = max_per_client
        self.operations_per_hour = operations_per_hour
        self._clients: dict[str, _Client] = {}
        self._by_symbol: dict[Stream, dict[str, dict[str, Subscription]]] = {s: {} for s in Stream}
        self._unfiltered: dict[Stream, dict[str, Subscription]] = {s: {} for s in Stream}

    def subscribe(
        self, conn: Connection, stream: Stream, flt: StreamFilter, now: float, *, restoring: bool = False
    ) -> Subscription:
        """Add or replace ``conn``'s subscription to ``stream``; enforces both limits.

        Restoring a saved session (``restoring``) does not spend subscribe operations.
        """
        client = self._clients.get(conn.client_id) or _Client()
        if client.operations is None:
            client.operations = TokenBucket(self.operations_per_hour / 3600, self.operations_per_hour, now)
        self._clients[conn.client_id] = client
        if not restoring and not client.operations.take(now):
            raise RequestError(
                ErrorCode.SUBSCRIPTION_LIMIT_EXCEEDED,
                f"at most {self.operations_per_hour} subscribe operations per hour",
                {"retry_after": round(client.operations.retry_after(), 1)},
            )
        previous = client.subscriptions.get(stream)
        weight = client.weight - (previous.filter.weight if previous else 0) + flt.weight
        if weight > self.max_per_client:
            raise RequestError(
                ErrorCode.SUBSCRIPTION_LIMIT_EXCEEDED,
                f"at most {self.max_per_client} subscriptions per client",
                {"limit": self.max_per_client, "requested": weight},
            )
        if previous is not None:
            self._unindex(previous)
        sub = Subscription(conn, stream, flt)
        client.subscriptions[stream] = sub
        self._index(sub)
        return sub

    def unsubscribe(self, client_id: str, stream: Stream, position: int) -> bool:
        """Remove the subscription; ``position`` (the stream's offset now) bounds what it may
        have queued, remembered for a later re-subscribe with recovery."""
        client = self._clients.get(client_id)
        sub = client.subscriptions.pop(stream, None) if client else None
        if client is None or sub is None:
            return False
        self._unindex(sub)
        client.ended[stream] = Coverage(sub.start, position, selection(sub.filter))
        return True

    def coverage(self, client_id: str, stream: Stream, position: int) -> Coverage | None:
        """What ``client_id`` may already hold of ``stream`` (``position``: the stream's offset
        now); None if it never subscribed to it on this connection."""
        client = self._clients.get(client_id)
        if client is None:
            return None
        sub = client.subscriptions.get(stream)
        if sub is not None:
            return Coverage(sub.start, position, selection(sub.filter))
        return client.ended.get(stream)

    def rebase(self, stream: Stream, offset: int) -> None:
        """The stream's offsets jumped (a new epoch, or a gap this node could not fill): every
        subscription is gap-free only from ``offset`` on, and ended coverage is void."""
        for client in self._clients.values():
            sub = client.subscriptions.get(stream)
            if sub is not None:
                sub.start = offset
            client.ended.pop(stream, None)

    def remove_client(self, client_id: str) -> list[Subscription]:
        """Drop every subscription of a client (on disconnect); returns what was dropped."""
        client = self._clients.pop(client_id, None)
        if client is None:
            return []
        subs = list(client.subscriptions.values())
        for sub in subs:
            self._unindex(sub)
        return subs

    def of_client(self, client_id: str) -> list[Subscription]:
        client = self._clients.get(client_id)
        return list(client.subscriptions.values()) if client else []

    def recipients(self, stream: Stream, symbol: object) -> Iterator[Subscription]:
        """Candidate subscriptions for a message (symbol index + unfiltered); filters not applied."""
        yield from self._unfiltered[stream].values()
        if isinstance(symbol, str):
            by_symbol = self._by_symbol[stream].get(symbol)
            if by_symbol:
                yield from by_symbol.values()

    def count(self, stream: Stream | None = None) -> int:
        streams = [stream] if stream is not None else list(Stream)
        return sum(
            len(self._unfiltered[s]) + len({c for subs in self._by_symbol[s].values() for c in subs})
            for s in streams
        )

    def _index(self, sub: Subscription) -> None:
        symbols = sub.filter.symbols
        if symbols is None:
            self._unfiltered[sub.stream][sub.client_id] = sub
            return
        by_symbol = self._by_symbol[sub.stream]
        for symbol in symbols:
            by_symbol.setdefault(symbol, {})[sub.client_id] = sub

    def _unindex(self, sub: Subscription) -> None:
        symbols = sub.filter.symbols
        if symbols is None:
            self._unfiltered[sub.stream].pop(sub.client_id, None)
            return
        by_symbol = self._by_symbol[sub.stream]
        for symbol in symbols:
            holders = by_symbol.get(symbol)
            if holders is not None:
                holders.pop(sub.client_id, None)
                if not holders:
                    del by_symbol[symbol]
