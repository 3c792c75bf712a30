"""The settings page in headless Chromium (Debian's), driven by Playwright, against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from bridge.client import BridgeClient
from tests.browser.conftest import TIMEOUT_MS, bridge_for_page, open_connected_page
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, ServedBridge, start_bridge_process

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def allowed_bridge(tmp_path: Path, page_server: str) -> Iterator[ServedBridge]:
    with bridge_for_page(tmp_path, page_server, token="T" * 43) as served:
        yield served


async def fill_and_save(page: Page, name: str, provider: str, key: str) -> None:
    await page.fill("input[name=customName]", name)
    await page.select_option("select[name=provider]", provider)
    await page.fill("input[name=apiKey]", key)
    await page.click("#save")


async def test_two_pages_stay_in_sync_and_resync_after_restart(
    browser: Browser, page_server: str, allowed_bridge: ServedBridge, tmp_path: Path
) -> None:
    page_a = await open_connected_page(browser, page_server, allowed_bridge)
    page_b = await open_connected_page(browser, page_server, allowed_bridge)

    # Created through A's visible form, it appears in B without reload, key masked.
    await fill_and_save(page_a, "Team OpenAI", "openai", OPENAI_KEY)
    row_b = page_b.locator("tr", has_text="Team OpenAI")
    await expect(row_b).to_be_visible(timeout=TIMEOUT_MS)
    await expect(row_b.locator("td.key")).to_have_text(f"sk-...{OPENAI_KEY[-3:]}")
    assert OPENAI_KEY not in await page_b.content()

    # An invalid key shows its field error next to the field.
    await fill_and_save(page_a, "Bad Claude", "anthropic", "sk-ant-short")
    await expect(page_a.locator('.field-error[data-field="apiKey"]')).to_contain_text(
        "sk-ant-", timeout=TIMEOUT_MS
    )
    await expect(page_b.locator("tr", has_text="Bad Claude")).to_have_count(0)

    # Deleting in B removes it from A.
    await page_b.click("button[aria-label='Delete Team OpenAI']")
    await expect(page_a.locator("tr", has_text="Team OpenAI")).to_have_count(0, timeout=TIMEOUT_MS)

    # Restart the server on the same port and token: both pages reconnect and resync,
    # including a change made while they were away.
    assert allowed_bridge.stop() == 0
    await expect(page_a.locator("#status")).not_to_have_text("Connected", timeout=TIMEOUT_MS)
    token_file = tmp_path / "token"
    with start_bridge_process(
        allowed_bridge.data_dir,
        "--allow-origin",
        page_server,
        "--token-file",
        str(token_file),
        "--port",
        str(allowed_bridge.port),
    ) as restarted:
        async with BridgeClient(restarted.url, restarted.token) as client:
            await client.create_config(
                {"customName": "Made While Away", "provider": "anthropic", "apiKey": ANTHROPIC_KEY}
            )
        for page in (page_a, page_b):
            await expect(page.locator("#status")).to_have_text("Connected", timeout=3 * TIMEOUT_MS)
            await expect(page.locator("tr", has_text="Made While Away")).to_be_visible(timeout=TIMEOUT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        await page_a.screenshot(path=str(ARTIFACTS / "settings-page.png"), full_page=True)


async def test_edit_flow_updates_both_pages_keeps_the_key_and_shows_field_errors(
    browser: Browser, page_server: str, allowed_bridge: ServedBridge
) -> None:
    page_a = await open_connected_page(browser, page_server, allowed_bridge)
    page_b = await open_connected_page(browser, page_server, allowed_bridge)
    await fill_and_save(page_a, "Work OpenAI", "openai", OPENAI_KEY)
    # The page resets its form when a save is answered: wait for that, or a late answer
    # wipes the next entry while it is being typed (seen on a loaded machine).
    await expect(page_a.locator("input[name=customName]")).to_have_value("", timeout=TIMEOUT_MS)
    await fill_and_save(page_a, "Home Claude", "anthropic", ANTHROPIC_KEY)
    row_b = page_b.locator("tr", has_text="Work OpenAI")
    await expect(row_b).to_be_visible(timeout=TIMEOUT_MS)

    # Edit in A: the form is filled from the view, the key field stays empty (kept).
    await page_a.locator("tr", has_text="Work OpenAI").get_by_role("button", name="Edit").click()
    await expect(page_a.locator("#form-title")).to_have_text("Edit Work OpenAI")
    await expect(page_a.locator("#key-hint")).to_contain_text(f"sk-...{OPENAI_KEY[-3:]}")
    assert await page_a.input_value("input[name=customName]") == "Work OpenAI"
    assert await page_a.input_value("input[name=apiKey]") == ""

    # A bad base URL: its field error, nothing changes in B.
    await page_a.fill("input[name=baseUrl]", "ftp://example.com")
    await page_a.click("#save")
    await expect(page_a.locator('.field-error[data-field="baseUrl"]')).not_to_be_empty(timeout=TIMEOUT_MS)
    await expect(row_b.locator("td.version")).to_have_text("1")

    # The name of another config: the duplicate-name message under the name field.
    await page_a.fill("input[name=baseUrl]", "")
    await page_a.fill("input[name=customName]", "home claude")
    await page_a.click("#save")
    await expect(page_a.locator('.field-error[data-field="customName"]')).to_have_text(
        "Another provider already has this name", timeout=TIMEOUT_MS
    )

    # A new base URL without the key: the page asks for it and the server refuses to
    # send the stored key elsewhere (updates.apiKey REQUIRED); nothing changes in B.
    await page_a.fill("input[name=customName]", "Work OpenAI (EU)")
    await page_a.fill("input[name=baseUrl]", "https://eu.api.openai.com/v1")
    await expect(page_a.locator("#key-hint")).to_contain_text("required")
    await page_a.click("#save")
    await expect(page_a.locator('.field-error[data-field="apiKey"]')).to_have_text(
        "is required when baseUrl or provider changes", timeout=TIMEOUT_MS
    )
    await expect(page_a.locator("input[name=apiKey]")).to_be_focused()
    await expect(row_b.locator("td.version")).to_have_text("1")

    # A valid edit, the key given again: B shows the new name and base URL at version 2,
    # same key preview.
    await page_a.fill("input[name=apiKey]", OPENAI_KEY)
    await page_a.click("#save")
    edited_b = page_b.locator("tr", has_text="Work OpenAI (EU)")
    await expect(edited_b.locator("td.version")).to_have_text("2", timeout=TIMEOUT_MS)
    await expect(edited_b.locator("td.url")).to_have_text("https://eu.api.openai.com/v1")
    await expect(edited_b.locator("td.key")).to_have_text(f"sk-...{OPENAI_KEY[-3:]}")
    await expect(page_a.locator("#form-title")).to_have_text("Add a provider")
    async with BridgeClient(allowed_bridge.url, allowed_bridge.token) as client:
        (stored,) = [c for c in await client.list_configs() if c.custom_name == "Work OpenAI (EU)"]
    assert stored.version == 2
    assert stored.base_url == "https://eu.api.openai.com/v1"

    # Cancel leaves an edit without saving.
    await page_b.locator("tr", has_text="Home Claude").get_by_role("button", name="Edit").click()
    await page_b.fill("input[name=customName]", "Never Saved")
    await page_b.click("#cancel")
    await expect(page_b.locator("#form-title")).to_have_text("Add a provider")
    await expect(page_a.locator("tr", has_text="Home Claude").locator("td.version")).to_have_text("1")
    assert OPENAI_KEY not in await page_a.content()
    assert ANTHROPIC_KEY not in await page_b.content()


async def test_page_from_an_origin_not_allowlisted_cannot_connect(
    browser: Browser, page_server: str, tmp_path: Path
) -> None:
    served = start_bridge_process(tmp_path / "data")  # no --allow-origin
    try:
        page = await browser.new_page()
        await page.goto(f"{page_server}/index.html#url={served.url}&token={served.token}")
        await expect(page.locator("#status")).to_have_text("Reconnecting…", timeout=TIMEOUT_MS)
        assert "handshake_refused" in served.log_text()
        assert '"status": 403' in served.log_text()
    finally:
        served.stop()
