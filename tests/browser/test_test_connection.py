"""The settings page's "Test connection" (llm-config:test) in headless Chromium against a real
server and the fake provider: progress, result, Cancel; and the handshake-refused status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import TIMEOUT_MS, bridge_for_page, open_page
from tests.conftest import ServedBridge
from tests.helpers.fake_provider import NO_PROXY_ENV, OPENAI_MODELS, FakeProvider

pytestmark = pytest.mark.browser

CANARY = "canary-browser-1d7e4b9a6c30f852"


@pytest.fixture
def served(tmp_path: Path, page_server: str) -> Iterator[ServedBridge]:
    with bridge_for_page(tmp_path, page_server, env=NO_PROXY_ENV) as bridge:
        yield bridge


async def fill_draft(page: Page, base_url: str) -> None:
    await page.fill("input[name=customName]", "Local")
    await page.select_option("select[name=provider]", "custom")
    await page.fill("input[name=apiKey]", CANARY)
    await page.fill("input[name=baseUrl]", base_url)


async def test_test_connection_shows_progress_and_the_result_of_a_draft(
    browser: Browser, page_server: str, served: ServedBridge
) -> None:
    with FakeProvider("custom", CANARY) as provider:
        page = await open_page(browser, page_server, served.url, served.token)
        await expect(page.locator("#status")).to_have_text("Connected", timeout=TIMEOUT_MS)
        await fill_draft(page, provider.base_url)
        await page.click("#test")
        result = page.locator("#test-result")
        await expect(result).to_have_attribute("data-ok", "true", timeout=TIMEOUT_MS)
        await expect(result).to_contain_text(f"{len(OPENAI_MODELS)} models ({', '.join(OPENAI_MODELS)})")
        await expect(page.locator("#test-step")).to_have_attribute("data-kinds", "begin,report,end")
        await expect(page.locator("#test-progress")).to_have_attribute("value", "100")
        await expect(page.locator("#test-cancel")).to_be_hidden()
        # The draft was tested, not saved.
        await expect(page.locator("#empty")).to_be_visible()
        assert provider.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    served.stop()
    assert CANARY not in served.log_text()


async def test_cancel_stops_a_stalled_test_and_the_provider_sees_the_drop(
    browser: Browser, page_server: str, served: ServedBridge
) -> None:
    with FakeProvider("custom", CANARY, stall=True) as provider:
        page = await open_page(browser, page_server, served.url, served.token)
        await expect(page.locator("#status")).to_have_text("Connected", timeout=TIMEOUT_MS)
        await fill_draft(page, provider.base_url)
        await page.click("#test")
        assert await asyncio.to_thread(provider.received.wait, TIMEOUT_MS / 1000)
        await expect(page.locator("#test-step")).to_have_text("connecting", timeout=TIMEOUT_MS)
        await page.click("#test-cancel")
        await expect(page.locator("#test-result")).to_have_text("Test cancelled", timeout=TIMEOUT_MS)
        assert await asyncio.to_thread(provider.dropped.wait, TIMEOUT_MS / 1000)
        await expect(page.locator("#test")).to_be_enabled()


async def test_a_page_with_a_stale_token_says_why_it_cannot_connect(
    browser: Browser, page_server: str, served: ServedBridge
) -> None:
    page = await open_page(browser, page_server, served.url, "s" * 43)
    status = page.locator("#status")
    await expect(status).to_have_text(
        "Connection refused — origin not allowed or token stale?", timeout=3 * TIMEOUT_MS
    )
    assert "token stale" in (await status.get_attribute("title") or "")
    served.stop()
    assert '"detail": "mismatch"' in served.log_text()
