"""``subscribe`` and ``unsubscribe``.

``subscribe`` checks the stream's permission, validates the filter, registers the subscription,
then (optionally) queues recovery from history (``recover:{offset, epoch}``) or the latest value
per symbol (``params.latest`` on ``market_data``/``indicators``). The ``subscribed`` reply is
written immediately; the queued frames follow it in the next flush, so the reply always comes
first and the seam between recovered and live messages has no gap and no duplicate.

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
from tradewire.streams.broadcast import BroadcastProvider
from tradewire.streams.catalog import CATALOG, scope_owner
from tradewire.streams.filters import parse_filter
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
        return [
            RouteSpec(MessageType.SUBSCRIBE, self.handle_subscribe),
            RouteSpec(MessageType.UNSUBSCRIBE, self.handle_unsubscribe),
        ]

    def handle_subscribe(self, conn: Connection, message: Subscribe) -> dict[str, Any]:
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

    def handle_unsubscribe(self, conn: Connection, message: Unsubscribe) -> dict[str, Any]:
        position, _ = self._broadcast.position(message.stream)
        removed = self._subscriptions.unsubscribe(conn.client_id, message.stream, position)
        return {
            "type": "response",
            "status": "unsubscribed",
            "stream": message.stream.value,
            "was_subscribed": removed,
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
