"""``bridge serve`` imports and builds only what its ready line needs (issue: cold start).

Runs ``python -X importtime -m bridge serve`` with stderr on a pipe (JSON logs, as a
sidecar's), stops it after the ready line, and reads which modules were imported on the
way. Timing goals live in ``benchmarks/cold_start.py``; this only checks the imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge import schemas
from bridge.client import BridgeClient
from bridge.keystore import SecretBackend
from tests.conftest import serve_command
from tests.helpers.app_sidecar import load_example

ROOT = Path(__file__).resolve().parents[2]

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
    "cryptography.hazmat.primitives.ciphers.aead": "AES-GCM (an empty store seals and opens nothing yet)",
}


def imported_until_ready(data_dir: Path, command: list[str] | None = None) -> set[str]:
    command = command or serve_command(data_dir)
    command.insert(1, "-X")
    command.insert(2, "importtime")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
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


def test_an_application_sidecar_does_not_generate_its_document_at_start(tmp_path: Path) -> None:
    """A registry with channels of its own: the document is generated later, not for the ready line."""
    command = [sys.executable, "-m", "tests.helpers.app_sidecar", "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "data"), "--secret-backend", "file"]
    modules = imported_until_ready(tmp_path / "data", command)
    assert "bridge.app" in modules
    assert "bridge.schemas" not in modules


async def test_an_application_document_is_generated_once_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated: list[int] = []
    real = schemas.openrpc_document

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        generated.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(schemas, "openrpc_document", counting)  # a spy: it calls the real generator
    running = await bridge.start_bridge(
        bridge.BridgeOptions(
            data_dir=tmp_path / "data",
            secrets=bridge.SecretOptions(backend=SecretBackend.FILE),
            transport=bridge.TransportOptions(port=0),
        ),
        load_example().build_registry(),
    )
    try:
        assert generated == []  # not at start
        async with BridgeClient(running.url, running.token, on_schema_mismatch=lambda _: None) as client:
            first = (await client.hello()).schema_hash
            document = await client.invoke("rpc.discover")
            again = (await client.hello()).schema_hash
        embedded = running.schema_hash(), running.schema_hash()  # the served document's, not rebuilt
    finally:
        await running.close()
    assert generated == [1]
    assert first == again == embedded[0] == embedded[1] == schemas.schema_hash(document)
    assert "app:echo" in {method["name"] for method in document["methods"]}
