"""``bridge serve --loop``: asyncio and uvloop both serve; uvloop asked for but missing fails clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.conftest import start_bridge_process


@pytest.mark.parametrize(("choice", "module"), [("asyncio", "asyncio"), ("uvloop", "uvloop")])
async def test_serve_with_loop_choice_answers_requests_on_that_loop(
    tmp_path: Path, choice: str, module: str
) -> None:
    if choice == "uvloop":
        pytest.importorskip("uvloop")
    bridge = start_bridge_process(tmp_path / "data", "--loop", choice)
    try:
        async with connect(
            bridge.url, additional_headers={"Authorization": f"Bearer {bridge.token}"}, compression=None
        ) as ws:
            await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "llm-config:list"}).decode())
            reply = orjson.loads(await ws.recv())
        assert reply == {"jsonrpc": "2.0", "id": 1, "result": []}
    finally:
        assert bridge.stop() == 0
    selected = [
        json.loads(line)
        for line in bridge.log_text().splitlines()
        if line.startswith("{") and "event_loop_selected" in line
    ]
    assert len(selected) == 1
    assert selected[0]["loop"].split(".")[0] == module


def test_loop_uvloop_without_uvloop_installed_fails_with_one_json_error_line(tmp_path: Path) -> None:
    # sys.modules[name] = None makes `import name` raise ImportError, as if not installed.
    script = (
        "import sys; sys.modules['uvloop'] = None; from bridge.cli import main; "
        f"raise SystemExit(main(['serve', '--data-dir', {str(tmp_path / 'd')!r}, "
        "'--secret-backend', 'file', '--port', '0', '--loop', 'uvloop']))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, check=False)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1
    error = json.loads(lines[0])
    assert error["event"] == "error"
    assert error["error"] == "STARTUP_FAILED"
    assert "uvloop is not installed" in error["message"]
    assert not (tmp_path / "d").exists()  # refused before touching the data directory
