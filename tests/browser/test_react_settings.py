"""The React settings example (examples/react-settings) in headless Chromium against a real server.

Production build by its ``build.mjs`` (esbuild, React in production mode, no StrictMode).
Rows are ``React.memo`` components; the page counts renders of the list and of each row
(``window.__renders``), so the test sees exactly what re-rendered after each change.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from websockets.asyncio.client import connect

from bridge.client import BridgeClient
from tests.browser.conftest import TIMEOUT_MS, bridge_for_page, open_connected_page, serve_directory
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, ServedBridge, start_bridge_process

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "react-settings"

# After the page's own round trip (its reply follows every notification already written
# to its socket), two animation frames: every flush the store scheduled has run.
SETTLE = """async () => {
  await window.__bridge.invoke("bridge:hello");
  for (let i = 0; i < 2; i++) await new Promise((resolve) => requestAnimationFrame(resolve));
}"""
# Counts animation frames from the moment it runs (headless Chromium's frame rate is its own).
COUNT_FRAMES = (
    "() => { window.__frames = 0; (function tick() { window.__frames++; requestAnimationFrame(tick); })(); }"
)
RESET = "() => { window.__renders.list = 0; window.__renders.rows = {}; window.__arrivals.length = 0; }"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The production build, served on 127.0.0.1:0; yields the origin."""
    node = shutil.which("node")
    assert node is not None
    out = tmp_path_factory.mktemp("react-settings")
    subprocess.run([node, str(EXAMPLE / "build.mjs"), str(out)], check=True, timeout=120)
    with serve_directory(out) as origin:
        yield origin


@pytest.fixture
def served(tmp_path: Path, site: str) -> Iterator[ServedBridge]:
    with bridge_for_page(tmp_path, site, token="R" * 43) as bridge:
        yield bridge


async def renders(page: Page) -> dict[str, Any]:
    counted: dict[str, Any] = await page.evaluate("() => JSON.parse(JSON.stringify(window.__renders))")
    return counted


async def test_rows_render_only_when_their_config_changes(
    browser: Browser, site: str, served: ServedBridge
) -> None:
    async with BridgeClient(served.url, served.token) as client:
        a = await client.create_config({"customName": "A", "provider": "openai", "apiKey": OPENAI_KEY})
        b = await client.create_config({"customName": "B", "provider": "anthropic", "apiKey": ANTHROPIC_KEY})
        c = await client.create_config({"customName": "C", "provider": "openai", "apiKey": OPENAI_KEY})
        page = await open_connected_page(browser, site, served)
        await expect(page.locator("#configs tr")).to_have_count(3, timeout=TIMEOUT_MS)
        await page.evaluate(SETTLE)

        # An update of A: A's row and the list render once, B and C not at all.
        await page.evaluate(RESET)
        await client.update_config(a.id, {"customName": "A renamed"})
        await expect(page.locator(f"tr[data-id='{a.id}'] td.name")).to_have_text(
            "A renamed", timeout=TIMEOUT_MS
        )
        await page.evaluate(SETTLE)
        assert await renders(page) == {"list": 1, "rows": {a.id: 1}}

        # A no-op update (the same name): nothing renders.
        await page.evaluate(RESET)
        same = await client.update_config(b.id, {"customName": "B"})
        assert same.version == b.version
        await page.evaluate(SETTLE)
        assert await renders(page) == {"list": 0, "rows": {}}

        # 50 updates of C in one JSON-RPC batch frame.
        await page.evaluate(RESET)
        await page.evaluate(COUNT_FRAMES)
        batch = [
            {
                "jsonrpc": "2.0",
                "id": i,
                "method": "llm-config:update",
                "params": {"id": c.id, "updates": {"customName": f"C{i}"}},
            }
            for i in range(1, 51)
        ]
        async with connect(served.url, additional_headers={"Authorization": f"Bearer {served.token}"}) as ws:
            await ws.send(json.dumps(batch))
            while True:
                reply = json.loads(await ws.recv())
                if isinstance(reply, list):
                    break
        assert [r.get("result", {}).get("version") for r in reply] == list(
            range(c.version + 1, c.version + 51)
        )
        await expect(page.locator(f"tr[data-id='{c.id}'] td.name")).to_have_text("C50", timeout=TIMEOUT_MS)
        await page.evaluate(SETTLE)
        counted = await renders(page)
        arrivals: list[float] = await page.evaluate("window.__arrivals")
        assert len(arrivals) == 50
        span_ms = arrivals[-1] - arrivals[0]
        frames = await page.evaluate("window.__frames")
        # The server commits the 50 writes one by one (one fsync each) but holds their
        # events while the batch runs and writes them to the page's socket as one burst,
        # which the store applies in one (rarely two) animation frames: a few renders of
        # C and of the list, never one per event.
        renders_of_c = counted["rows"][c.id]
        print(f"50 updates over {span_ms:.0f} ms, {frames} frames: {renders_of_c} renders of C")
        assert set(counted["rows"]) == {c.id}
        assert 1 <= renders_of_c <= 3
        assert counted["list"] == renders_of_c


async def test_a_second_window_sees_every_change_and_a_restart_keeps_the_list(
    browser: Browser, site: str, served: ServedBridge, tmp_path: Path
) -> None:
    page_a = await open_connected_page(browser, site, served)
    page_b = await open_connected_page(browser, site, served)

    # Create in A's form: B shows it, key masked.
    await page_a.fill("input[name=customName]", "Team OpenAI")
    await page_a.fill("input[name=apiKey]", OPENAI_KEY)
    await page_a.click("#save")
    row_b = page_b.locator("tr", has_text="Team OpenAI")
    await expect(row_b).to_be_visible(timeout=TIMEOUT_MS)
    await expect(row_b.locator("td.key")).to_have_text(f"sk-...{OPENAI_KEY[-3:]}")
    assert OPENAI_KEY not in await page_b.content()

    # Edit in A: a new base URL needs the key again (asked before anything is sent).
    await page_a.locator("tr", has_text="Team OpenAI").get_by_role("button", name="Edit").click()
    await expect(page_a.locator("#form-title")).to_have_text("Edit Team OpenAI")
    await page_a.fill("input[name=baseUrl]", "https://proxy.example.test/v1")
    await page_a.click("#save")
    await expect(page_a.locator('.field-error[data-field="apiKey"]')).to_contain_text(
        "API key", timeout=TIMEOUT_MS
    )
    await expect(row_b.locator("td.version")).to_have_text("1")
    await page_a.fill("input[name=apiKey]", OPENAI_KEY)
    await page_a.click("#save")
    await expect(row_b).to_contain_text("https://proxy.example.test/v1", timeout=TIMEOUT_MS)
    await expect(row_b.locator("td.version")).to_have_text("2")

    # A field error from the server shows next to its field; B sees nothing.
    await page_a.fill("input[name=customName]", "Bad Claude")
    await page_a.select_option("select[name=provider]", "anthropic")
    await page_a.fill("input[name=apiKey]", "sk-ant-short")
    await page_a.click("#save")
    await expect(page_a.locator('.field-error[data-field="apiKey"]')).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page_b.locator("tr", has_text="Bad Claude")).to_have_count(0)

    # Delete in B: gone from A.
    await page_b.click("button[aria-label='Delete Team OpenAI']")
    await expect(page_a.locator("tr", has_text="Team OpenAI")).to_have_count(0, timeout=TIMEOUT_MS)

    # Two configs, then a restart on the same port and token: reconnecting, then open,
    # the list intact all along, and a change made while away shows up.
    async with BridgeClient(served.url, served.token) as client:
        kept = await client.create_config({"customName": "Kept", "provider": "openai", "apiKey": OPENAI_KEY})
        await client.create_config(
            {"customName": "Also kept", "provider": "anthropic", "apiKey": ANTHROPIC_KEY}
        )
    for page in (page_a, page_b):
        await expect(page.locator("#configs tr")).to_have_count(2, timeout=TIMEOUT_MS)
    assert served.stop() == 0
    for page in (page_a, page_b):
        await expect(page.locator("#status")).to_have_text("Reconnecting…", timeout=TIMEOUT_MS)
        await expect(page.locator("#configs tr")).to_have_count(2)
    restarted = start_bridge_process(
        served.data_dir,
        "--allow-origin",
        site,
        "--token-file",
        str(tmp_path / "token"),
        "--port",
        str(served.port),
    )
    try:
        async with BridgeClient(restarted.url, restarted.token) as client:
            await client.update_config(kept.id, {"customName": "Kept, renamed while away"})
        for page in (page_a, page_b):
            await expect(page.locator("#status")).to_have_text("Connected", timeout=3 * TIMEOUT_MS)
            await expect(page.locator("tr", has_text="Kept, renamed while away")).to_be_visible(
                timeout=TIMEOUT_MS
            )
            await expect(page.locator("#configs tr")).to_have_count(2)
            log: list[str] = await page.evaluate("window.__statusLog")
            assert log[0] == "connecting"
            reconnecting = log.index("reconnecting")
            assert log[reconnecting:][-1] == "open"
            assert set(log[reconnecting:]) == {"reconnecting", "open"}
    finally:
        restarted.stop()


async def test_an_optimistic_update_refused_by_the_server_is_rolled_back(
    browser: Browser, site: str, served: ServedBridge
) -> None:
    async with BridgeClient(served.url, served.token) as client:
        a = await client.create_config({"customName": "A", "provider": "openai", "apiKey": OPENAI_KEY})
        await client.create_config({"customName": "B", "provider": "openai", "apiKey": OPENAI_KEY})
    page = await open_connected_page(browser, site, served)
    await expect(page.locator("#configs tr")).to_have_count(2, timeout=TIMEOUT_MS)
    await page.evaluate(SETTLE)
    # Record every name A's row shows.
    await page.evaluate(
        """(id) => {
        window.__namesOfA = [];
        const cell = document.querySelector(`tr[data-id='${id}'] td.name`);
        new MutationObserver(() => window.__namesOfA.push(cell.textContent))
          .observe(cell, { childList: true, characterData: true, subtree: true });
    }""",
        a.id,
    )
    await page.evaluate(RESET)

    # Renaming A to B's name: shown at once, refused (4009), rolled back.
    await page.locator(f"tr[data-id='{a.id}']").get_by_role("button", name="Edit").click()
    await page.fill("input[name=customName]", "B")
    await page.click("#save")
    await expect(page.locator("#form-error")).not_to_have_text("", timeout=TIMEOUT_MS)
    await expect(page.locator(f"tr[data-id='{a.id}'] td.name")).to_have_text("A", timeout=TIMEOUT_MS)
    await page.evaluate(SETTLE)
    assert await page.evaluate("window.__namesOfA") == ["B", "A"]
    assert await renders(page) == {"list": 2, "rows": {a.id: 2}}
    async with BridgeClient(served.url, served.token) as client:
        stored = await client.read_config(a.id)
    assert stored is not None
    assert (stored.custom_name, stored.version) == ("A", 1)
