"""``subscribe`` and ``unsubscribe``.

``subscribe`` checks the stream's permission, validates the filter, registers the subscription,
then (optionally) queues recovery from history (``recover:{offset, epoch}``) or the latest value
per symbol (``params.latest`` on ``market_data``/``indicators``). The ``subscribed`` reply is
written immediately; the queued frames follow it in the next flush, so the reply always comes
first and the seam between recovered and live messages has no gap and no duplicate.
"""

from __future__ import annotations

from typing import Any

from tradewire.clock import Clock
from tradewire.core.connection import Connection
from tradewire.core.router import RouteSpec
from tradewire.errors import PermissionDenied
from tradewire.protocol.messages import MessageType, Subscribe, Unsubscribe
from tradewire.streams.broadcast import BroadcastProvider
from tradewire.streams.catalog import CATALOG, scope_owner
from tradewire.streams.filters import parse_filter
from tradewire.streams.subscriptions import SubscriptionManager


class SubscriptionHandler:
    def __init__(
        self, subscriptions: SubscriptionManager, broadcast: BroadcastProvider, clock: Clock
    ) -> None:
        self._subscriptions = subscriptions
        self._broadcast = broadcast
        self._clock = clock

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
        sub = self._subscriptions.subscribe(conn, message.stream, flt, self._clock.monotonic())
        offset, epoch = self._broadcast.position(message.stream)
        recovered: bool | None = None
        if message.recover is not None:
            recovered = self._broadcast.replay(sub, message.recover.offset, message.recover.epoch)
        latest = 0
        if flt.latest and spec.latest_on_subscribe and message.recover is None:
            latest = self._broadcast.send_latest(sub)
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
        removed = self._subscriptions.unsubscribe(conn.client_id, message.stream)
        return {
            "type": "response",
            "status": "unsubscribed",
            "stream": message.stream.value,
            "was_subscribed": removed,
        }
