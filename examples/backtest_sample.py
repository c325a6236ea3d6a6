"""Backtest the bundled GOOG sample with an SMA(10)/SMA(30) crossover and print the metrics.

    TOKEN=$(.venv/bin/tradewire token --user alice --level trader)
    .venv/bin/python examples/backtest_sample.py --token "$TOKEN"

Stores the strategy (``upsert_strategy``), finds the sample dataset (``query datasets``), starts
the backtest (``session_start``), waits for its ``execution_result`` and fetches the results
(``results_request``). ``--url`` defaults to ``TRADEWIRE_WS_URL`` or ws://127.0.0.1:8765/ws.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


def sma(period: int) -> dict[str, Any]:
    return {"indicatorId": "sma", "params": {"period": period}}


def crossing(cid: str, operator: str) -> dict[str, Any]:
    return {"id": cid, **sma(10), "operator": operator, "value": sma(30)}


SMA_CROSS = {
    "strategy_name": "sma_cross",
    "direction": "LONG",
    "description": "Long while SMA(10) is above SMA(30).",
    "s1_signal": {"conditions": [crossing("cross_up", "crosses_above")]},
    "z1_entry": {
        "conditions": [crossing("above", ">")],
        "positionSize": {"type": "percentage", "value": 99.99},
    },
    "ze1_close": {"conditions": [crossing("cross_down", "crosses_below")]},
    "o1_cancel": {"conditions": [], "timeoutSeconds": 86400},
    "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
}


async def request(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send ``message`` and return its reply (stream frames received meanwhile are skipped)."""
    await ws.send(json.dumps({**message, "id": "r"}))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("id") == "r":
            if frame["type"] == "error":
                raise SystemExit(f"{message['type']}: {frame['error_code']}: {frame['error_message']}")
            return dict(frame)


async def main(url: str, token: str, fee_bps: float) -> None:
    async with connect(url) as ws:
        json.loads(await ws.recv())  # welcome
        await request(ws, {"type": "auth", "token": token})
        await request(ws, {"type": "upsert_strategy", "strategy_config": SMA_CROSS})
        datasets = await request(
            ws, {"type": "query", "query_type": "datasets", "params": {"symbol": "GOOG"}}
        )
        goog = datasets["data"][0]["id"]
        await request(ws, {"type": "subscribe", "stream": "execution_result"})
        started = await request(
            ws,
            {
                "type": "session_start",
                "session_type": "backtest",
                "strategy_config": {"sma_cross": ["GOOG"]},
                "config": {"dataset_id": goog, "fee_bps": fee_bps, "whole_units": True},
            },
        )
        session_id = started["session_id"]
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("stream") == "execution_result" and frame["data"]["session_id"] == session_id:
                break
        results = await request(
            ws,
            {
                "type": "results_request",
                "request_type": "session_results",
                "params": {"session_id": session_id, "sections": ["metrics"]},
            },
        )
    metrics = results["data"]["metrics"]
    sys.stdout.write(f"session {session_id}: {frame['data']['status']}\n")
    for key in ("return_pct", "return_ann_pct", "sharpe", "max_drawdown_pct", "trades", "win_rate_pct"):
        sys.stdout.write(f"{key:>18}: {metrics[key]}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TRADEWIRE_WS_URL", "ws://127.0.0.1:8765/ws"))
    parser.add_argument("--token", required=True, help="a JWT (tradewire token --level trader)")
    parser.add_argument("--fee-bps", type=float, default=10.0, help="fees per side, basis points")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.token, args.fee_bps))
