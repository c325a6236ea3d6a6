"""Client address and metadata, resolved once per connection (the seed's ``ClientUtils``).

The address comes from the socket. ``X-Forwarded-For`` is believed only when the socket peer is a
configured trusted proxy, and then the right-most address that is not itself a trusted proxy is
taken, so a client cannot spoof its address by sending the header (the original saw every client
as 127.0.0.1 and shared one rate limit between all of them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the server knows about a client at connect time."""

    address: str
    user_agent: str
    origin: str | None
    path: str


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, or the forwarded one when the peer is a trusted proxy."""
    if not forwarded_for or not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def client_info(peer: str, headers: Mapping[str, str], path: str, trusted: tuple[Network, ...]) -> ClientInfo:
    """Build :class:`ClientInfo` from the socket peer and the upgrade request headers."""
    return ClientInfo(
        address=client_address(peer, headers.get("x-forwarded-for"), trusted),
        user_agent=headers.get("user-agent", "")[:256],
        origin=headers.get("origin"),
        path=path,
    )


def reconnect_token(headers: Mapping[str, str], query: str) -> str | None:
    """The reconnect token from ``X-Reconnect-Token`` or the ``reconnect_token`` query parameter
    (browsers cannot set headers on a WebSocket)."""
    token = headers.get("x-reconnect-token")
    if token:
        return token
    values = parse_qs(query).get("reconnect_token")
    return values[0] if values else None


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """True when no allow-list is configured, or ``origin`` is on it (``*`` allows any).

    A request without an Origin header (a bot, not a browser) is allowed: the allow-list protects
    browsers from cross-site use of their credentials, and non-browser clients send no Origin.
    """
    if not allowed or "*" in allowed or origin is None:
        return True
    return origin.rstrip("/") in allowed
