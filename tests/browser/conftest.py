"""Browser fixtures: Debian's Chromium through Playwright, pages served on 127.0.0.1:0, and
``bridge serve`` processes that allow those pages' origin."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import ServedBridge, start_bridge_process

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium: Playwright never downloads a browser here."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
"""Bound on each wait for visible text, in milliseconds."""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1, a free port; yields the origin."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium, closed after the test."""
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve examples/renderer/ over HTTP on 127.0.0.1:0; yields the origin.

    Its ``bridge-client.js`` re-exports the npm package's source (``../../clients/js``),
    which a URL resolves to ``/clients/…`` from the site root: linked in beside the page.
    """
    site = tmp_path_factory.mktemp("site")
    for entry in (ROOT / "examples" / "renderer").iterdir():
        (site / entry.name).symlink_to(entry)
    (site / "clients").symlink_to(ROOT / "clients")
    with serve_directory(site) as origin:
        yield origin


def bridge_for_page(
    tmp_path: Path, origin: str, *, token: str | None = None, env: dict[str, str] | None = None
) -> ServedBridge:
    """``bridge serve`` on ``tmp_path/"data"`` that allows ``origin`` (``--allow-origin``).

    With ``token``, the token comes from a 0600 ``--token-file`` at ``tmp_path/"token"`` (a
    secret: bridge refuses one others can read), so a restart keeps it. ``env`` is added to
    the process environment. Use it as a context manager to stop the process after.
    """
    flags = ["--allow-origin", origin]
    if token is not None:
        token_file = tmp_path / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        flags += ["--token-file", str(token_file)]
    return start_bridge_process(tmp_path / "data", *flags, env=env)


async def open_page(browser: Browser, origin: str, url: str, token: str) -> Page:
    """A new page on ``origin``'s ``index.html`` told to dial ``url`` with ``token`` (in the hash)."""
    page = await browser.new_page()
    await page.goto(f"{origin}/index.html#url={url}&token={token}")
    return page


async def open_connected_page(browser: Browser, origin: str, served: ServedBridge) -> Page:
    """:func:`open_page` to ``served``, once its ``#status`` says "Connected"."""
    page = await open_page(browser, origin, served.url, served.token)
    await expect(page.locator("#status")).to_have_text("Connected", timeout=TIMEOUT_MS)
    return page
