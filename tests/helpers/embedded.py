"""A program embedding bridge as a library: its stdout is its own.

Run as ``python -m tests.helpers.embedded DATA_DIR [basic|structlog]`` (from the
checkout's root): starts a bridge in process, creates an llm-config through a real
client, closes, and prints one line, ``{"event": "done", "id": ...}``, on stdout.
``basic`` configures the standard library's logging first (INFO, stderr), as a program
would; ``structlog`` configures structlog itself (lines on stdout, which bridge must then
leave alone); ``structlog-debug`` configures structlog onto the standard library's logging
and that at DEBUG on stderr (the websockets logger must still not print the token);
``provider`` configures the standard library's logging at DEBUG and also tests a draft
config against a local fake provider (``httpx``/``httpcore`` stay quiet, as in ``bridge
serve``), printing its ``ok`` in the last line. ``client`` starts no bridge: at DEBUG, as
``provider``, it only connects a client to the ``bridge serve`` whose connection file is in
``DATA_DIR``, with a ``schema_hash`` the server does not announce (a warning of the client's
own), and creates one config.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import structlog

import bridge
from bridge.client import BridgeClient
from bridge.connection_file import CONNECTION_FILE_NAME
from bridge.keystore import SecretBackend
from tests.helpers.fake_provider import NO_PROXY_ENV, FakeProvider

OPENAI_KEY = "sk-embedded-" + "7" * 40


async def run(data_dir: Path, *, provider: bool = False) -> dict[str, object]:
    """Start a bridge, create one config through a client; return its id (and a provider test's ``ok``)."""
    running = await bridge.start_bridge(
        bridge.BridgeOptions(data_dir=data_dir, secrets=bridge.SecretOptions(backend=SecretBackend.FILE))
    )
    done: dict[str, object] = {"event": "done"}
    try:
        async with BridgeClient(running.url, running.token) as client:
            config = await client.invoke(
                "llm-config:create",
                {"config": {"customName": "Embedded", "provider": "openai", "apiKey": OPENAI_KEY}},
            )
            done["id"] = config["id"]
            if provider:
                with FakeProvider("custom", OPENAI_KEY) as fake:
                    draft = {"customName": "Draft", "provider": "custom", "apiKey": OPENAI_KEY}
                    tested = await client.invoke(
                        "llm-config:test", {"config": {**draft, "baseUrl": fake.base_url}}
                    )
                    done["ok"] = tested["ok"]
    finally:
        await running.close()
    return done


async def client_only(data_dir: Path) -> dict[str, object]:
    """Connect to a running ``bridge serve`` (its connection file) and create one config; return its id."""
    client = BridgeClient.from_connection_file(
        data_dir / CONNECTION_FILE_NAME, schema_hash="sha256:" + "0" * 64
    )
    async with client:
        config = await client.invoke(
            "llm-config:create",
            {"config": {"customName": "From a client", "provider": "openai", "apiKey": OPENAI_KEY}},
        )
    return {"event": "done", "id": config["id"], "mismatch": client.schema_mismatch is not None}


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode == "basic":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    elif mode == "structlog":
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stdout))
    elif mode == "structlog-debug":
        structlog.configure(logger_factory=structlog.stdlib.LoggerFactory())
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    elif mode == "provider":
        os.environ.update(NO_PROXY_ENV)
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    elif mode == "client":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        print(json.dumps(asyncio.run(client_only(Path(sys.argv[1])))))
        sys.exit(0)
    print(json.dumps(asyncio.run(run(Path(sys.argv[1]), provider=mode == "provider"))))
