"""In-process event bus (the embedded default). See :mod:`tradewire.bus.event_bus` for the contract."""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from typing import Any

import structlog

from tradewire.bus.event_bus import EventHandler, topic_matches
from tradewire.metrics import ServerMetrics

_log = structlog.get_logger("tradewire.bus")
YIELD_EVERY = 256


class _Subscriber:
    __slots__ = ("handler", "name", "pattern", "queue", "queue_size", "task", "wake")

    def __init__(self, name: str, pattern: str, handler: EventHandler, queue_size: int) -> None:
        self.name = name
        self.pattern = pattern
        self.handler = handler
        self.queue_size = queue_size
        self.queue: deque[tuple[str, dict[str, Any]]] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class InMemoryEventBus:
    """Per-subscriber bounded queues drained by per-subscriber tasks."""

    def __init__(self, metrics: ServerMetrics | None = None) -> None:
        self._metrics = metrics or ServerMetrics()
        self._subscribers: dict[str, _Subscriber] = {}
        self._by_topic: dict[str, list[_Subscriber]] = {}  # cache: topic → matching subscribers
        self._running = False

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        targets = self._by_topic.get(topic)
        if targets is None:
            targets = self._by_topic[topic] = [
                s for s in self._subscribers.values() if topic_matches(s.pattern, topic)
            ]
        for sub in targets:
            if len(sub.queue) >= sub.queue_size:
                self._metrics.bus_dropped[sub.name] += 1
                if self._metrics.bus_dropped[sub.name] % 1000 == 1:
                    _log.warning("bus.dropped", subscriber=sub.name, topic=topic)
                continue
            sub.queue.append((topic, payload))
            sub.wake.set()

    def subscribe(self, pattern: str, handler: EventHandler, *, name: str, queue_size: int = 10_000) -> None:
        if name in self._subscribers:
            raise ValueError(f"subscriber {name!r} already exists")
        sub = _Subscriber(name, pattern, handler, queue_size)
        self._subscribers[name] = sub
        self._by_topic.clear()
        if self._running:
            sub.task = asyncio.get_running_loop().create_task(self._drain(sub))

    def unsubscribe(self, name: str) -> None:
        sub = self._subscribers.pop(name, None)
        self._by_topic.clear()
        if sub is not None and sub.task is not None:
            sub.task.cancel()

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        loop = asyncio.get_running_loop()
        for sub in self._subscribers.values():
            sub.task = loop.create_task(self._drain(sub))

    async def stop(self) -> None:
        self._running = False
        tasks = [s.task for s in self._subscribers.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def pending(self, name: str) -> int:
        return len(self._subscribers[name].queue)

    async def _drain(self, sub: _Subscriber) -> None:
        while True:
            await sub.wake.wait()
            sub.wake.clear()
            handled = 0
            while sub.queue:
                handled += 1
                if handled % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let sockets and other subscribers run during a backlog
                topic, payload = sub.queue.popleft()
                try:
                    result = sub.handler(topic, payload)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - isolate a failing subscriber, keep its queue going
                    self._metrics.bus_failures[sub.name] += 1
                    _log.exception("bus.handler_failed", subscriber=sub.name, topic=topic)
