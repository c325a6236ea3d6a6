"""The dashboard in a real browser against a real server with the engine: log in, prices move,
strategy validation errors at their paths, a backtest's metrics, reconnect and recovery, and the
offline API docs. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.browser_support import ARTIFACTS
from tests.helpers import TIMEOUT, Running, engine_server
from tests.integration.test_sessions import SMA_CROSS
from tradewire import CloseCode, Level
from tradewire.auth.users import UserStore
from tradewire.client import Client

pytestmark = pytest.mark.browser
Factory = Callable[..., Any]
WAIT_MS = TIMEOUT * 2000
BROKEN = {
    "strategy_name": "broken",
    "direction": "SIDEWAYS",
    "s1_signal": {
        "conditions": [
            {"id": "a", "indicatorId": "rsi", "params": {"perod": 14}, "operator": "~", "value": 30}
        ]
    },
    "z1_entry": {"conditions": [], "positionSize": {"type": "fixed", "value": -1}},
    "ze1_close": {"conditions": []},
    "o1_cancel": {"conditions": [], "timeoutSeconds": 30},
    "emergency_exit": {"conditions": [], "cooldownMinutes": 0, "actions": []},
}


class Dashboard:
    """A page of the dashboard that records what must never happen: script errors and
    requests to anything but the server under test."""

    def __init__(self, page: Any, running: Running) -> None:
        self.page = page
        self.problems: list[str] = []
        origin = running.http_url
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("request", lambda r: r.url.startswith(origin) or self.problems.append(f"request to {r.url}"))

    async def screenshot(self, name: str) -> None:
        folder = ARTIFACTS / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    async def ticks(self) -> int:
        return int(await self.page.get_attribute("#last-price", "data-ticks") or 0)

    async def wait_ticks(self, at_least: int) -> None:
        await self.page.wait_for_function(
            f"() => Number(document.querySelector('#last-price').dataset.ticks) >= {at_least}",
            timeout=WAIT_MS,
        )


@asynccontextmanager
async def _dashboard(
    browser: Any, settings_factory: Factory, token: bool = True
) -> AsyncIterator[tuple[Dashboard, Running]]:
    settings = settings_factory(synthetic_symbols=["BTC-USD", "ETH-USD"], synthetic_interval=0.05)
    async with engine_server(settings, http=True) as running:
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        dashboard = Dashboard(page, running)
        await page.goto(running.http_url + "/")
        if token:
            await page.get_by_label("or paste a token").fill(running.token())
            await page.get_by_role("button", name="Use token").click()
            await page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
        yield dashboard, running
        assert dashboard.problems == []


async def test_log_in_with_a_password_and_see_prices_move(browser: Any, settings_factory: Factory) -> None:
    async with _dashboard(browser, settings_factory, token=False) as (dashboard, running):
        UserStore(running.server.settings.users_path).add("alice", "a long enough password", Level.TRADER)
        page = dashboard.page
        await page.get_by_label("User name").fill("alice")
        await page.get_by_label("Password").fill("a long enough password")
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
        assert await page.inner_text("#user") == "alice (trader)"
        await dashboard.wait_ticks(3)
        ticks, first = await page.evaluate(  # one read: ticks arrive faster than round trips
            "() => [Number(document.querySelector('#last-price').dataset.ticks),"
            " document.querySelector('#last-price').dataset.price]"
        )
        await dashboard.wait_ticks(ticks + 2)
        assert await page.get_attribute("#last-price", "data-price") != first  # the price moved
        assert await page.locator("#price-chart canvas").count() > 0
        await dashboard.screenshot("prices")


async def test_a_broken_strategy_shows_every_error_at_its_path(
    browser: Any, settings_factory: Factory
) -> None:
    async with _dashboard(browser, settings_factory) as (dashboard, running):
        page = dashboard.page
        await page.get_by_label("Strategy document (JSON)").fill(json.dumps(BROKEN, indent=2))
        await page.get_by_role("button", name="Validate").click()
        await page.wait_for_selector("[data-valid=false]", timeout=WAIT_MS)
        shown = await page.locator("#strategy-result ul.errors li").all_inner_texts()
        async with Client(running.url, running.token()) as client:
            expected = (await client.validate_strategy_config(BROKEN))["errors"]
        assert len(shown) == len(expected) >= 3
        for item, error in zip(shown, expected, strict=True):
            assert item.startswith(error["path"]) and error["message"] in item
        assert any("params.perod" in item for item in shown)
        await dashboard.screenshot("strategy-errors")
        collection = page.locator("#collection-form")
        await collection.get_by_label("Duration").select_option("5m")
        await collection.get_by_role("button", name="Start").click()
        await page.wait_for_function(
            "() => document.querySelector('#collection-message').textContent.length > 0",
            timeout=WAIT_MS,
        )
        assert "started" in await page.locator("#collection-message").inner_text()
        row = page.locator("#collections tbody tr").first
        assert (await row.locator("td").nth(2).inner_text()) == "running"
        collection_id = await row.locator("td").first.inner_text()
        await row.get_by_role("button", name=f"Stop {collection_id}").click()
        await page.wait_for_function(
            "() => document.querySelector('#collections tbody tr td:nth-child(3)').textContent === 'stopped'",
            timeout=WAIT_MS,
        )
        async with Client(running.url, running.token()) as client:
            status = await client.request({"type": "collection_status", "collection_id": collection_id})
        assert status["collection"]["status"] == "stopped"
        await dashboard.screenshot("collection")


async def test_a_backtest_on_the_sample_data_shows_its_metrics(
    browser: Any, settings_factory: Factory
) -> None:
    async with _dashboard(browser, settings_factory) as (dashboard, running):
        page = dashboard.page
        await page.get_by_label("Strategy document (JSON)").fill(json.dumps(SMA_CROSS))
        await page.get_by_role("button", name="Save").click()
        await page.wait_for_selector("#strategy-result .ok", timeout=WAIT_MS)
        form = page.locator("#session-form")
        await form.get_by_label("Strategy").select_option("sma_cross")
        goog = form.get_by_label("Dataset").locator("option", has_text=re.compile(r"^GOOG"))
        await form.get_by_label("Dataset").select_option(await goog.get_attribute("value"))
        await form.get_by_role("button", name="Start").click()
        trades = page.locator('#metrics dd[data-metric="trades"]')
        await trades.wait_for(timeout=WAIT_MS * 2)
        session_id = await page.inner_text("#session-id")
        assert await page.get_attribute("#progress", "value") == "100"
        async with Client(running.url, running.token()) as client:
            results = await client.results_request(
                "session_results", session_id=session_id, sections=["metrics"]
            )
        assert int(await trades.inner_text()) == results["metrics"]["trades"] > 20
        assert await page.locator("#trades tbody tr").count() == results["metrics"]["trades"]
        assert await page.locator("#equity-chart canvas").count() > 0
        await dashboard.screenshot("backtest")


async def test_a_killed_connection_reconnects_and_recovers(browser: Any, settings_factory: Factory) -> None:
    async with _dashboard(browser, settings_factory) as (dashboard, running):
        page = dashboard.page
        await dashboard.wait_ticks(3)
        client_id = await page.evaluate("window.tradewire.clientId")
        connections = list(running.server.connection_manager)
        assert len(connections) == 1
        connections[0].close(CloseCode.IDLE_TIMEOUT, "closed by the test")
        status = page.locator('#connection[data-state="open"][data-reconnects="1"]')
        await status.wait_for(timeout=WAIT_MS)
        assert await status.get_attribute("data-recovery") == "recovered"
        assert await page.evaluate("window.tradewire.clientId") == client_id
        before = await dashboard.ticks()
        await dashboard.wait_ticks(before + 3)
        assert "reconnected 1×" in await page.inner_text("#connection")
        await dashboard.screenshot("reconnected")


async def test_api_docs_render_offline(browser: Any, settings_factory: Factory) -> None:
    async with _dashboard(browser, settings_factory, token=False) as (dashboard, running):
        page = dashboard.page
        await page.goto(running.http_url + "/docs")
        await page.get_by_text("/api/v1/auth/login", exact=True).wait_for(timeout=WAIT_MS)
        assert await page.locator(".swagger-ui").count() == 1
        await dashboard.screenshot("api-docs")
