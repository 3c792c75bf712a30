"""The Tauri example: its configuration against Tauri's own schema, and its webview code in Chromium.

Tauri itself is not run here (no Rust toolchain, no WebKitGTK, no downloads). What is
checked: ``tauri.conf.json`` and the capability file validate against the
``config.schema.json`` shipped in npm ``@tauri-apps/cli`` (package-lock.json); the
capability allows exactly the sidecar spawn that ``src/main.js`` performs; and
``main.js`` — built by ``build.mjs`` — reads a real ready line and drives a real server
from Chromium. Only ``window.__TAURI__.shell`` (the plugin's IPC to Rust) is stood in for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from playwright.async_api import Browser, expect

from bridge.client import BridgeClient
from tests.browser.conftest import TIMEOUT_MS, bridge_for_page, serve_directory
from tests.conftest import OPENAI_KEY, ServedBridge

ROOT = Path(__file__).resolve().parents[2]
TAURI = ROOT / "examples" / "tauri"
TAURI_ORIGINS = ["tauri://localhost", "http://tauri.localhost"]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tauri_schema() -> dict[str, Any]:
    path = ROOT / "node_modules" / "@tauri-apps" / "cli" / "config.schema.json"
    assert path.is_file(), "run `npm ci` (make check does): @tauri-apps/cli ships the schema"
    schema: dict[str, Any] = load(path)
    return schema


def spawn_permission(capability: dict[str, Any]) -> dict[str, Any]:
    [permission] = [
        p for p in capability["permissions"] if isinstance(p, dict) and p["identifier"] == "shell:allow-spawn"
    ]
    [allowed] = permission["allow"]
    assert isinstance(allowed, dict)
    return allowed


def test_tauri_conf_validates_and_bundles_bridge_as_sidecar(tauri_schema: dict[str, Any]) -> None:
    conf = load(TAURI / "src-tauri" / "tauri.conf.json")
    errors = [e.message for e in Draft7Validator(tauri_schema).iter_errors(conf)]
    assert errors == []
    assert conf["bundle"]["externalBin"] == ["binaries/bridge"]
    assert conf["app"]["withGlobalTauri"] is True  # main.js uses window.__TAURI__.shell
    assert "ws://127.0.0.1:*" in conf["app"]["security"]["csp"]


def test_capability_validates_and_allows_exactly_the_sidecar_spawn(tauri_schema: dict[str, Any]) -> None:
    capability = load(TAURI / "src-tauri" / "capabilities" / "default.json")
    schema = {"$ref": "#/definitions/Capability", "definitions": tauri_schema["definitions"]}
    assert [e.message for e in Draft7Validator(schema).iter_errors(capability)] == []
    windows = load(TAURI / "src-tauri" / "tauri.conf.json")["app"]["windows"]
    assert capability["windows"] == [w["label"] for w in windows] == ["main"]
    allowed = spawn_permission(capability)
    assert allowed["sidecar"] is True
    assert allowed["name"] == "binaries/bridge"
    args = allowed["args"]
    assert "--exit-with-parent" in args
    pairs = {args[i + 1] for i, arg in enumerate(args) if arg == "--allow-origin"}
    assert pairs == set(TAURI_ORIGINS)
    assert {"shell:allow-stdin-write", "shell:allow-kill"} <= {
        p for p in capability["permissions"] if isinstance(p, str)
    }


# ---- main.js in Chromium ---------------------------------------------------------------

STUB = """
window.__spawned = [];
window.__TAURI__ = { shell: { Command: { sidecar(name, args) {
  const handlers = {};
  return {
    stdout: { on(event, callback) { handlers["stdout:" + event] = callback; } },
    on(event, callback) { handlers[event] = callback; },
    async spawn() {
      window.__spawned.push({ name, args });
      setTimeout(() => { handlers["stdout:data"]("not json"); handlers["stdout:data"](READY_LINE); }, 0);
      return { pid: 1, write() {}, kill() {} };
    },
  };
} } } };
"""


@pytest.fixture
def built_frontend(tmp_path: Path) -> Iterator[str]:
    """Run build.mjs into a temp dir and serve it on 127.0.0.1:0; yields the origin."""
    node = shutil.which("node")
    assert node is not None
    out = tmp_path / "dist"
    subprocess.run([node, str(TAURI / "build.mjs"), str(out)], check=True, timeout=60)
    assert (out / "bridge-ipc.mjs").read_bytes() == (ROOT / "clients/js/dist/index.mjs").read_bytes()
    with serve_directory(out) as origin:
        yield origin


@pytest.fixture
def page_bridge(tmp_path: Path, built_frontend: str) -> Iterator[ServedBridge]:
    with bridge_for_page(tmp_path, built_frontend) as served:
        yield served


async def test_main_js_reads_the_ready_line_and_shows_live_configs(
    browser: Browser, built_frontend: str, page_bridge: ServedBridge
) -> None:
    page = await browser.new_page()
    ready_line = json.dumps(page_bridge.ready)
    await page.add_init_script(f"const READY_LINE = {json.dumps(ready_line)};\n{STUB}")
    await page.goto(f"{built_frontend}/index.html")
    await expect(page.locator("#status")).to_have_text("Connected", timeout=TIMEOUT_MS)

    capability = load(TAURI / "src-tauri" / "capabilities" / "default.json")
    allowed = spawn_permission(capability)
    assert await page.evaluate("window.__spawned") == [{"name": allowed["name"], "args": allowed["args"]}]

    async with BridgeClient(page_bridge.url, page_bridge.token) as client:
        created = await client.create_config(
            {"customName": "Tauri OpenAI", "provider": "openai", "apiKey": OPENAI_KEY}
        )
    item = page.locator(f"li[data-id='{created.id}']")
    await expect(item).to_have_text(f"Tauri OpenAI (openai) sk-...{OPENAI_KEY[-3:]}", timeout=TIMEOUT_MS)
    assert OPENAI_KEY not in await page.content()
    await expect(page.locator("#error")).to_have_text("")
