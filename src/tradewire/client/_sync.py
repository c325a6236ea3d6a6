"""A blocking client for notebooks and scripts: the async client on a loop in its own thread.

Works where an event loop is already running in the calling thread (Jupyter), because it never
touches that loop. Every protocol method of :class:`~tradewire.client.Client` is available with
the same arguments and blocks until the reply; subscriptions are plain iterators.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Self, TypeVar

from tradewire.client._api import ProtocolMethods
from tradewire.client._client import Client
from tradewire.client._subscription import StreamMessage, Subscription

T = TypeVar("T")
_PROTOCOL_METHODS = frozenset(
    name for name in vars(ProtocolMethods) if not name.startswith("_") and name != "request"
)


class SyncSubscription:
    """Blocking iterator over a :class:`Subscription`."""

    def __init__(self, client: SyncClient, subscription: Subscription) -> None:
        self._client = client
        self.subscription = subscription

    def get(self, timeout: float | None = None) -> StreamMessage:
        """The next message; ``TimeoutError`` after ``timeout`` s, ``StopIteration`` at the end."""
        try:
            return self._client._call(self.subscription.get(timeout))
        except StopAsyncIteration:
            raise StopIteration from None

    def __iter__(self) -> Iterator[StreamMessage]:
        return self

    def __next__(self) -> StreamMessage:
        return self.get()

    def unsubscribe(self) -> None:
        self._client._call(self.subscription.unsubscribe())


class SyncClient:
    """``with SyncClient(url, token) as client: client.heartbeat()``."""

    def __init__(self, url: str, token: Any = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tradewire-client", daemon=True)
        self._thread.start()
        self.client: Client = self._call(self._make(url, token, options))

    async def _make(self, url: str, token: Any, options: dict[str, Any]) -> Client:
        client = Client(url, token, **options)
        return await client.connect()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def request(self, message: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        return self._call(self.client.request(message, timeout=timeout))

    def subscribe(self, stream: str, **params: Any) -> SyncSubscription:
        return SyncSubscription(self, self._call(self.client.subscribe(stream, **params)))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """The protocol methods of :class:`Client` (``heartbeat``, ``session_start``, ...), blocking."""
        if name not in _PROTOCOL_METHODS:
            raise AttributeError(name)
        method = getattr(self.client, name)
        return lambda *args, **kwargs: self._call(method(*args, **kwargs))

    def close(self) -> None:
        """Close the connection and stop the loop thread."""
        if self._loop.is_closed():
            return
        self._call(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
