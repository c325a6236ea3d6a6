"""A minimal client: connect, authenticate with a token, heartbeat, query server info.

TOKEN=$(.venv/bin/tradewire token --user alice --level trader)
.venv/bin/python examples/client_heartbeat.py ws://127.0.0.1:8765/ws "$TOKEN"
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str, token: str) -> None:
    async with connect(url) as ws:
        welcome = json.loads(await ws.recv())
        sys.stdout.write(f"connected as {welcome['client_id']}\n")
        for message in (
            {"type": "auth", "token": token, "id": 1},
            {"type": "heartbeat", "id": 2},
            {"type": "query", "query_type": "server_info", "id": 3},
        ):
            await ws.send(json.dumps(message))
            sys.stdout.write(await ws.recv() + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
