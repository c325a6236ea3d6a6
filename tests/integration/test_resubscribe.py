"""Recovery tells the truth (issue 9, fault 7), on both endpoints over real sockets.

Invariant: per connection and stream, each offset arrives at most once and in increasing order,
whatever the client does with subscribe/unsubscribe/recover; and ``recovered: true`` only when
every matching message after the client's offset reaches it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.helpers import Running, drain_until_pong, open_client, publish, request
from tradewire import Level
from tradewire.protocol.messages import Stream


async def _authed(r: Running) -> ClientConnection:
    ws, _ = await open_client(r)
    assert (await request(ws, {"type": "auth", "token": r.token(level=Level.TRADER)}))[
        "status"
    ] == "authenticated"
    return ws


def _offsets(frames: list[dict[str, Any]], stream: str) -> list[int]:
    return [f["offset"] for f in frames if f.get("type") == "data" and f["stream"] == stream]


def _assert_once_in_order(offsets: list[int]) -> None:
    assert offsets == sorted(set(offsets)), f"duplicate or out of order: {offsets}"


async def _signals(r: Running, first: int, last: int) -> None:
    await publish(r, "signals", [{"signal_type": "S1", "n": n} for n in range(first, last + 1)])


async def test_recover_from_beyond_the_stream_position_is_not_recovered(running: Running) -> None:
    """offset = top + 1000 with the right epoch: recovered false (a client deduping by offset
    would drop every live message), and live messages still arrive."""
    ws = await _authed(running)
    async with ws:
        await _signals(running, 1, 3)
        offset, epoch = running.server.broadcast_provider.position(Stream.SIGNALS)
        reply = await request(
            ws,
            {"type": "subscribe", "stream": "signals", "recover": {"offset": offset + 1000, "epoch": epoch}},
        )
        assert reply["recovered"] is False
        await _signals(running, 4, 5)
        assert _offsets(await drain_until_pong(ws), "signals") == [4, 5]


async def test_recover_at_the_stream_position_is_recovered_with_nothing_to_replay(running: Running) -> None:
    ws = await _authed(running)
    async with ws:
        await _signals(running, 1, 3)
        reply = await request(ws, {"type": "subscribe", "stream": "signals", "recover": _recover(running, 3)})
        assert reply["recovered"] is True
        await _signals(running, 4, 4)
        assert _offsets(await drain_until_pong(ws), "signals") == [4]


async def test_subscribe_again_while_subscribed_never_repeats_an_offset(running: Running) -> None:
    """Same filter, changed filter, with recover (offset 0, a recent one), with latest: the
    whole sequence the client receives stays strictly increasing."""
    ws = await _authed(running)
    async with ws:
        await request(ws, {"type": "subscribe", "stream": "indicators", "params": {"latest": True}})
        await publish(running, "indicators", [{"symbol": s, "v": i} for i, s in enumerate("ABAB")])
        received = await drain_until_pong(ws)
        again = [
            {"params": {"latest": True}},
            {"params": {"symbols": ["A"], "latest": True}},
            {"recover": _recover(running, 0, "indicators")},
            {"recover": _recover(running, 2, "indicators")},
            {"params": {"symbols": ["B"]}, "recover": _recover(running, 1, "indicators")},
            {},
        ]
        for n, extra in enumerate(again):
            reply = await request(ws, {"type": "subscribe", "stream": "indicators", **extra})
            assert reply["status"] == "subscribed", reply
            await publish(
                running, "indicators", [{"symbol": "A", "v": 100 + n}, {"symbol": "B", "v": 200 + n}]
            )
            received += await drain_until_pong(ws)
        _assert_once_in_order(_offsets(received, "indicators"))


async def test_recover_with_the_filter_changed_is_not_recovered(running: Running) -> None:
    """Recovering from before the re-subscribe with a wider filter would need messages the old
    filter dropped, out of order: recovered false."""
    ws = await _authed(running)
    async with ws:
        await request(ws, {"type": "subscribe", "stream": "indicators", "params": {"symbols": ["A"]}})
        await publish(running, "indicators", [{"symbol": s, "v": i} for i, s in enumerate("ABAB")])
        received = await drain_until_pong(ws)
        reply = await request(
            ws, {"type": "subscribe", "stream": "indicators", "recover": _recover(running, 0, "indicators")}
        )
        assert reply["recovered"] is False
        received += await drain_until_pong(ws)
        assert _offsets(received, "indicators") == [1, 3]


async def test_unsubscribe_then_recover_with_frames_still_unread(running: Running) -> None:
    """Frames queued to the client but not yet read when it unsubscribes and re-subscribes with
    recover from its last processed offset arrive once; only what it missed is replayed."""
    ws = await _authed(running)
    async with ws:
        await request(ws, {"type": "subscribe", "stream": "signals"})
        await _signals(running, 1, 3)  # queued to the client, which does not read them yet
        await ws.send(json.dumps({"type": "unsubscribe", "stream": "signals"}))
        await _until(running, subscribed=False)
        await _signals(running, 4, 4)  # missed while unsubscribed
        await ws.send(json.dumps({"type": "subscribe", "stream": "signals", "recover": _recover(running, 0)}))
        await _until(running, subscribed=True)
        await _signals(running, 5, 6)
        frames = await drain_until_pong(ws)
        replies = [f for f in frames if f.get("type") == "response"]
        assert [r["status"] for r in replies] == ["unsubscribed", "subscribed"]
        assert replies[1]["recovered"] is True
        offsets = _offsets(frames, "signals")
        _assert_once_in_order(offsets)
        assert offsets == [1, 2, 3, 4, 5, 6]


async def _until(r: Running, *, subscribed: bool) -> None:
    """Wait until the server has processed the (un)subscribe just sent (the client reads nothing)."""
    manager = r.server.subscription_manager
    for _ in range(500):
        streams = [
            s.stream for conn in r.server.connection_manager for s in manager.of_client(conn.client_id)
        ]
        if (Stream.SIGNALS in streams) is subscribed:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the server did not process the request")


async def test_recover_with_offset_zero_or_wrong_epoch(running: Running) -> None:
    ws = await _authed(running)
    async with ws:
        await _signals(running, 1, 2)
        wrong = await request(
            ws, {"type": "subscribe", "stream": "signals", "recover": {"offset": 0, "epoch": "not-it"}}
        )
        assert wrong["recovered"] is False
        assert _offsets(await drain_until_pong(ws), "signals") == []
        await request(ws, {"type": "unsubscribe", "stream": "signals"})
        zero = await request(ws, {"type": "subscribe", "stream": "signals", "recover": _recover(running, 0)})
        assert zero["recovered"] is False  # 1..2 were published before its first subscribe
        fresh, _ = await open_client(running)
        async with fresh:
            await request(fresh, {"type": "auth", "token": running.token()})
            whole = await request(
                fresh, {"type": "subscribe", "stream": "signals", "recover": _recover(running, 0)}
            )
            assert whole["recovered"] is True
            assert _offsets(await drain_until_pong(fresh), "signals") == [1, 2]


def _recover(r: Running, offset: int, stream: str = "signals") -> dict[str, Any]:
    return {"offset": offset, "epoch": r.server.broadcast_provider.position(Stream(stream))[1]}
