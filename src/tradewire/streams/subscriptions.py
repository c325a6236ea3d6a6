"""Who is subscribed to what: per-client subscriptions, limits, and an index for publishing.

Index: stream → symbol → {client_id: Subscription} for symbol-filtered subscriptions, and
stream → {client_id: Subscription} for the rest, so a publish visits only the subscribers of
its symbol plus the unfiltered ones instead of every client. Subscriptions are removed when the
connection closes (the original leaked them).

Limits (seed defaults): a client's subscriptions weigh at most 100 (a subscription with a symbol
list weighs one per symbol, otherwise one); at most 50 subscribe operations per hour, as a token
bucket. Subscribing again to a stream replaces its filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

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

    @property
    def client_id(self) -> str:
        return self.conn.client_id


@dataclass(slots=True)
class _Client:
    subscriptions: dict[Stream, Subscription] = field(default_factory=dict)
    operations: TokenBucket | None = None

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

    def unsubscribe(self, client_id: str, stream: Stream) -> bool:
        client = self._clients.get(client_id)
        sub = client.subscriptions.pop(stream, None) if client else None
        if sub is None:
            return False
        self._unindex(sub)
        return True

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
