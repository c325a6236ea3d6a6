"""The asyncio client: one WebSocket, kept open across failures.

::

    connect ─ welcome ─ auth ─ subscribe ...        (state: open)
        └─ link lost / server close ─ backoff with full jitter ─ reconnect with the last
           reconnect_token (X-Reconnect-Token):
             accepted  → the server restores auth and subscriptions and replays what it did
                         not deliver; duplicates are dropped by offset
             rejected  → auth again, resubscribe each stream with recover:{offset, epoch}
                         from the client's own last offset

Requests are matched to replies by ``id`` and time out on their own. A token source (a string
or a callable returning one, sync or async) is asked again before the token expires and after
an unsolicited ``token_expired``; the fresh token is sent with ``auth`` on the live connection.

One reader task per connection decodes frames: replies resolve their request, stream messages go
to their :class:`Subscription` (awaiting its bounded queue, which is how a slow consumer slows
the socket down), unsolicited errors are handled or logged.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tradewire.client._api import ProtocolMethods, build
from tradewire.client._backoff import FINAL_CLOSE_CODES, Backoff
from tradewire.client._errors import (
    AuthenticationFailed,
    ClientClosed,
    ClientError,
    ConnectionLost,
    RequestTimeout,
    ServerError,
)
from tradewire.client._subscription import Subscription
from tradewire.protocol.messages import MessageType, Stream

TokenSource = str | Callable[[], str | Awaitable[str]]
_log = logging.getLogger("tradewire.client")  # stdlib logging: silent unless the application configures it
_CONNECT_ERRORS = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed)


class State(StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Client(ProtocolMethods):
    """``async with Client(url, token) as client: sub = await client.subscribe("signals")``."""

    def __init__(
        self,
        url: str,
        token: TokenSource | None = None,
        *,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        refresh_before: float | None = 60.0,
        max_queue: int = 10_000,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.url = url
        self.request_timeout = request_timeout  # default per request
        self.open_timeout = open_timeout  # TCP + WebSocket handshake + welcome
        self.reconnect = reconnect  # False: a lost connection closes the client
        self.backoff = backoff or Backoff()
        # Seconds before expiry to re-auth (at most half the token's life); None: only after the
        # server's token_expired notice (within its grace period).
        self.refresh_before = refresh_before
        self.max_queue = max_queue  # per subscription
        self.state = State.CLOSED
        self.client_id: str | None = None
        self.welcome: dict[str, Any] = {}  # the last welcome
        self.user: dict[str, Any] | None = None  # the last `authenticated` reply
        self.reconnects = 0  # successful reconnects
        self._token = token
        self._on_event = on_event
        self._ws: ClientConnection | None = None
        self._reconnect_token: str | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._open = asyncio.Event()  # set while requests can be sent
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[int | None] | None = None  # of the current connection
        self._timers: set[asyncio.Task[None]] = set()  # heartbeat and refresh of this connection

    # ------------------------------------------------------------------ lifecycle
    async def connect(self) -> Self:
        """Open the first connection (errors raise here: wrong URL, refused token), then keep it.
        A no-op while the client is already connected or reconnecting."""
        if self.state is not State.CLOSED:
            return self
        self._closing = False
        self.state = State.CONNECTING
        try:
            reader = await self._establish()
        except BaseException:
            self.state = State.CLOSED
            raise
        self._runner = asyncio.get_running_loop().create_task(self._run(reader))
        return self

    async def close(self) -> None:
        """Close with 1000, fail pending requests, end every subscription's iterator."""
        self._closing = True
        self._open.clear()
        if self._reader is not None:
            self._reader.cancel()  # it may be waiting for a full subscription queue
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        self._finish()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _finish(self) -> None:
        self.state = State.CLOSED
        self._open.clear()
        self._stop_timers()
        self._fail_pending(ClientClosed("the client is closed"))
        for sub in self._subscriptions.values():
            sub.end()

    async def _run(self, reader: asyncio.Task[int | None]) -> None:
        """Wait for each connection to end; reconnect unless the end is final."""
        while True:
            code = await reader
            self._open.clear()
            self._stop_timers()
            self._fail_pending(ConnectionLost(f"connection closed ({code})"))
            self._emit("disconnected", {"code": code})
            if self._closing or not self.reconnect or code in FINAL_CLOSE_CODES:
                break
            next_reader = await self._reconnect(code)
            if next_reader is None:
                break
            reader = next_reader
        self._finish()

    async def _reconnect(self, code: int | None) -> asyncio.Task[int | None] | None:
        self.state = State.RECONNECTING
        for attempt in itertools.count():
            await asyncio.sleep(self.backoff.delay(attempt, code if attempt == 0 else None))
            if self._closing:
                return None
            try:
                reader = await self._establish()
            except AuthenticationFailed as exc:
                _log.error("reconnect: auth refused: %s: %s", exc.code, exc.message)
                return None
            except (*_CONNECT_ERRORS, ConnectionLost, RequestTimeout) as exc:
                _log.info("reconnect attempt %d failed: %r", attempt + 1, exc)
                continue
            self.reconnects += 1
            return reader
        return None  # pragma: no cover - itertools.count() never ends

    async def _establish(self) -> asyncio.Task[int | None]:
        """Connect, read the welcome, start the reader, then authenticate and (re)subscribe."""
        headers = {"X-Reconnect-Token": self._reconnect_token} if self._reconnect_token else None
        ws = await connect(
            self.url,
            additional_headers=headers,
            open_timeout=self.open_timeout,
            close_timeout=2.0,
            max_size=2**26,
        )
        try:
            welcome = orjson.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
        except BaseException:
            await ws.close()
            raise
        self._ws, self.welcome = ws, welcome
        self.client_id = welcome.get("client_id")
        self._reconnect_token = welcome.get("reconnect_token")
        reader = asyncio.get_running_loop().create_task(self._read(ws))
        self._reader = reader
        try:
            await self._resume(welcome)
        except BaseException:
            await ws.close()
            await asyncio.gather(reader, return_exceptions=True)
            raise
        self._start_timer(self._heartbeats(ws, float(welcome.get("heartbeat_interval", 30.0))))
        self.state = State.OPEN
        self._open.set()
        self._emit("reconnected" if welcome.get("reconnected") else "connected", welcome)
        return reader

    async def _resume(self, welcome: dict[str, Any]) -> None:
        restored: dict[str, dict[str, Any]] = {}
        if welcome.get("reconnected"):
            restored = {s["stream"]: s for s in welcome.get("subscriptions") or []}
            if welcome.get("authenticated") and welcome.get("user_id") is not None:
                self._schedule_refresh()
            elif self._token is not None:
                reply = await self._authenticate()
                restored.update({s["stream"]: s for s in reply.get("restored_subscriptions") or []})
        else:
            if welcome.get("reconnect_rejected"):
                _log.info("reconnect token refused: %s", welcome["reconnect_rejected"])
            if self._token is not None:
                await self._authenticate()
        for stream, sub in list(self._subscriptions.items()):
            state = restored.get(stream)
            if state is not None and state.get("status") == "subscribed":
                sub.subscribed(state)
                if state.get("recovered") is False:
                    self._emit("recovery_failed", {"stream": stream})
            else:
                await self._resubscribe(sub)

    async def _resubscribe(self, sub: Subscription) -> None:
        """Subscribe again from our own last offset; a refusal ends that subscription only."""
        try:
            await self._send_subscribe(sub, recover=True)
        except ServerError as exc:
            _log.warning("resubscribe to %s refused: %s", sub.stream, exc.code)
            self._subscriptions.pop(sub.stream, None)
            sub.end()
            self._emit("subscription_ended", {"stream": sub.stream, "error_code": exc.code})

    # ------------------------------------------------------------------ auth
    async def _authenticate(self) -> dict[str, Any]:
        token = await self._fresh_token()
        try:
            reply = await self._request(build(MessageType.AUTH, token=token), self.request_timeout, False)
        except ServerError as exc:
            raise AuthenticationFailed(exc.envelope) from None
        self.user = reply
        self._schedule_refresh()
        return reply

    async def _fresh_token(self) -> str:
        source = self._token
        if source is None:
            raise ClientClosed("no token source")
        if isinstance(source, str):
            return source
        token = source()
        return await token if inspect.isawaitable(token) else token

    def _schedule_refresh(self) -> None:
        expires_at = (self.user or {}).get("expires_at") or self.welcome.get("expires_at")
        if (
            not isinstance(expires_at, str)
            or self.refresh_before is None
            or isinstance(self._token, str | None)
        ):
            return  # a fixed token is used until it expires; None: refresh on token_expired only
        left = datetime.fromisoformat(expires_at).timestamp() - time.time()
        self._start_timer(self._refresh_after(max(0.0, left - min(self.refresh_before, left / 2))))

    async def _refresh_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.refresh()

    async def refresh(self) -> None:
        """Authenticate the live connection again with a token from the token source."""
        try:
            await self._authenticate()
        except (ClientError, OSError, ConnectionClosed) as exc:
            _log.warning("token refresh failed: %r", exc)
            return
        self._emit("token_refreshed", {"expires_at": (self.user or {}).get("expires_at")})

    # ------------------------------------------------------------------ requests
    async def request(self, message: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Send ``message`` (waiting for the connection while it reconnects) and return its reply."""
        timeout = self.request_timeout if timeout is None else timeout
        if self.state is State.CLOSED:
            raise ClientClosed("the client is closed")
        try:
            await asyncio.wait_for(self._open.wait(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"{message.get('type')}: not connected within {timeout} s") from None
        return await self._request(message, timeout, True)

    async def _request(self, message: dict[str, Any], timeout: float, user: bool) -> dict[str, Any]:
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await ws.send(orjson.dumps({**message, "id": request_id}).decode())
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(
                f"{message.get('type')} (id {request_id}): no reply in {timeout} s"
            ) from None
        except ConnectionClosed as exc:
            raise ConnectionLost(f"connection closed ({exc.rcvd.code if exc.rcvd else None})") from None
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise ServerError(reply)
        return reply

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    # ------------------------------------------------------------------ subscriptions
    async def subscribe(self, stream: str | Stream, **params: Any) -> Subscription:
        """Subscribe (filters as keyword arguments: ``symbols=[...]``); one per stream —
        subscribing again replaces the filter and returns the same object."""
        name = Stream(stream).value
        sub = self._subscriptions.get(name)
        if sub is None:
            sub = Subscription(name, params, self.max_queue, self._unsubscribe)
            self._subscriptions[name] = sub
        sub.params = params
        try:
            await asyncio.wait_for(self._open.wait(), self.request_timeout)
            await self._send_subscribe(sub, recover=False)
        except BaseException:
            if sub.last_offset is None:
                self._subscriptions.pop(name, None)
            raise
        return sub

    async def _send_subscribe(self, sub: Subscription, *, recover: bool) -> None:
        point = sub.recover_point() if recover else None
        message = build(MessageType.SUBSCRIBE, stream=sub.stream, params=sub.params, recover=point)
        reply = await self._request(message, self.request_timeout, False)
        sub.subscribed(reply)
        if point is not None and reply.get("recovered") is False:
            self._emit("recovery_failed", {"stream": sub.stream})

    async def _unsubscribe(self, stream: str) -> None:
        sub = self._subscriptions.pop(stream, None)
        if sub is not None:
            sub.end()
        await self.request(build(MessageType.UNSUBSCRIBE, stream=stream))

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        return dict(self._subscriptions)

    # ------------------------------------------------------------------ the reader
    async def _read(self, ws: ClientConnection) -> int | None:
        """Dispatch every frame of ``ws``; returns the close code when it ends."""
        try:
            async for raw in ws:
                await self._dispatch(orjson.loads(raw))
        except ConnectionClosed:
            pass
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:  # not the protocol: start over
            _log.error("unusable frame from the server, reconnecting: %r", exc)
            await ws.close(1002, "unusable frame")
            return None
        return ws.close_code

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "data":
            sub = self._subscriptions.get(frame.get("stream", ""))
            message = sub.accept(frame) if sub is not None else None
            if sub is not None and message is not None:
                await sub.put(message)
            return
        request_id = frame.get("id")
        future = self._pending.get(request_id) if isinstance(request_id, int) else None
        if future is not None:
            if not future.done():
                future.set_result(frame)
        elif frame.get("type") == "error":
            self._unsolicited_error(frame)

    def _unsolicited_error(self, frame: dict[str, Any]) -> None:
        if frame.get("error_code") == "token_expired" and self._token is not None:
            self._start_timer(self.refresh())
        else:
            _log.warning("unsolicited error from the server: %s", frame.get("error_code"))

    # ------------------------------------------------------------------ timers
    async def _heartbeats(self, ws: ClientConnection, interval: float) -> None:
        """Application heartbeats: the ASGI endpoint does not see protocol pings."""
        while True:
            await asyncio.sleep(interval / 2)
            await ws.send('{"type":"heartbeat"}')

    def _start_timer(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._timers.add(task)
        task.add_done_callback(self._timer_done)

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        self._timers.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, ConnectionClosed | OSError):
            _log.debug("timer ended with the connection: %r", error)
        elif error is not None:
            _log.warning("client timer failed: %r", error)

    def _stop_timers(self) -> None:
        for task in self._timers:
            task.cancel()
        self._timers.clear()

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        _log.debug("%s (client %s)", event, self.client_id)
        if self._on_event is not None:
            self._on_event(event, data)
