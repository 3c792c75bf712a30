"""Secret fields of a collection: write-only on the wire, encrypted at rest, bound to their row and field."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from structlog.testing import capture_logs

import bridge
from bridge.client import BridgeClient
from tests.conftest import OPENAI_KEY, openai_config
from tests.helpers.notes import SIGNING, TOKEN, Webhook
from tests.helpers.templates import running

WEBHOOKS = bridge.Collection("webhook", Webhook, unique=("url",), secret=("token", "signing_key"))


def registry() -> bridge.Registry:
    reg = bridge.Registry()
    reg.add_collection(WEBHOOKS)
    return reg


def db_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data.glob("collections.db*"))


async def test_secrets_never_leave_the_server_and_rest_encrypted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with capture_logs() as logs:
        async with (
            running(data, registry()) as served,
            BridgeClient(served.url, served.token, schema_hash=served.schema_hash()) as client,
        ):
            seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            client.on("webhook:changed", seen.put_nowait)
            created = await client.invoke(
                "webhook:create",
                {"item": {"url": "https://a.example/h", "token": TOKEN, "signingKey": SIGNING}},
            )
            assert set(created) == {
                "id",
                "url",
                "tokenPreview",
                "signingKeyPreview",
                "createdAt",
                "updatedAt",
                "version",
            }
            assert created["tokenPreview"] == "••••" + TOKEN[-4:]
            kept = await client.invoke(
                "webhook:update", {"id": created["id"], "updates": {"url": "https://b.example"}}
            )
            assert kept["tokenPreview"] == created["tokenPreview"]
            cleared = await client.invoke(
                "webhook:update", {"id": created["id"], "updates": {"signingKey": None}}
            )
            assert cleared["signingKeyPreview"] is None
            service = served.collections["webhook"]
            assert await service.secret(created["id"], "token") == TOKEN
            assert await service.secret(created["id"], "signing_key") is None
            wire = [
                created,
                kept,
                cleared,
                await client.invoke("webhook:list"),
                await client.invoke("webhook:snapshot"),
                await client.invoke("webhook:read", {"id": created["id"]}),
            ]
            wire += [await asyncio.wait_for(seen.get(), 10) for _ in range(3)]
    text = orjson.dumps(wire) + repr(logs).encode()
    assert TOKEN.encode() not in text
    assert SIGNING.encode() not in text
    assert TOKEN.encode() not in db_bytes(data)
    assert SIGNING.encode() not in db_bytes(data)


async def test_a_short_secret_preview_shows_none_of_it_and_a_long_one_only_its_last_4(tmp_path: Path) -> None:
    async with (
        running(tmp_path / "data", registry()) as served,
        BridgeClient(served.url, served.token, schema_hash=served.schema_hash()) as client,
    ):
        short = await client.invoke(
            "webhook:create",
            {"item": {"url": "https://a.example", "token": "pa55w0rd!x", "signingKey": "k" * 15}},
        )
        assert short["tokenPreview"] == short["signingKeyPreview"] == "••••••••"
        long = await client.invoke(
            "webhook:create", {"item": {"url": "https://b.example", "token": "abcdefghijkl3456"}}
        )
        assert long["tokenPreview"] == "••••3456"
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        assert config["apiKeyPreview"] == f"{OPENAI_KEY[:3]}...{OPENAI_KEY[-3:]}"  # unchanged


async def test_a_ciphertext_moved_to_another_row_or_field_does_not_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, registry()) as served:
        service = served.collections["webhook"]
        a = await service.create(Webhook(url="https://a.example", token=TOKEN, signing_key=SIGNING))
        b = await service.create(Webhook(url="https://b.example", token="other-" + TOKEN))
        c = await service.create(Webhook(url="https://c.example", token="third-" + TOKEN))
    with sqlite3.connect(data / "collections.db") as db:
        # A's token sealed into B's row; C's signing key is C's own token (another field).
        db.execute(
            "UPDATE items SET data = json_set(data, '$.\"$sealed\".token', "
            "(SELECT json_extract(data, '$.\"$sealed\".token') FROM items WHERE id = ?)) WHERE id = ?",
            (a.id, b.id),
        )
        db.execute(
            "UPDATE items SET data = json_set(data, "
            "'$.\"$sealed\".signing_key', json_extract(data, '$.\"$sealed\".token'), "
            "'$.signing_key_preview', 'abc...xyz') WHERE id = ?",
            (c.id,),
        )
    db.close()
    with capture_logs() as logs:
        async with running(data, registry()) as served:
            service = served.collections["webhook"]
            assert [v.id for v in service.list()] == [a.id]
            assert service.quarantined() == {b.id: "CIPHERTEXT_AUTH_FAILED", c.id: "CIPHERTEXT_AUTH_FAILED"}
            assert await service.secret(a.id, "token") == TOKEN
    events = [e for e in logs if e["event"] == "security_event"]
    assert sorted(e["id"] for e in events) == sorted([b.id, c.id])
    assert TOKEN not in repr(logs)


async def test_a_plaintext_secret_or_a_preview_without_a_secret_in_a_stored_row_is_quarantined(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running(data, registry()) as served:
        service = served.collections["webhook"]
        a = await service.create(Webhook(url="https://a.example", token=TOKEN))
        b = await service.create(Webhook(url="https://b.example", token=TOKEN, signing_key=SIGNING))
        c = await service.create(Webhook(url="https://c.example", token=TOKEN))
    with sqlite3.connect(data / "collections.db") as db:
        # Another program writes A's token in plain text beside its sealed copy, and drops
        # B's sealed signing key but leaves its preview.
        db.execute("UPDATE items SET data = json_set(data, '$.token', ?) WHERE id = ?", (TOKEN, a.id))
        db.execute(
            "UPDATE items SET data = json_remove(data, '$.\"$sealed\".signing_key') WHERE id = ?", (b.id,)
        )
    db.close()
    with capture_logs() as logs:
        async with running(data, registry()) as served:
            service = served.collections["webhook"]
            assert [v.id for v in service.list()] == [c.id]
            assert service.quarantined() == {
                a.id: "PLAINTEXT_SECRET",
                b.id: "signing_key_preview.INVALID_FORMAT",
            }
    assert [e["id"] for e in logs if e["event"] == "security_event"] == [a.id]
    assert TOKEN not in repr(logs)
    assert SIGNING not in repr(logs)


async def test_rotate_key_reseals_collection_secrets_and_retires_the_old_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, registry()) as served:
        made = await served.collections["webhook"].create(Webhook(url="https://a.example", token=TOKEN))
        old_ids = await served.collection_store.key_ids()  # type: ignore[union-attr]
    command = [
        sys.executable,
        "-m",
        "bridge",
        "rotate-key",
        "--data-dir",
        str(data),
        "--secret-backend",
        "file",
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["event"] == "rotated"
    assert report["resealed"] == 1  # the webhook (no llm-config exists)
    assert report["unopened"] == 0
    assert report["retired"] == [k.hex() for k in old_ids]
    with capture_logs() as logs:
        async with running(data, registry()) as served:
            service = served.collections["webhook"]
            assert service.quarantined() == {}
            assert await service.secret(made.id, "token") == TOKEN
            (view,) = service.list()
            assert view.version == 2
            assert await served.collection_store.key_ids() == {bytes.fromhex(report["sealingKeyId"])}  # type: ignore[union-attr]
    assert TOKEN not in repr(logs)


async def test_doctor_reports_collection_rows_the_server_would_quarantine(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, registry()) as served:
        service = served.collections["webhook"]
        good = await service.create(Webhook(url="https://a.example", token=TOKEN))
        moved = await service.create(Webhook(url="https://b.example", token="other-" + TOKEN))
    with sqlite3.connect(data / "collections.db") as db:
        db.execute(
            "UPDATE items SET data = json_set(data, '$.\"$sealed\".token', "
            "(SELECT json_extract(data, '$.\"$sealed\".token') FROM items WHERE id = ?)) WHERE id = ?",
            (good.id, moved.id),
        )
    db.close()
    before = (data / "collections.db").read_bytes()
    command = [sys.executable, "-m", "bridge", "doctor", "--data-dir", str(data), "--secret-backend", "file"]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["quarantined"] == []
    assert report["collections"] == {
        "database": str(data / "collections.db"),
        "damage": None,
        "schemaVersion": 1,
        "rows": 2,
        "quarantined": [{"collection": "webhook", "id": moved.id, "reason": "CIPHERTEXT_AUTH_FAILED"}],
    }
    assert (data / "collections.db").read_bytes() == before
    assert TOKEN not in done.stdout + done.stderr
