"""``bridge serve`` imports and builds only what its ready line needs (issue: cold start).

Runs ``python -X importtime -m bridge serve`` with stderr on a pipe (JSON logs, as a
sidecar's), stops it after the ready line, and reads which modules were imported on the
way. Timing goals live in ``benchmarks/cold_start.py``; this only checks the imports.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import serve_command

TIMEOUT = 30
NOT_AT_START = {
    "rich.console": "structlog's console renderer extras (JSON logs never use them)",
    "rich.traceback": "structlog's console renderer extras",
    "bridge.schemas": "the OpenRPC document is package data, read on the first rpc.discover/bridge:hello",
    "bridge.client": "the Python client",
    "keyring": "the OS keyring (--secret-backend file)",
    "platformdirs": "the default data directory (--data-dir given)",
    "tenacity": "the reconnect backoff",
    "httpx": "llm-config:test's HTTP client (imported by the first test call)",
}


def imported_until_ready(data_dir: Path) -> set[str]:
    command = serve_command(data_dir)
    command.insert(1, "-X")
    command.insert(2, "importtime")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["event"] == "ready"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "cumulative" not in line
    }


def test_serve_imports_nothing_its_ready_line_does_not_need(tmp_path: Path) -> None:
    modules = imported_until_ready(tmp_path / "data")
    assert "bridge.app" in modules  # the probe sees the server's own imports
    assert "bridge.rpc.server" in modules
    unexpected = {name: why for name, why in NOT_AT_START.items() if name in modules}
    assert not unexpected, unexpected
