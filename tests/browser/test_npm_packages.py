"""The npm packages as a user gets them: packed, installed from the tarballs, type-checked, run.

``npm pack`` makes ``bridge-ipc`` (clients/js) and ``bridge-ipc-typegen`` (clients/typegen);
both tarballs are installed into a scratch project (the typegen's own dependencies come
from the registry, as for any user). Then: the typegen ``bin`` generates the app's types
from the running server's ``rpc.discover`` (and the same from ``schemas/openrpc.json``);
``tsc --strict`` type-checks a TypeScript consumer against the package's bundled ``.d.ts``
and those types; the consumer runs under Node against the real server; the package's
CommonJS build loads with ``require``; and esbuild bundles a page that imports the package,
which runs in Chromium against the same server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.browser.conftest import TIMEOUT_MS, bridge_for_page, serve_directory
from tests.conftest import ANTHROPIC_KEY, ServedBridge

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = Path(__file__).resolve().parent / "npm_consumer"
NPM_TIMEOUT_S = 300


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch project with both packed tarballs installed (npm pack runs the package build)."""
    npm = shutil.which("npm")
    assert npm is not None
    packs = tmp_path_factory.mktemp("packs")
    tarballs = []
    for package in ("js", "typegen"):
        out = run([npm, "pack", "--json", "--pack-destination", str(packs)], ROOT / "clients" / package)
        [packed] = json.loads(out)
        tarballs.append(str(packs / packed["filename"]))
        if package == "js":
            files = {entry["path"] for entry in packed["files"]}
            assert {
                "dist/index.mjs",
                "dist/index.cjs",
                "dist/preload.cjs",
                "dist/index.d.ts",
                "dist/wire.d.ts",
            } <= files
            assert not any(name.startswith("src/") for name in files)
    project = tmp_path_factory.mktemp("consumer")
    (project / "package.json").write_text(json.dumps({"name": "consumer", "private": True, "type": "module"}))
    for name in ("consumer.ts", "browser.js", "tsconfig.json"):
        shutil.copy(CONSUMER / name, project / name)
    run([npm, "install", "--no-audit", "--no-fund", "--prefer-offline", *tarballs], project)
    installed = json.loads((project / "node_modules" / "bridge-ipc" / "package.json").read_text())
    assert installed.get("dependencies", {}) == {}, "bridge-ipc has no runtime dependencies"
    return project


@pytest.fixture
def page_and_bridge(tmp_path: Path) -> Iterator[tuple[str, ServedBridge]]:
    site = tmp_path / "site"
    site.mkdir()
    with serve_directory(site) as origin, bridge_for_page(tmp_path, origin) as served:
        yield origin, served


async def test_packed_packages_typecheck_run_in_node_and_bundle_for_chromium(
    browser: Browser, scratch: Path, page_and_bridge: tuple[str, ServedBridge], tmp_path: Path
) -> None:
    origin, served = page_and_bridge
    node = shutil.which("node")
    assert node is not None
    typegen = str(scratch / "node_modules" / ".bin" / "bridge-ipc-typegen")
    token_file = tmp_path / "token"
    token_file.write_text(served.token)

    # Types from the running server, and the same from the committed OpenRPC document.
    run([typegen, "--url", served.url, "--token-file", str(token_file), "--out", "app-types.d.ts"], scratch)
    from_file = run([typegen, "--openrpc", str(ROOT / "schemas" / "openrpc.json")], scratch)
    generated = (scratch / "app-types.d.ts").read_text()
    assert "export interface ChannelMap" in generated
    assert '"llm-config:create": {' in generated
    assert generated == from_file
    run(
        [typegen, "--openrpc", str(ROOT / "schemas" / "openrpc.json"), "--out", "app-types.d.ts", "--check"],
        scratch,
    )

    # tsc --strict on the consumer (its @ts-expect-error lines must still be errors), then run it.
    run([str(ROOT / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"], scratch)
    out = run([node, "--experimental-websocket", "out/consumer.js", served.url, served.token], scratch)
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {
        "protocol": 1,
        "created": "From Node",
        "live": ["From Node"],
        "sameObject": True,
        "svelteStatus": "open",
        "duplicate": "4009 DUPLICATE_CONFIG_NAME",
    }

    # The CommonJS build: require() of the main entry and of the svelte entry.
    script = (
        "const m = require('bridge-ipc'); const s = require('bridge-ipc/svelte');"
        "console.log([typeof m.BridgeClient, typeof m.liveConfigs, typeof s.llmConfigStore,"
        " m.STATUSES.join()].join(' '))"
    )
    cjs = run([node, "-e", script], scratch)
    assert cjs.strip() == "function function function connecting,open,reconnecting,closed,failed"

    # Bundled for the browser by esbuild from the installed package, run in Chromium.
    site = Path(served.data_dir).parent / "site"
    esbuild = str(ROOT / "clients" / "js" / "node_modules" / ".bin" / "esbuild")
    run([esbuild, "browser.js", "--bundle", "--format=esm", f"--outfile={site / 'app.js'}"], scratch)
    (site / "index.html").write_text('<!doctype html><script type="module" src="app.js"></script>')
    page = await browser.new_page()
    await page.goto(f"{origin}/index.html#url={served.url}&token={served.token}&key={ANTHROPIC_KEY}")
    await page.wait_for_function("window.__result !== undefined", timeout=TIMEOUT_MS)
    assert await page.evaluate("window.__result") == {
        "status": "open",
        "names": ["From Node", "From Chromium"],
    }
