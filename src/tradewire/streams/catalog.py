"""The stream catalog as data: permission, history bounds and delivery policy per stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tradewire.auth.permissions import Permission
from tradewire.auth.tokens import Principal
from tradewire.protocol.messages import Stream


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """How one stream is guarded, kept and delivered."""

    stream: Stream
    permission: Permission | None  # needed to subscribe (None: any authenticated user)
    history_size: int  # messages kept for recovery
    history_seconds: float  # and for at most this long
    conflatable: bool = False  # a backed-up client may get only the latest per symbol
    latest_on_subscribe: bool = False  # may send the last message per symbol after `subscribed`
    owner_scoped: bool = False  # messages with an `owner` reach only that user (and admins)


def scope_owner(spec: StreamSpec, principal: Principal | None) -> str | None:
    """The owner a subscriber's filter must require on ``spec``'s stream (None: no restriction)."""
    if not spec.owner_scoped or principal is None or Permission.ADMIN in principal.permissions:
        return None
    return principal.user_id


CATALOG: Final[dict[Stream, StreamSpec]] = {
    spec.stream: spec
    for spec in (
        StreamSpec(Stream.MARKET_DATA, Permission.READ_MARKET_DATA, 10_000, 300, True, True),
        StreamSpec(Stream.INDICATORS, Permission.READ_INDICATORS, 10_000, 300, False, True),
        StreamSpec(Stream.SIGNALS, Permission.READ_SIGNALS, 10_000, 3600, owner_scoped=True),
        StreamSpec(Stream.EXECUTION_STATUS, Permission.READ_SESSIONS, 5_000, 3600, owner_scoped=True),
        StreamSpec(Stream.EXECUTION_RESULT, Permission.READ_SESSIONS, 1_000, 3600, owner_scoped=True),
        StreamSpec(Stream.STATE_MACHINES, Permission.READ_SIGNALS, 5_000, 3600, owner_scoped=True),
        StreamSpec(Stream.ORDERS, Permission.READ_SIGNALS, 10_000, 3600, owner_scoped=True),
        StreamSpec(Stream.POSITIONS, Permission.READ_SIGNALS, 10_000, 3600, owner_scoped=True),
        StreamSpec(Stream.HEALTH_CHECK, None, 100, 3600),
    )
}
