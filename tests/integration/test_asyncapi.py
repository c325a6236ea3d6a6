"""docs/asyncapi.yaml is generated from the server's schemas, and real traffic matches them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import yaml

from tests.helpers import TIMEOUT, engine_server
from tests.integration.test_sessions import SMA_CROSS
from tradewire.client import Client, ServerError
from tradewire.protocol.asyncapi import EXAMPLES, document, to_yaml
from tradewire.protocol.codes import CloseCode, ErrorCode
from tradewire.protocol.messages import MessageType, Stream, new_decoder
from tradewire.protocol.replies import REPLIES, ErrorEnvelope, StreamFrame, Welcome

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
ALL_STREAMS = [stream.value for stream in Stream]


def test_committed_document_is_the_generated_one() -> None:
    """Regenerate with: python -m tradewire.protocol.asyncapi > docs/asyncapi.yaml"""
    generated = to_yaml(document())
    assert DOC_PATH.read_text() == generated
    assert yaml.safe_load(generated) == json.loads(json.dumps(document()))  # the emitter is exact


def test_document_covers_every_message_stream_and_code() -> None:
    doc = document()
    messages = doc["components"]["messages"]
    assert {t.value for t in MessageType} <= set(messages)
    assert {f"{s.value}_frame" for s in Stream} <= set(messages)
    schemas = doc["components"]["schemas"]
    assert set(schemas["ErrorCode"]["x-codes"]) == {c.value for c in ErrorCode}
    assert schemas["CloseCode"]["enum"] == [int(c) for c in CloseCode]
    for operation in doc["operations"].values():  # every reference resolves
        for ref in [*operation["messages"], *operation.get("reply", {}).get("messages", [])]:
            assert ref["$ref"].split("/")[-1] in doc["channels"]["gateway"]["messages"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("message_type", [t for t in MessageType if t is not MessageType.UPSERT_STRATEGY])
def test_examples_are_valid_messages(message_type: MessageType) -> None:
    decoded = new_decoder().decode(json.dumps(EXAMPLES[message_type]))
    assert decoded.__struct_config__.tag == message_type.value


class _Checker:
    """Validates frames twice: strictly against the msgspec Structs (unknown fields fail) and
    against the published document's JSON Schemas."""

    def __init__(self) -> None:
        doc = json.loads(json.dumps(document()))
        self.schemas = doc["components"]["schemas"]
        self.problems: list[str] = []

    def document_accepts(self, name: str, frame: dict[str, Any]) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": self.schemas}}
        validator = jsonschema.Draft202012Validator(schema)
        for error in validator.iter_errors(frame):
            self.problems.append(f"{name}: {error.message} at {list(error.absolute_path)}")

    def frame(self, frame: dict[str, Any]) -> None:
        try:
            msgspec.convert(frame, StreamFrame)
        except msgspec.ValidationError as exc:
            self.problems.append(f"{frame['stream']}/{frame['data'].get('event')}: {exc}")
        name = "".join(part.title() for part in frame["stream"].split("_")) + "Frame"
        self.document_accepts(name, frame)

    def reply(self, message_type: MessageType, reply: dict[str, Any]) -> None:
        types = (ErrorEnvelope,) if reply["type"] == "error" else REPLIES[message_type]
        errors = []
        for cls in types:
            try:
                msgspec.convert(reply, cls)
                self.document_accepts(cls.__name__, reply)
                return
            except msgspec.ValidationError as exc:
                errors.append(str(exc))
        self.problems.append(f"{message_type.value} reply {json.dumps(reply)[:200]}: {errors}")


async def _request(client: Client, checker: _Checker, message: dict[str, Any]) -> dict[str, Any]:
    kind = MessageType(message["type"])
    try:
        reply = await client.request(message)
    except ServerError as exc:
        reply = exc.envelope
    checker.reply(kind, reply)
    return reply


async def test_real_traffic_matches_the_schemas(settings_factory: Any) -> None:
    """Every stream the engine feeds (live feed, a backtest with stream_events, a paper session)
    and a reply to every message type, validated against the Structs and the document."""
    checker = _Checker()
    frames: list[dict[str, Any]] = []
    settings = settings_factory(synthetic_symbols=["BTC-USD"], synthetic_interval=0.01)
    async with engine_server(settings) as r:
        client = Client(r.url, r.token(), request_timeout=TIMEOUT * 2)
        async with client:
            checker.reply(MessageType.AUTH, client.user or {})
            msgspec.convert(client.welcome, Welcome)
            subs = [await client.subscribe(stream) for stream in ALL_STREAMS]
            for kind in (MessageType.SUBSCRIBE,):
                await _request(client, checker, {"type": kind.value, "stream": "market_data", "params": {}})
            await _run_every_message(client, checker)
            await asyncio.sleep(1.2)  # one batch of indicators
            for sub in subs:
                while not sub._queue.empty():
                    message = await sub.get(0)
                    frames.append(
                        {
                            "type": "data",
                            "stream": message.stream,
                            "data": message.data,
                            "offset": message.offset,
                            "epoch": message.epoch,
                            "timestamp": message.timestamp,
                        }
                    )
    for frame in frames:
        checker.frame(frame)
    seen = {(f["stream"], f["data"]["event"]) for f in frames}
    assert {
        ("market_data", "market.price_update"),
        ("market_data", "market.orderbook_update"),
        ("indicators", "indicator.updated"),
        ("signals", "signal_generated"),
        ("state_machines", "strategy.state_changed"),
        ("orders", "order.submitted"),
        ("orders", "order.filled"),
        ("positions", "position.opened"),
        ("positions", "position.closed"),
        ("execution_status", "execution.started"),
        ("execution_status", "execution.progress"),
        ("execution_status", "execution.completed"),
        ("execution_status", "execution.stopped"),
        ("execution_result", "session.result"),
    } <= seen
    assert checker.problems == []


async def _run_every_message(client: Client, checker: _Checker) -> None:
    """One request of each message type (and the forms with different replies)."""
    ask = lambda message: _request(client, checker, message)  # noqa: E731
    await ask({"type": "handshake", "version": "1.0", "capabilities": ["recovery"]})
    await ask({"type": "heartbeat"})
    await ask({"type": "command", "action": "get_status"})
    await ask({"type": "query", "query_type": "server_info"})
    await ask({"type": "upsert_strategy", "strategy_config": SMA_CROSS})
    await ask({"type": "validate_strategy_config", "strategy_config": {"strategy_name": "x"}})
    await ask({"type": "get_strategies"})
    await ask({"type": "activate_strategy", "strategy_name": "sma_cross", "symbol": "BTC-USD"})
    await ask({"type": "get_strategy_status", "strategy_name": "sma_cross", "symbol": "BTC-USD"})
    await ask({"type": "get_strategy_status", "strategy_name": "sma_cross", "symbol": "ETH-USD"})
    await ask({"type": "get_strategy_status"})
    await ask({"type": "deactivate_strategy", "strategy_name": "sma_cross", "symbol": "BTC-USD"})
    datasets = (await ask({"type": "query", "query_type": "datasets"}))["data"]
    goog = next(d["id"] for d in datasets if d["symbol"] == "GOOG")
    started = await ask(
        {
            "type": "session_start",
            "session_type": "backtest",
            "strategy_config": {"sma_cross": ["GOOG"]},
            "config": {"dataset_id": goog, "stream_events": True},
        }
    )
    sid = started["session_id"]
    for _ in range(200):  # the status reply in each state it passes through
        if (await ask({"type": "session_status", "session_id": sid}))["session_data"][
            "status"
        ] == "completed":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the backtest did not complete")
    for request_type, params in (
        ("session_results", {"session_id": sid, "sections": ["metrics", "trades", "equity", "signals"]}),
        ("symbol_results", {"symbol": "GOOG"}),
        ("strategy_results", {"strategy_name": "sma_cross"}),
        ("collection_list", {}),
    ):
        await ask({"type": "results_request", "request_type": request_type, "params": params})
    paper = await ask(
        {
            "type": "session_start",
            "session_type": "paper",
            "strategy_config": {"rsi_mean_reversion": ["BTC-USD"]},
        }
    )
    await asyncio.sleep(0.3)
    await ask({"type": "session_stop", "session_id": paper["session_id"]})
    await ask({"type": "session_status"})
    await ask({"type": "collection_start", "symbols": ["BTC-USD"], "duration": "1m"})
    await ask({"type": "collection_status"})
    await ask({"type": "collection_stop", "collection_id": "c1"})
    await ask({"type": "unsubscribe", "stream": "health_check"})
