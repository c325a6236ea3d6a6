"""A node's messaging link through Redis: its own channel, the cluster channels, and requests.

Pub/sub (fire and forget) carries what must reach live nodes now: event-bus events for other
nodes, notifications to every node, and requests to one node with their replies (``request``
waits for the reply on the asking node's own channel, bounded by a timeout). Outgoing messages are
queued (bounded: overflow is dropped and counted, never buffered without limit) and written by one
task in one pipeline per batch. When Redis is unreachable the link retries with capped, jittered
backoff and resubscribes its channels in one command; messages sent meanwhile are dropped and
counted (``tradewire_cluster_events{event="link_dropped"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tradewire.metrics import ServerMetrics

_log = structlog.get_logger("tradewire.cluster")
Handler = Callable[[dict[str, Any]], None]
QUEUE_MAX = 10_000
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0


def new_node_id() -> str:
    return "n-" + secrets.token_hex(4)


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast (callers own retries and degrade instead of hanging)."""
    return aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))


class RemoteError(Exception):
    """A request to another node failed or timed out (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClusterLink:
    """The node's channels (``<prefix>node:<id>``, ``<prefix>bus``, ``<prefix>cluster``)."""

    def __init__(self, url: str, prefix: str, node_id: str, metrics: ServerMetrics) -> None:
        self.redis = connect(url)
        self.prefix = prefix
        self.node_id = node_id
        self._metrics = metrics
        self._handlers: dict[bytes, Handler] = {}
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._wake = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self.on(self.node_channel(node_id), self._on_direct)
        self._requests: dict[str, Callable[[dict[str, Any]], Any]] = {}

    def node_channel(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def on(self, channel: str, handler: Handler) -> None:
        """Call ``handler(message)`` for every message on ``channel`` (register before start)."""
        self._handlers[channel.encode()] = handler

    def serve(self, kind: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        """Answer requests of ``kind`` sent to this node (``handler`` may be async)."""
        self._requests[kind] = handler

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop()), loop.create_task(self._write_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._close_pubsub()
        await self.redis.aclose()

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` for ``channel``; never blocks (overflow and outages drop, counted)."""
        if not self.connected or len(self._queue) >= QUEUE_MAX:
            self._metrics.cluster["link_dropped"] += 1
            return
        self._queue.append((channel.encode(), orjson.dumps(message)))
        if len(self._queue) == 1:
            self._wake.set()

    def expect(self, request_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the reply to ``request_id`` (whoever sends it with :meth:`reply`)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    async def request(self, node_id: str, kind: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Ask ``node_id`` and wait for its reply (:class:`RemoteError` on timeout or outage)."""
        request_id = secrets.token_hex(8)
        future = self.expect(request_id)
        try:
            self.send(
                self.node_channel(node_id),
                {"request": kind, "id": request_id, "from": self.node_id, "body": body},
            )
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RemoteError("timeout") from None
        finally:
            self._waiting.pop(request_id, None)

    def reply(self, to_node: str, request_id: str, body: dict[str, Any]) -> None:
        self.send(self.node_channel(to_node), {"reply": request_id, "body": body})

    def _on_direct(self, message: dict[str, Any]) -> None:
        reply_to = message.get("reply")
        if isinstance(reply_to, str):
            future = self._waiting.get(reply_to)
            if future is not None and not future.done():
                future.set_result(message.get("body") or {})
            return
        kind = message.get("request")
        handler = self._requests.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._metrics.cluster["unknown_request"] += 1
            return
        asyncio.get_running_loop().create_task(self._answer(handler, message))

    async def _answer(self, handler: Callable[[dict[str, Any]], Any], message: dict[str, Any]) -> None:
        body = handler(message.get("body") or {})
        if asyncio.iscoroutine(body):
            body = await body
        sender, request_id = message.get("from"), message.get("id")
        if isinstance(sender, str) and isinstance(request_id, str):
            self.reply(sender, request_id, body if isinstance(body, dict) else {})

    # ------------------------------------------------------------------ I/O
    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                pipe = self.redis.pipeline(transaction=False)
                for channel, payload in batch:
                    pipe.publish(channel, payload)
                try:
                    await pipe.execute()
                except (RedisError, OSError) as exc:
                    self._metrics.cluster["link_dropped"] += len(batch)
                    _log.warning("cluster.link_send_failed", error=type(exc).__name__, dropped=len(batch))

    async def _read_loop(self) -> None:
        """Subscribe every channel in one command; on failure back off (jittered) and resubscribe."""
        delay = BACKOFF_MIN
        while True:
            try:
                await self._close_pubsub()
                pubsub = self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(*self._handlers)
                self.connected = True
                delay = BACKOFF_MIN
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                if self.connected:
                    _log.warning("cluster.link_lost", error=type(exc).__name__)
                self.connected = False
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter, not crypto
                delay = min(delay * 2, BACKOFF_MAX)

    def _dispatch(self, channel: bytes, payload: bytes) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._metrics.cluster["bad_message"] += 1
            return
        if isinstance(message, dict):
            handler(message)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):  # being replaced after a failure
                await pubsub.aclose()  # type: ignore[no-untyped-call]
