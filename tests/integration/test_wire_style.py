"""One wire style: every time the server emits is an ISO 8601 string, every key snake_case."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from tests.helpers import TIMEOUT, authed_client, call, engine_server
from tests.integration.test_sessions import SMA_CROSS
from tradewire.protocol.wire import is_time_key, to_wire

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")


def _fields(value: Any, path: str = "$") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every field, except inside a stored strategy document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, key, item
            if key != "document":
                yield from _fields(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _fields(item, f"{path}[{index}]")


def _violations(frame: dict[str, Any]) -> list[str]:
    problems = []
    for path, key, item in _fields(frame):
        if not SNAKE.match(key) and not path.endswith(
            (".indicators", ".by_symbol", ".by_strategy", ".params")
        ):
            problems.append(f"{path}.{key}: key not snake_case")
        if is_time_key(key) and item is not None and not (isinstance(item, str) and ISO.match(item)):
            problems.append(f"{path}.{key}: {item!r} is not an ISO 8601 time")
    return problems


def test_to_wire_converts_time_fields_by_name_and_leaves_the_rest() -> None:
    payload = {
        "timestamp": 1_700_000_000.5,
        "data_time": 0,
        "cooldown_until": None,
        "price": 1.5,
        "nested": [{"filled_at": 1_700_000_000}],
        "document": {"o1_cancel": {"timeoutSeconds": 30}, "created_at": 5},
        "flag_at": True,
    }
    wire = to_wire(payload)
    assert wire["timestamp"] == "2023-11-14T22:13:20.500Z"
    assert wire["data_time"] == "1970-01-01T00:00:00.000Z"
    assert wire["nested"] == [{"filled_at": "2023-11-14T22:13:20.000Z"}]
    assert wire["document"] == payload["document"]  # echoed verbatim
    assert (wire["price"], wire["cooldown_until"], wire["flag_at"]) == (1.5, None, True)
    assert payload["timestamp"] == 1_700_000_000.5  # the input is not changed


async def test_streams_and_replies_use_one_wire_style(settings_factory: Callable[..., Any]) -> None:
    settings = settings_factory(synthetic_symbols=["BTC-USD"], synthetic_interval=0.01)
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            frames: list[dict[str, Any]] = []
            for stream in ("market_data", "indicators", "signals", "state_machines", "orders", "positions"):
                frames.append(await call(ws, {"type": "subscribe", "stream": stream}))
            for stream in ("execution_status", "execution_result"):
                frames.append(await call(ws, {"type": "subscribe", "stream": stream}))
            frames.append(await call(ws, {"type": "upsert_strategy", "strategy_config": SMA_CROSS}))
            datasets = await call(ws, {"type": "query", "query_type": "datasets"})
            goog = next(d["id"] for d in datasets["data"] if d["symbol"] == "GOOG")
            config = {"dataset_id": goog, "stream_events": True}
            start = {
                "type": "session_start",
                "session_type": "backtest",
                "strategy_config": {"sma_cross": ["GOOG"]},
            }
            started = await call(ws, {**start, "config": config})
            sid = started["session_id"]
            async with asyncio.timeout(TIMEOUT * 4):  # keep everything the backtest streams
                while (frame := json.loads(await ws.recv())).get("stream") != "execution_result":
                    frames.append(frame)
            frames.append(frame)
            for request in (
                {"type": "get_strategies"},
                {"type": "get_strategy_status"},
                {"type": "session_status"},
                {"type": "session_status", "session_id": sid},
                {"type": "results_request", "request_type": "session_results", "params": {"session_id": sid}},
                {"type": "command", "action": "get_status"},
            ):
                frames.append(await call(ws, request))
            await ws.send(json.dumps({"type": "heartbeat", "id": "barrier"}))
            frames.extend([datasets, started])
            async with asyncio.timeout(TIMEOUT):
                while (frame := json.loads(await ws.recv())).get("id") != "barrier":
                    frames.append(frame)
                    if len(frames) > 5000:
                        break
    streams_seen = {f.get("stream") for f in frames if f.get("type") == "data"}
    assert {"market_data", "orders", "positions", "signals", "state_machines"} <= streams_seen
    problems = [problem for frame in frames for problem in _violations(frame)]
    assert problems == []
