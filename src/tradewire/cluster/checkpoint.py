"""Session checkpoints: a client of a node that crashed can resume on another node.

A node saves every live session at disconnect, but a node killed outright saves nothing. In
cluster mode every node therefore re-saves the sessions of its live connections every
``interval`` seconds (one pipelined batch), with each subscription's delivered offset taken from
the stream's position one checkpoint *earlier* (minus what is still queued): what was queued a
whole interval before a crash has almost surely left the server, so a resumed client gets at
least everything after that — possibly a few messages twice (dedupe by epoch and offset), never a
gap unless its socket was backed up for longer than the interval. The disconnect save overwrites
the checkpoint with exact offsets as before. Cost: one ``SET`` per connection per interval.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from tradewire.core.connection_manager import ConnectionManager
from tradewire.protocol.messages import Stream
from tradewire.sessions.reconnect import ReconnectService
from tradewire.sessions.session_store import SavedSubscription, SessionStoreError
from tradewire.streams.broadcast import BroadcastProvider
from tradewire.streams.subscriptions import SubscriptionManager

_log = structlog.get_logger("tradewire.cluster")


class SessionCheckpoints:
    """Periodic saves of live sessions (see the module docstring)."""

    def __init__(
        self,
        reconnect: ReconnectService,
        connections: ConnectionManager,
        subscriptions: SubscriptionManager,
        broadcast: BroadcastProvider,
        interval: float,
    ) -> None:
        self._reconnect = reconnect
        self._connections = connections
        self._subscriptions = subscriptions
        self._broadcast = broadcast
        self._interval = interval
        self._previous: dict[Stream, tuple[int, str]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.save_all()
            except SessionStoreError as exc:
                _log.info("cluster.checkpoint_failed", error=str(exc))

    async def save_all(self) -> None:
        previous, self._previous = (
            self._previous,
            {stream: self._broadcast.position(stream) for stream in Stream},
        )
        for conn in self._connections:
            if conn.closed or conn.reconnect_hash is None:
                continue
            session = self._reconnect.snapshot(conn, self._subscriptions.of_client(conn.client_id))
            if session is None:
                continue
            subscriptions = [_earlier(saved, previous) for saved in session.subscriptions]
            session = msgspec.structs.replace(session, subscriptions=subscriptions)
            await self._reconnect.store.save(session, self._reconnect.ttl)


def _earlier(saved: SavedSubscription, previous: dict[Stream, tuple[int, str]]) -> SavedSubscription:
    """``saved`` with its offset no later than the stream's position one checkpoint ago."""
    offset, epoch = previous.get(Stream(saved.stream), (0, ""))
    if epoch != saved.epoch:
        return saved
    return SavedSubscription(saved.stream, saved.params, min(saved.last_offset, offset), saved.epoch)
