"""Shared fixtures: fake keys of valid shapes, a served bridge subprocess, helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OPENAI_KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0" * 2  # 43 chars
ANTHROPIC_KEY = "sk-ant-" + "Z9y8X7w6V5u4T3s2R1q0" * 3  # 67 chars
GOOGLE_KEY = "AIzaSy" + "Gq1Wm2Xn3Yo4Zp5Ar6Bs7Ct8Du9Ev0Fw1"  # 6+33 = 39 chars
CUSTOM_KEY = "local-llm-secret-42"


def openai_config(name: str = "My OpenAI", **extra: Any) -> dict[str, Any]:
    """A valid ``LlmConfigInput`` wire dict for OpenAI."""
    return {"customName": name, "provider": "openai", "apiKey": OPENAI_KEY, **extra}


@dataclass
class ServedBridge:
    """A running ``bridge serve`` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    token: str
    port: int
    data_dir: Path
    ready: dict[str, Any]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()


def start_bridge_process(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> ServedBridge:
    """Start ``python -m bridge serve --port 0`` and wait for its ready line."""
    cmd = [
        sys.executable,
        "-m",
        "bridge",
        "serve",
        "--data-dir",
        str(data_dir),
        "--secret-backend",
        "file",
        *extra,
    ]
    if "--port" not in extra:
        cmd += ["--port", "0"]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{len(list(data_dir.parent.glob('server-*.log')))}.log"
    with log_path.open("wb") as log_file:
        # stderr goes to a file: a pipe nobody reads would block a chatty server.
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, env={**os.environ, **(env or {})}
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        raise AssertionError(f"bridge serve exited before ready: {log_path.read_text()}")
    ready = json.loads(line)
    assert ready["event"] == "ready", ready
    tail = ready["url"].rsplit(":", 1)[1]
    port = int(tail) if tail.isdigit() else 0  # 0: served on a Unix socket (--uds)
    return ServedBridge(process, ready["url"], ready["token"], port, data_dir, ready, log_path)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedBridge]:
    """A fresh ``bridge serve`` on 127.0.0.1 port 0 with its own data directory."""
    bridge = start_bridge_process(tmp_path / "data")
    try:
        yield bridge
    finally:
        bridge.stop()
