"""The live connections: lookup by id, capacity, per-user and per-address limits.

All methods are synchronous and run on the event loop thread, so no lock is needed and none can
be held across an await (the original froze every connection by re-entering a lock inside
itself during a heartbeat timeout).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator

from tradewire.auth.tokens import Principal
from tradewire.core.connection import Connection
from tradewire.errors import RequestError
from tradewire.metrics import ServerMetrics
from tradewire.protocol.codes import CloseCode, ErrorCode


class ConnectionManager:
    """Registry of open connections."""

    def __init__(
        self,
        metrics: ServerMetrics,
        max_connections: int,
        max_per_user: int,
        max_per_address: int | None = None,
    ) -> None:
        self._metrics = metrics
        self.max_connections = max_connections
        self.max_per_user = max_per_user
        # Counted for every endpoint sharing this manager (picows port and ASGI route alike), so one
        # address cannot take every slot (anonymous connections included).
        self.max_per_address = max_connections if max_per_address is None else max_per_address
        self._connections: dict[str, Connection] = {}
        self._by_user: dict[str, set[str]] = {}
        self._by_address: Counter[str] = Counter()
        self._empty = asyncio.Event()  # set while no connection is registered
        self._empty.set()
        # Cluster mode: told of every bind/unbind, to count a user's connections on all nodes.
        self.on_bound: Callable[[Connection, str], None] | None = None
        self.on_unbound: Callable[[Connection, str], None] | None = None

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))

    @property
    def full(self) -> bool:
        return len(self._connections) >= self.max_connections

    def address_full(self, address: str) -> bool:
        """Whether ``address`` already holds ``max_per_address`` connections."""
        return self._by_address[address] >= self.max_per_address

    def address_connections(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def add(self, conn: Connection) -> None:
        self._connections[conn.client_id] = conn
        self._by_address[conn.info.address] += 1
        self._empty.clear()
        self._metrics.connections_current = len(self._connections)
        self._metrics.connections_opened += 1

    def remove(self, conn: Connection) -> bool:
        """Forget ``conn``; False if it was not registered (already removed or replaced)."""
        if self._connections.get(conn.client_id) is not conn:
            return False
        del self._connections[conn.client_id]
        self._unbind(conn)
        address = conn.info.address
        if self._by_address[address] <= 1:
            del self._by_address[address]
        else:
            self._by_address[address] -= 1
        self._metrics.connections_current = len(self._connections)
        if not self._connections:
            self._empty.set()
        return True

    async def wait_empty(self) -> None:
        """Return once no connection is registered."""
        await self._empty.wait()

    def rename(self, conn: Connection, client_id: str) -> None:
        """Give ``conn`` the id of the session it resumes (the previous holder must be gone)."""
        if self._connections.get(conn.client_id) is conn:
            del self._connections[conn.client_id]
        else:
            self._by_address[conn.info.address] += 1  # registered from now on: counted like add()
        self._unbind(conn)
        conn.client_id = client_id
        self._connections[client_id] = conn
        if conn.principal is not None:
            self._by_user.setdefault(conn.principal.user_id, set()).add(client_id)
            if self.on_bound is not None:
                self.on_bound(conn, conn.principal.user_id)

    def get(self, client_id: str) -> Connection | None:
        return self._connections.get(client_id)

    def bind_user(self, conn: Connection, principal: Principal) -> None:
        """Attach ``principal`` to ``conn``, enforcing the per-user connection limit (checked
        before anything changes, so a refused re-auth leaves the connection as it was)."""
        ids = self._by_user.get(principal.user_id, set())
        if conn.client_id not in ids and len(ids) >= self.max_per_user:
            raise RequestError(
                ErrorCode.CONNECTION_LIMIT_EXCEEDED,
                f"user already has {self.max_per_user} authenticated connections",
                {"limit": self.max_per_user},
            )
        if conn.principal is not None and conn.principal.user_id != principal.user_id:
            self._unbind(conn)
        self._by_user.setdefault(principal.user_id, set()).add(conn.client_id)
        conn.principal = principal
        if self.on_bound is not None:
            self.on_bound(conn, principal.user_id)

    def drop_user(self, conn: Connection) -> None:
        """Remove the principal from ``conn`` (token expired): back to unauthenticated."""
        self._unbind(conn)
        conn.principal = None

    def user_connections(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def send(self, client_id: str, payload: bytes) -> bool:
        """Queue an encoded frame to one client; False if unknown, closed or overflowing."""
        conn = self._connections.get(client_id)
        return conn.send(payload) if conn is not None else False

    def close_all(self, code: CloseCode, reason: str) -> int:
        """Close every connection (e.g. 1001 at shutdown); returns how many were closed."""
        conns = list(self._connections.values())
        for conn in conns:
            conn.close(code, reason)
        return len(conns)

    def _unbind(self, conn: Connection) -> None:
        if conn.principal is None:
            return
        ids = self._by_user.get(conn.principal.user_id)
        if ids is not None:
            ids.discard(conn.client_id)
            if not ids:
                del self._by_user[conn.principal.user_id]
        if self.on_unbound is not None:
            self.on_unbound(conn, conn.principal.user_id)
