"""No secret anywhere (issue 7, item 7).

``bridge serve --log-level debug`` gets keys of all four providers (the custom one with
no recognisable shape, which no redaction pattern can catch) through creates, updates,
rejected requests, a store failure logged with its traceback, notifications, every
handshake form and a wrong token, plus a ``bridge call`` subprocess. Captured: every
frame received by every connection, every log line, the stdout and stderr of every
subprocess, and the ``bridge.db``, ``-wal`` and ``-shm`` bytes while the server runs and
after it stops. No API key appears in any of them; the token appears only where the
contract puts it (the ready line and the 0600 connection file).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.conftest import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY, start_bridge_process
from tests.reliability.helpers import find_secrets

pytestmark = pytest.mark.reliability

SHAPELESS_KEY = "Plain0ld~Passphrase.With.No+Shape/42"  # a custom provider's key: matches nothing
NEW_KEYS = {
    "openai": "sk-" + "Q9w8E7r6T5y4U3i2O1p0" * 2 + "Zz",
    "anthropic": "sk-ant-" + "M1n2B3v4C5x6Z7l8K9j0" * 3,
    "google": "Gg" + "h7J6k5L4m3N2b1V0c9X8z7A6s5D4f3G2h",
    "custom": "another~shapeless.secret+" + "9" * 8,
}
KEYS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY, "google": GOOGLE_KEY, "custom": SHAPELESS_KEY}


def config(provider: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = {"customName": name, "provider": provider, "apiKey": KEYS[provider]}
    if provider == "custom":
        body["baseUrl"] = "http://127.0.0.1:9/v1"
    return body


class Recorder:
    """A raw connection that keeps every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[bytes] = []
        self.ids = 0

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self.ids += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self.ids}
        if params is not None:
            message["params"] = params
        await self.ws.send(orjson.dumps(message).decode())
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), 30)
            self.frames.append(frame.encode() if isinstance(frame, str) else frame)
            reply = orjson.loads(frame)
            if reply.get("id") == self.ids:
                return reply  # type: ignore[no-any-return]

    async def drain_notifications(self, count: int) -> None:
        for _ in range(count):
            frame = await asyncio.wait_for(self.ws.recv(), 30)
            self.frames.append(frame.encode() if isinstance(frame, str) else frame)


def db_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("bridge.db*")) if p.is_file())


@pytest.mark.timeout(120)
async def test_no_api_key_or_token_in_logs_frames_outputs_or_database_files(tmp_path: Path) -> None:  # noqa: PLR0915 - one scenario through every channel
    data_dir = tmp_path / "data"
    served = start_bridge_process(data_dir, "--log-level", "debug")
    token = served.token
    secrets = {*KEYS.values(), *NEW_KEYS.values()}
    captured: dict[str, bytes] = {}
    headers = {"Authorization": f"Bearer {token}"}
    try:
        writer = Recorder(await connect(served.url, additional_headers=headers))
        # The two other handshake forms: a subprotocol pair and ?token= (redacted from logs).
        watcher = Recorder(
            await connect(served.url, subprotocols=["bridge.v1", f"bridge.v1.token.{token}"])  # type: ignore[list-item]
        )
        query = Recorder(await connect(f"{served.url}/?token={token}"))
        with pytest.raises(InvalidStatus):
            await connect(served.url, additional_headers={"Authorization": f"Bearer {token[:-1]}X"})

        ids = {}
        for provider in KEYS:
            reply = await writer.call("llm-config:create", {"config": config(provider, f"Key {provider}")})
            ids[provider] = reply["result"]["id"]
        for provider, cid in ids.items():
            reply = await writer.call(
                "llm-config:update", {"id": cid, "updates": {"apiKey": NEW_KEYS[provider]}}
            )
            assert reply["result"]["version"] == 2
        # Rejected requests carrying keys: wrong shape for the provider, key in an unknown
        # field, in the id, in an over-long name, a duplicate name, a bad batch element.
        rejected = [
            ("llm-config:create", {"config": {**config("anthropic", "X"), "apiKey": OPENAI_KEY}}),
            ("llm-config:create", {"config": {**config("openai", "Y"), "secret": SHAPELESS_KEY}}),
            ("llm-config:update", {"id": SHAPELESS_KEY, "updates": {"apiKey": GOOGLE_KEY}}),
            ("llm-config:create", {"config": config("custom", SHAPELESS_KEY * 4)}),
            ("llm-config:create", {"config": config("google", "Key google")}),
            ("llm-config:update", {"id": ids["openai"], "updates": {"apiKey": GOOGLE_KEY}}),
        ]
        for method, params in rejected:
            reply = await writer.call(method, params)
            assert "error" in reply
            assert reply["error"]["code"] in {-32602, 4009}
        await writer.ws.send(
            json.dumps(
                [
                    {
                        "jsonrpc": "2.0",
                        "id": 99,
                        "method": "llm-config:create",
                        "params": {"config": {"apiKey": SHAPELESS_KEY}},
                    },
                    {"apiKey": NEW_KEYS["custom"]},
                ]
            )
        )
        writer.frames.append((await asyncio.wait_for(writer.ws.recv(), 30)).encode())  # type: ignore[union-attr]

        # A store failure, logged with its traceback at debug level: another connection
        # holds the write lock past the 5 s busy timeout while a key is being changed.
        blocker = sqlite3.connect(data_dir / "bridge.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            reply = await query.call(
                "llm-config:update", {"id": ids["custom"], "updates": {"apiKey": SHAPELESS_KEY + "2"}}
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert reply["error"]["code"] == 5000
        secrets.add(SHAPELESS_KEY + "2")
        captured["db-live"] = db_bytes(data_dir)

        # The writes above notified every connection: the watcher reads its 8 notifications.
        await watcher.drain_notifications(8)
        assert all(b'"llm-config:changed"' in f for f in watcher.frames)
        await query.call("llm-config:list")

        # The CLI client, as a subprocess.
        cli = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "bridge",
                "call",
                "llm-config:create",
                json.dumps({"config": config("custom", "From CLI")}),
                "--data-dir",
                str(data_dir),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert cli.returncode == 0, cli
        captured["cli-stdout"], captured["cli-stderr"] = cli.stdout, cli.stderr
        for rec in (writer, watcher, query):
            await rec.ws.close()
            captured[f"frames-{id(rec)}"] = b"\n".join(rec.frames)
    finally:
        assert served.stop() == 0
    captured["db-after"] = db_bytes(data_dir)
    captured["server-stderr"] = served.log_path.read_bytes()
    assert served.process.stdout is not None

    log = captured["server-stderr"].decode()
    assert log.count('"connection_opened"') >= 4  # the whole log was captured (every handshake)
    assert "store_write_failed" in log  # the failure path with its traceback ran
    assert "Traceback" in log or '"exception"' in log
    for name, blob in captured.items():
        assert find_secrets(blob, secrets) == [], f"API key in {name}"
        assert find_secrets(blob, {token}) == [], f"token in {name}"
    # The token is in the ready line, by contract, and in the connection file while running.
    assert served.ready["token"] == token


def test_secret_scan_sees_plain_utf16_and_json_escaped_forms() -> None:
    assert find_secrets(b"x" + SHAPELESS_KEY.encode() + b"y", {SHAPELESS_KEY}) != []
    assert find_secrets(SHAPELESS_KEY.encode("utf-16-le"), {SHAPELESS_KEY}) != []
    assert find_secrets(json.dumps({"k": "a/b"}).encode(), {"a/b"}) != []
    assert find_secrets(b"sk-...Zz", set(NEW_KEYS.values())) == []  # a preview is not the key
