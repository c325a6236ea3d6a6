"""A closed connection is freed by reference counting, on both endpoints.

Reference cycles per connection (the ASGI scope holding the protocol, a parser holding its
protocol's callbacks, bound methods between the connection and its outbound) leave every closed
connection to the garbage collector's full passes: under reconnect churn that is memory held
for minutes and long collection pauses. Found with ``gc.DEBUG_SAVEALL`` while reading a soak.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.helpers import open_client, publish, request, run_server

OWN_MODULES = ("tradewire", "uvicorn", "starlette", "websockets.server", "httptools")


async def test_closed_connections_leave_no_cyclic_garbage(
    transport: str, settings_factory: Callable[..., Any]
) -> None:
    async with run_server(transport, settings_factory()) as r:

        async def churn(count: int) -> None:
            for _ in range(count):
                ws, _ = await open_client(r)
                await request(ws, {"type": "auth", "token": r.token()})
                subscribe = {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["BTC"]}}
                await request(ws, subscribe)
                await publish(r, "market_data", [{"symbol": "BTC", "price": 1.0}])
                await ws.recv()
                await ws.close()
            await asyncio.sleep(0.3)  # the server's side of each close has run

        await churn(3)  # first-use caches, lazily created objects
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await churn(20)
            gc.collect()
            garbage = [type(o) for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    names = (f"{t.__module__}.{t.__qualname__}" for t in garbage if t.__module__.startswith(OWN_MODULES))
    ours = Counter(names)
    assert not ours, ours.most_common(10)
