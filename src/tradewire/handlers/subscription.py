"""``subscribe`` and ``unsubscribe``.

``subscribe`` checks the stream's permission, validates the filter, registers the subscription,
then (optionally) queues recovery from history (``recover:{offset, epoch}``) or the latest value
per symbol (``params.latest`` on ``market_data``/``indicators``). The ``subscribed`` reply is
written immediately; the queued frames follow it in the next flush, so the reply always comes
first and the seam between recovered and live messages has no gap and no duplicate.

With a remote history (cluster mode) ``subscribe`` is an async handler: it first fetches what it
needs from the broker (the node's deliveries on that stream are held meanwhile), then does the same
synchronously, so the same rules hold; see :meth:`BroadcastProvider.fetch`. Requests of one
connection may then complete out of order: wait for ``subscribed`` before ``unsubscribe``.

Re-subscribing (while subscribed, or after ``unsubscribe`` with frames still queued) keeps each
offset at most once and in increasing order per connection and stream: recovery and latest
values are queued only above what the connection may already hold
(:meth:`SubscriptionManager.coverage`), and ``recovered`` is true only when that is gap-free.

With an engine that knows its instruments, ``symbols`` and ``exclude_symbols`` must name known
symbols (``unknown_symbol`` with close matches otherwise): a filter on ``["btc-usd"]`` would
silently deliver nothing. The check is a frozen-set lookup.
"""

from __future__ import annotations

from typing import Any

from tradewire.clock import Clock
from tradewire.controller import SymbolDirectory
from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.errors import PermissionDenied
from tradewire.protocol.messages import MessageType, Subscribe, Unsubscribe
from tradewire.streams.broadcast import BroadcastProvider, Fetched
from tradewire.streams.catalog import CATALOG, scope_owner
from tradewire.streams.filters import StreamFilter, parse_filter
from tradewire.streams.subscriptions import Coverage, Subscription, SubscriptionManager, selection


class SubscriptionHandler:
    def __init__(
        self,
        subscriptions: SubscriptionManager,
        broadcast: BroadcastProvider,
        clock: Clock,
        symbols: SymbolDirectory | None = None,
    ) -> None:
        self._subscriptions = subscriptions
        self._broadcast = broadcast
        self._clock = clock
        self._symbols = symbols  # None: symbols are not checked (no engine behind the gateway)

    def routes(self) -> list[RouteSpec]:
        """Inline ``subscribe`` when the broker's history is local, async when it is remote."""
        local = self._broadcast.broker.local_reads
        return [
            RouteSpec(
                MessageType.SUBSCRIBE, self.handle_subscribe if local else self.handle_subscribe_remote
            ),
            RouteSpec(MessageType.UNSUBSCRIBE, self.handle_unsubscribe),
        ]

    def _filter(self, conn: Connection, message: Subscribe) -> StreamFilter:
        spec = CATALOG[message.stream]
        principal = conn.principal
        if spec.permission is not None and (
            principal is None or spec.permission not in principal.permissions
        ):
            raise PermissionDenied(spec.permission.value)
        flt = parse_filter(message.params, scope_owner(spec, principal))
        if self._symbols is not None:
            params = flt.params
            if params.symbols:
                self._symbols.require(params.symbols, path="params.symbols")
            if params.exclude_symbols:
                self._symbols.require(params.exclude_symbols, path="params.exclude_symbols")
        return flt

    def handle_subscribe(self, conn: Connection, message: Subscribe) -> dict[str, Any]:
        flt = self._filter(conn, message)
        spec = CATALOG[message.stream]
        offset, epoch = self._broadcast.position(message.stream)
        prior = self._subscriptions.coverage(conn.client_id, message.stream, offset)
        sub = self._subscriptions.subscribe(conn, message.stream, flt, self._clock.monotonic())
        recovered: bool | None = None
        latest = 0
        recover = message.recover
        if recover is not None:
            recovered = self._broadcast.recover(sub, recover.offset, recover.epoch, prior)
        elif flt.latest and spec.latest_on_subscribe:
            latest = self._broadcast.send_latest(sub, prior.floor if prior is not None else 0)
        sub.start = _coverage_start(sub, offset, prior, recover.offset if recover and recovered else None)
        return _subscribed(message, offset, epoch, recovered, flt, latest)

    async def handle_subscribe_remote(self, conn: Connection, message: Subscribe) -> dict[str, Any]:
        """:meth:`handle_subscribe` over a remote history: fetch first, then decide inline."""
        flt = self._filter(conn, message)
        spec = CATALOG[message.stream]
        recover = message.recover
        wants_latest = recover is None and flt.latest and spec.latest_on_subscribe
        fetched = await self._broadcast.fetch(
            message.stream, recover.offset if recover is not None else None, wants_latest
        )
        try:
            if conn.closed:
                return _subscribed(message, 0, "", None, flt, 0)
            return self._subscribe_fetched(conn, message, flt, fetched)
        finally:
            self._broadcast.release(fetched)

    def _subscribe_fetched(
        self, conn: Connection, message: Subscribe, flt: StreamFilter, fetched: Fetched
    ) -> dict[str, Any]:
        offset, epoch = self._broadcast.position(message.stream)
        prior = self._subscriptions.coverage(conn.client_id, message.stream, offset)
        sub = self._subscriptions.subscribe(conn, message.stream, flt, self._clock.monotonic())
        recovered: bool | None = None
        latest = 0
        recover = message.recover
        if recover is not None:
            recovered = self._broadcast.recover_fetched(sub, fetched, recover.offset, recover.epoch, prior)
        elif fetched.latest is not None:
            latest = self._broadcast.send_latest_fetched(
                sub, fetched, prior.floor if prior is not None else 0
            )
        sub.start = _coverage_start(sub, offset, prior, recover.offset if recover and recovered else None)
        return _subscribed(message, offset, epoch, recovered, flt, latest)

    def handle_unsubscribe(self, conn: Connection, message: Unsubscribe) -> dict[str, Any]:
        position, _ = self._broadcast.position(message.stream)
        removed = self._subscriptions.unsubscribe(conn.client_id, message.stream, position)
        return {
            "type": "response",
            "status": "unsubscribed",
            "stream": message.stream.value,
            "was_subscribed": removed,
        }


def _subscribed(
    message: Subscribe, offset: int, epoch: str, recovered: bool | None, flt: StreamFilter, latest: int
) -> dict[str, Any]:
    return {
        "type": "response",
        "status": "subscribed",
        "stream": message.stream.value,
        "offset": offset,
        "epoch": epoch,
        "recovered": recovered,
        "filters": flt.describe(),
        "latest_sent": latest,
    }


def _coverage_start(
    sub: Subscription, position: int, prior: Coverage | None, recovered_from: int | None
) -> int:
    """From which offset ``sub`` is gap-free: the recovered offset, else the prior coverage's
    start when nothing was published since it ended with the same selection, else now."""
    if recovered_from is not None:
        return recovered_from
    if prior is not None and prior.floor == position and prior.selection == selection(sub.filter):
        return prior.start
    return position
