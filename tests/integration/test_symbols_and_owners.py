"""The engine knows its symbols (one spelling, close matches for typos, replays in their own
namespace) and its owners (traders change only their own strategies; the shipped examples are
read-only except for admins; ``updated_by`` only for owners), over a real socket."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import authed_client, call, engine_server, until
from tradewire import Level
from tradewire.engine.datasets import import_file
from tradewire.engine.storage.database import Database

Factory = Callable[..., Any]
SAMPLE = Path(__file__).resolve().parents[2] / "src/tradewire/engine/sample_data/GOOG.csv"
MINE: dict[str, Any] = {
    "strategy_name": "mine",
    "direction": "LONG",
    "s1_signal": {"conditions": [{"id": "a", "indicatorId": "rsi", "operator": "<", "value": 30}]},
    "z1_entry": {
        "conditions": [{"id": "b", "indicatorId": "rsi", "operator": ">", "value": 35}],
        "positionSize": {"type": "fixed", "value": 100},
    },
    "ze1_close": {"conditions": [{"id": "c", "indicatorId": "rsi", "operator": ">", "value": 55}]},
    "o1_cancel": {"conditions": [], "timeoutSeconds": 60},
    "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
}


@pytest.mark.parametrize(
    ("message", "symbol", "matches"),
    [
        (
            {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["btc-usd"]}},
            "btc-usd",
            ["BTC-USD"],
        ),
        ({"type": "subscribe", "stream": "market_data", "params": {"symbols": ["BTC"]}}, "BTC", ["BTC-USD"]),
        (
            {"type": "subscribe", "stream": "signals", "params": {"exclude_symbols": ["ETH-USD", "ETHUSD"]}},
            "ETHUSD",
            ["ETH-USD"],
        ),
        ({"type": "activate_strategy", "strategy_name": "mine", "symbol": "DOGE-USD"}, "DOGE-USD", []),
        ({"type": "activate_strategy", "strategy_name": "mine", "symbol": "GOOG"}, "GOOG", []),
        (
            {"type": "deactivate_strategy", "strategy_name": "mine", "symbol": "eth_usd"},
            "eth_usd",
            ["ETH-USD"],
        ),
        (
            {"type": "session_start", "session_type": "paper", "strategy_config": {"mine": ["BTC-UDS"]}},
            "BTC-UDS",
            ["BTC-USD"],
        ),
        (
            {
                "type": "session_start",
                "session_type": "backtest",
                "strategy_config": {"mine": ["goog"]},
                "config": {"dataset_id": 1},
            },
            "goog",
            ["GOOG"],
        ),
        ({"type": "collection_start", "symbols": ["BTC-USD", "SOL-USD"]}, "SOL-USD", []),
    ],
)
async def test_unknown_symbols_are_refused_on_every_path(
    settings_factory: Factory, message: dict[str, Any], symbol: str, matches: list[str]
) -> None:
    """Subscribe filters, activation, sessions and collections answer unknown_symbol with close
    matches instead of accepting a symbol that would never deliver anything."""
    settings = settings_factory(synthetic_symbols=["BTC-USD", "ETH-USD"], synthetic_interval=60)
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            assert (await call(ws, {"type": "upsert_strategy", "strategy_config": MINE}))["version"] == 1
            reply = await call(ws, message)
            status = await call(ws, {"type": "get_strategy_status", "strategy_name": "mine"})
    assert reply["error_code"] == "unknown_symbol", reply
    assert (reply["details"]["symbol"], reply["details"]["matches"]) == (symbol, matches)
    assert status["strategies"] == []  # nothing was activated or persisted


async def test_query_symbols_lists_every_source_in_one_spelling(settings_factory: Factory) -> None:
    """Feeds, datasets and the replay are listed with their sources; the replay has its own name."""
    settings = settings_factory(
        synthetic_symbols="btc/usd, eth-usd", synthetic_interval=60, replay_dataset=1, replay_speed=0.001
    )
    db = Database(settings.database)
    await db.start()
    await import_file(db, SAMPLE, "goog")
    await db.stop()
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            reply = await call(ws, {"type": "query", "query_type": "symbols"})
    listed = {entry["symbol"]: (entry["sources"], entry["live"]) for entry in reply["data"]}
    assert listed["BTC-USD"] == (["dataset", "synthetic"], True)  # the sample BTC-USD and the feed
    assert listed["ETH-USD"] == (["synthetic"], True)
    assert listed["GOOG"] == (["dataset"], False)
    assert listed["replay:GOOG"] == (["replay"], True)
    assert "btc/usd" not in listed and "goog" not in listed


async def test_a_replay_never_mixes_with_the_live_stream_of_its_symbol(settings_factory: Factory) -> None:
    """A replayed BTC-USD dataset is published as replay:BTC-USD; BTC-USD subscribers get only the
    synthetic feed."""
    settings = settings_factory(
        synthetic_symbols=["BTC-USD"], synthetic_interval=0.02, replay_dataset=2, replay_speed=86400 * 30
    )
    async with engine_server(settings) as r:
        ws = await authed_client(r)
        async with ws:
            await call(ws, {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["BTC-USD"]}})
            live = [await until(ws, lambda f: f.get("stream") == "market_data") for _ in range(5)]
            await call(ws, {"type": "unsubscribe", "stream": "market_data"})
            await call(
                ws, {"type": "subscribe", "stream": "market_data", "params": {"symbols": ["replay:BTC-USD"]}}
            )
            replayed = await until(
                ws, lambda f: f.get("stream") == "market_data" and f["data"]["symbol"] != "BTC-USD"
            )
    assert {(f["data"]["symbol"], f["data"]["source"]) for f in live} == {("BTC-USD", "synthetic")}
    assert (replayed["data"]["symbol"], replayed["data"]["source"]) == ("replay:BTC-USD", "replay")
    assert replayed["data"]["timestamp"] < "2020"  # the dataset's own (old) times


async def test_importing_the_same_file_twice_answers_the_existing_dataset(tmp_path: Path) -> None:
    """The content hash makes a second import (another path, same bytes) a no-op; another symbol is
    another dataset; symbols are stored in their canonical spelling."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await db.start()
    copy = tmp_path / "copy-of-goog.csv"
    shutil.copy(SAMPLE, copy)
    first, created = await import_file(db, SAMPLE, "GOOG", owner="alice")
    again, created_again = await import_file(db, copy, "goog", owner="bob")
    other, created_other = await import_file(db, copy, "GOOG-2")
    datasets = await db.datasets()
    await db.stop()
    assert (created, created_again, created_other) == (True, False, True)
    assert again == first and again.owner == "alice" and again.symbol == "GOOG"
    assert other.id != first.id and other.sha256 != first.sha256
    assert [d.id for d in datasets] == [first.id, other.id]


async def test_strategy_ownership_per_message_and_level(settings_factory: Factory) -> None:
    """Traders change only their own strategies; the examples only admins; updated_by is shown
    to the owner and admins only; basic users change nothing."""
    settings = settings_factory(synthetic_symbols=["BTC-USD"], synthetic_interval=60)
    async with engine_server(settings) as r:
        alice = await authed_client(r, user="alice")
        bob = await authed_client(r, user="bob")
        admin = await authed_client(r, Level.ADMIN, user="root")
        basic = await authed_client(r, Level.BASIC, user="bea")
        async with alice, bob, admin, basic:
            assert (await call(alice, {"type": "upsert_strategy", "strategy_config": MINE}))["version"] == 1
            activate = {"type": "activate_strategy", "strategy_name": "mine", "symbol": "BTC-USD"}
            deactivate = {**activate, "type": "deactivate_strategy"}
            for message in (
                {"type": "upsert_strategy", "strategy_config": MINE},
                activate,
                deactivate,
                {
                    "type": "upsert_strategy",
                    "strategy_config": {**MINE, "strategy_name": "rsi_mean_reversion"},
                },
                {**deactivate, "strategy_name": "rsi_mean_reversion"},
            ):
                refused = await call(bob, message)
                assert refused["error_code"] == "insufficient_permissions", (message, refused)
                assert refused["details"]["required"] == "owner"
            assert (await call(alice, activate))["status"] == "strategy_activated"
            denied = await call(basic, deactivate)
            assert denied["details"] == {"required": "manage_strategies"}
            by_admin = await call(admin, {"type": "upsert_strategy", "strategy_config": MINE})
            assert by_admin["version"] == 2
            assert (await call(admin, {**deactivate, "strategy_name": "pump_detector"}))["status"] == (
                "strategy_deactivated"
            )
            views = {
                user: {
                    s["strategy_name"]: s for s in (await call(ws, {"type": "get_strategies"}))["strategies"]
                }
                for user, ws in (("alice", alice), ("bob", bob), ("root", admin))
            }
            status = await call(
                bob, {"type": "get_strategy_status", "strategy_name": "mine", "symbol": "BTC-USD"}
            )
    assert status["state"] == "monitoring"  # bob's refused deactivation changed nothing
    assert views["alice"]["mine"]["updated_by"] == "root" and views["alice"]["mine"]["owner"] == "alice"
    assert views["alice"]["mine"]["read_only"] is False
    assert "updated_by" not in views["bob"]["mine"] and views["bob"]["mine"]["read_only"] is True
    assert "updated_by" not in views["alice"]["rsi_mean_reversion"]
    assert views["alice"]["rsi_mean_reversion"]["owner"] == "tradewire"
    assert views["root"]["rsi_mean_reversion"]["updated_by"] == "tradewire"
    assert views["root"]["pump_detector"]["active_symbols"] == []


async def test_datasets_show_their_owner(settings_factory: Factory) -> None:
    async with (
        engine_server(settings_factory(synthetic_symbols=[]), http=True) as r,
        httpx.AsyncClient(base_url=r.http_url, headers={"authorization": f"Bearer {r.token()}"}) as http,
    ):
        datasets = (await http.get("/api/v1/datasets")).json()
    assert {d["symbol"]: d["owner"] for d in datasets} == {
        "GOOG": "tradewire",
        "BTC-USD": "tradewire",
        "EUR-USD": "tradewire",
    }
