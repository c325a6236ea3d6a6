"""Python client of the tradewire protocol (asyncio, with a blocking wrapper for notebooks).

::

    from tradewire.client import Client

    async with Client("ws://127.0.0.1:8765/ws", token) as client:
        prices = await client.subscribe("market_data", symbols=["BTC-USD"])
        async for message in prices:
            print(message.offset, message.data["price"])

Reconnects with exponential backoff and full jitter, resumes with the reconnect token, recovers
each stream from its own last offset (deduplicated), refreshes the token through a callable,
and times out requests one by one. See docs/CLIENT.md.
"""

from tradewire.client._api import build
from tradewire.client._backoff import Backoff
from tradewire.client._client import Client, State, TokenSource
from tradewire.client._errors import (
    AuthenticationFailed,
    ClientClosed,
    ClientError,
    ConnectionLost,
    RequestTimeout,
    ServerError,
)
from tradewire.client._subscription import StreamMessage, Subscription
from tradewire.client._sync import SyncClient, SyncSubscription

__all__ = [
    "AuthenticationFailed",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "RequestTimeout",
    "ServerError",
    "State",
    "StreamMessage",
    "Subscription",
    "SyncClient",
    "SyncSubscription",
    "TokenSource",
    "build",
]
