"""A minimal client: connect, authenticate with a token, heartbeat, query server info.

export TRADEWIRE_TOKEN=$(.venv/bin/tradewire token --user alice --level trader)
.venv/bin/python examples/client_heartbeat.py            # --url, or TRADEWIRE_WS_URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from tradewire.client import Client


async def main(url: str, token: str) -> None:
    async with Client(url, token) as client:
        sys.stdout.write(f"connected as {client.client_id} ({json.dumps(client.user)})\n")
        sys.stdout.write(json.dumps(await client.heartbeat()) + "\n")
        sys.stdout.write(json.dumps(await client.query("server_info")) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TRADEWIRE_WS_URL", "ws://127.0.0.1:8765/ws"))
    parser.add_argument("--token", default=os.environ.get("TRADEWIRE_TOKEN"), help="default: TRADEWIRE_TOKEN")
    args = parser.parse_args()
    if not args.token:
        parser.error("give --token or set TRADEWIRE_TOKEN")
    asyncio.run(main(args.url, args.token))
