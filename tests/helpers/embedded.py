"""A program embedding bridge as a library: its stdout is its own.

Run as ``python -m tests.helpers.embedded DATA_DIR [basic|structlog]`` (from the
checkout's root): starts a bridge in process, creates an llm-config through a real
client, closes, and prints one line, ``{"event": "done", "id": ...}``, on stdout.
``basic`` configures the standard library's logging first (INFO, stderr), as a program
would; ``structlog`` configures structlog itself (lines on stdout, which bridge must then
leave alone); ``structlog-debug`` configures structlog onto the standard library's logging
and that at DEBUG on stderr (the websockets logger must still not print the token).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import structlog

import bridge
from bridge.client import BridgeClient
from bridge.keystore import SecretBackend

OPENAI_KEY = "sk-embedded-" + "7" * 40


async def run(data_dir: Path) -> str:
    """Start a bridge on ``data_dir``, create one config through a client; return its id."""
    running = await bridge.start_bridge(
        bridge.BridgeOptions(data_dir=data_dir, secrets=bridge.SecretOptions(backend=SecretBackend.FILE))
    )
    try:
        async with BridgeClient(running.url, running.token) as client:
            config = await client.invoke(
                "llm-config:create",
                {"config": {"customName": "Embedded", "provider": "openai", "apiKey": OPENAI_KEY}},
            )
    finally:
        await running.close()
    return str(config["id"])


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode == "basic":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    elif mode == "structlog":
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stdout))
    elif mode == "structlog-debug":
        structlog.configure(logger_factory=structlog.stdlib.LoggerFactory())
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    config_id = asyncio.run(run(Path(sys.argv[1])))
    print(json.dumps({"event": "done", "id": config_id}))
