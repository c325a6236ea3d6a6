"""Backtest the bundled GOOG sample with an SMA(10)/SMA(30) crossover and print the metrics.

    export TRADEWIRE_TOKEN=$(.venv/bin/tradewire token --user alice --level trader)
    .venv/bin/python examples/backtest_sample.py

Stores the strategy (``upsert_strategy``), finds the sample dataset (``query datasets``), starts
the backtest (``session_start``), waits for its ``execution_result`` and fetches the results
(``results_request``), all through :class:`tradewire.client.Client`. ``--url`` defaults to
``TRADEWIRE_WS_URL`` or ws://127.0.0.1:8765/ws, ``--token`` to ``TRADEWIRE_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from tradewire.client import Client


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


async def main(url: str, token: str, fee_bps: float) -> None:
    async with Client(url, token, request_timeout=60) as client:
        await client.upsert_strategy(SMA_CROSS)
        goog = (await client.query("datasets", symbol="GOOG"))[0]["id"]
        results = await client.subscribe("execution_result")
        started = await client.session_start(
            "backtest", {"sma_cross": ["GOOG"]}, {"dataset_id": goog, "fee_bps": fee_bps, "whole_units": True}
        )
        session_id = started["session_id"]
        async for message in results:
            if message.data["session_id"] == session_id:
                break
        data = await client.results_request("session_results", session_id=session_id, sections=["metrics"])
    metrics = data["metrics"]
    sys.stdout.write(f"session {session_id}: {message.data['status']}\n")
    for key in ("return_pct", "return_ann_pct", "sharpe", "max_drawdown_pct", "trades", "win_rate_pct"):
        sys.stdout.write(f"{key:>18}: {metrics[key]}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TRADEWIRE_WS_URL", "ws://127.0.0.1:8765/ws"))
    parser.add_argument(
        "--token", default=os.environ.get("TRADEWIRE_TOKEN"), help="a JWT (default: TRADEWIRE_TOKEN)"
    )
    parser.add_argument("--fee-bps", type=float, default=10.0, help="fees per side, basis points")
    args = parser.parse_args()
    if not args.token:
        parser.error("give --token or set TRADEWIRE_TOKEN (tradewire token --user alice --level trader)")
    asyncio.run(main(args.url, args.token, args.fee_bps))
