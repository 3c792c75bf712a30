"""Collections keep the promises llm-config keeps (issue 14, S4-B).

Real SQLite files on ``tmp_path``, real sockets on 127.0.0.1 port 0, real clients; the
"other program" that breaks a row is a plain ``sqlite3`` connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field

import bridge
from tests.conftest import openai_config
from tests.e2e.wire import open_ws, recv_json
from tests.helpers.notes import SIGNING, TOKEN, Webhook, call, client_of, folders_and_notes, template
from tests.helpers.templates import running

TIMEOUT = 10.0


# ---- 1. deleting a quarantined item clears the references to it --------------------------


async def test_deleting_a_quarantined_item_clears_its_references_before_the_response(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, folders_and_notes()) as served, client_of(served) as client:
        folder = await client.invoke("folder:create", {"item": {"title": "Work"}})
        note = await client.invoke("note:create", {"item": {"text": "x", "folder": folder["id"]}})
    # Another program breaks the folder's row while no bridge runs: held at start, the
    # note keeps its reference (a held item is not a deleted one).
    with sqlite3.connect(data / "collections.db") as db:
        db.execute("UPDATE items SET data = '{\"title\": 5}' WHERE id = ?", (folder["id"],))
    db.close()
    async with running(data, folders_and_notes()) as served:
        assert served.collections["folder"].quarantined() == {folder["id"]: "title.INVALID_FORMAT"}
        assert served.collections["note"].read(note["id"]).folder == folder["id"]
        ws = await open_ws(served)
        try:
            deleted, before = await call(ws, "folder:delete", {"id": folder["id"]}, 1)
            listed, _ = await call(ws, "note:list", None, 2)
        finally:
            await ws.close()
        assert served.collections["folder"].quarantined() == {}
    assert deleted == {"deleted": True}
    # The folder was sent as deleted when it went into quarantine; the clearing comes now.
    assert [(f["method"], f["params"]["type"], f["params"]["id"]) for f in before] == [
        ("note:changed", "updated", note["id"]),
    ]
    assert before[0]["params"]["item"]["folder"] is None
    assert before[0]["params"]["item"]["version"] == 2
    assert [(n["id"], n["folder"]) for n in listed] == [(note["id"], None)]


async def test_deleting_a_quarantined_llm_config_nulls_the_templates_model_before_the_response(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running(data) as served:
        ws = await open_ws(served)
        try:
            config, _ = await call(ws, "llm-config:create", {"config": openai_config()}, 1)
            item, _ = await call(ws, "prompt-template:create", {"item": template("A", config["id"])}, 2)
            # Another program makes the config's row invalid: quarantined, sent as deleted;
            # the template keeps its model (an update may restore the config).
            with sqlite3.connect(data / "bridge.db") as db:
                db.execute("UPDATE configs SET provider = 'bogus' WHERE id = ?", (config["id"],))
            db.close()
            frame = await recv_json(ws)
            while frame.get("method") != "llm-config:changed":
                frame = await recv_json(ws)
            assert (frame["params"]["type"], frame["params"]["id"]) == ("deleted", config["id"])
            assert served.collections["prompt-template"].read(item["id"]).model == config["id"]
            deleted, before = await call(ws, "llm-config:delete", {"id": config["id"]}, 3)
            snapshot, _ = await call(ws, "prompt-template:snapshot", None, 4)
        finally:
            await ws.close()
        assert served.service.quarantined() == []
    assert deleted == {"deleted": True}
    assert [(f["method"], f["params"]["type"], f["params"]["id"]) for f in before] == [
        ("prompt-template:changed", "updated", item["id"]),
    ]
    assert before[0]["params"]["item"]["model"] is None
    assert before[0]["params"]["item"]["version"] == 2
    assert [(t["id"], t["model"]) for t in snapshot["items"]] == [(item["id"], None)]


async def test_a_quarantined_item_another_process_deletes_clears_the_references(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        templates = asyncio.Queue[dict[str, Any]]()
        configs = asyncio.Queue[dict[str, Any]]()
        client.on("prompt-template:changed", templates.put_nowait)
        client.on("llm-config:changed", configs.put_nowait)
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        item = await client.invoke("prompt-template:create", {"item": template("A", config["id"])})
        await asyncio.wait_for(templates.get(), TIMEOUT)
        assert (await asyncio.wait_for(configs.get(), TIMEOUT))["type"] == "created"
        with sqlite3.connect(data / "bridge.db") as db:
            db.execute("UPDATE configs SET provider = 'bogus' WHERE id = ?", (config["id"],))
        db.close()
        assert (await asyncio.wait_for(configs.get(), TIMEOUT))["type"] == "deleted"  # held
        assert [q.id for q in served.service.quarantined()] == [config["id"]]
        # The other program now deletes the held row: the follower sees it gone.
        with sqlite3.connect(data / "bridge.db") as db:
            db.execute("DELETE FROM configs WHERE id = ?", (config["id"],))
        db.close()
        cleared = await asyncio.wait_for(templates.get(), TIMEOUT)
    assert (cleared["type"], cleared["id"], cleared["item"]["model"]) == ("updated", item["id"], None)


# ---- 2. bridge doctor flags a plaintext secret and an orphan preview ----------------------


class Card(bridge.WireModel):
    """A card's masked number, kept by the application itself: not a secret of bridge's."""

    holder: str
    number_preview: str


def webhooks_and_cards() -> bridge.Registry:
    """``webhook`` (secrets ``token``, ``signing_key``) and ``card`` (no secret)."""
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("webhook", Webhook, secret=("token", "signing_key")))
    registry.add_collection(bridge.Collection("card", Card))
    return registry


async def doctor(data: Path) -> tuple[int, dict[str, Any], str]:
    """Run ``bridge doctor`` on ``data``: exit code, its JSON line, everything it printed."""
    command = [sys.executable, "-m", "bridge", "doctor", "--data-dir", str(data), "--secret-backend", "file"]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=60
    )
    return done.returncode, json.loads(done.stdout.splitlines()[-1]), done.stdout + done.stderr


async def test_doctor_flags_a_plaintext_secret_and_an_orphan_preview_as_the_server_quarantines_them(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running(data, webhooks_and_cards()) as served:
        hooks = served.collections["webhook"]
        plain = await hooks.create(Webhook(url="https://a.example", token=TOKEN))
        orphan = await hooks.create(Webhook(url="https://b.example", token=TOKEN, signing_key=SIGNING))
        camel = await hooks.create(Webhook(url="https://c.example", token=TOKEN, signing_key=SIGNING))
        unsealed = await hooks.create(Webhook(url="https://d.example", token=TOKEN, signing_key=SIGNING))
        kept = await hooks.create(Webhook(url="https://e.example", token=TOKEN, signing_key=SIGNING))
        await served.collections["card"].create(Card(holder="Ada", number_preview="••••1234"))
    code, clean, _ = await doctor(data)
    assert (code, clean["collections"]["rows"], clean["collections"]["quarantined"]) == (0, 6, [])
    with sqlite3.connect(data / "collections.db") as db:
        # Another program writes a token in plain text beside its sealed copy, a signing key
        # in plain text under its wire name, drops a sealed signing key but leaves its
        # preview, and clears a preview but leaves its sealed signing key.
        db.execute("UPDATE items SET data = json_set(data, '$.token', ?) WHERE id = ?", (TOKEN, plain.id))
        db.execute(
            "UPDATE items SET data = json_remove(data, '$.\"$sealed\".signing_key') WHERE id = ?",
            (orphan.id,),
        )
        db.execute(
            "UPDATE items SET data = json_set(data, '$.signingKey', ?) WHERE id = ?", (SIGNING, camel.id)
        )
        db.execute(
            "UPDATE items SET data = json_set(data, '$.signing_key_preview', json('null')) WHERE id = ?",
            (unsealed.id,),
        )
    db.close()
    before = (data / "collections.db").read_bytes()
    code, report, printed = await doctor(data)
    assert code == 1, printed
    found = [(q["collection"], q["id"], q["reason"]) for q in report["collections"]["quarantined"]]
    assert found == [
        ("webhook", plain.id, "PLAINTEXT_SECRET"),
        ("webhook", orphan.id, "signing_key_preview.INVALID_FORMAT"),
        ("webhook", camel.id, "PLAINTEXT_SECRET"),
        ("webhook", unsealed.id, "signing_key_preview.INVALID_FORMAT"),
    ]
    assert (data / "collections.db").read_bytes() == before
    for value in (TOKEN, SIGNING, TOKEN[-4:], SIGNING[-4:]):
        assert value not in printed
    # The server, which has the definitions, holds exactly those rows for the same reasons.
    async with running(data, webhooks_and_cards()) as served:
        assert served.collections["webhook"].quarantined() == {i: r for _, i, r in found}
        assert [v.id for v in served.collections["webhook"].list()] == [kept.id]
        assert served.collections["card"].quarantined() == {}


# ---- 3. float params are strict like int and bool --------------------------------------------


class Gauge(bridge.WireModel):
    """A gauge with float fields: required, nullable and constrained."""

    label: str
    ratio: float
    limit: float | None = None
    scale: Annotated[float, Field(ge=0)] = 1.0


async def test_float_params_of_a_collection_are_strict_and_accept_json_numbers(tmp_path: Path) -> None:
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("gauge", Gauge))
    async with running(tmp_path / "data", registry) as served, client_of(served) as client:
        made = await client.invoke("gauge:create", {"item": {"label": "a", "ratio": 1, "limit": 2.5}})
        assert (made["ratio"], made["limit"], made["scale"]) == (1.0, 2.5, 1.0)
        assert isinstance(made["ratio"], float)
        for field, bad in [
            ("ratio", "1.5"),
            ("ratio", True),
            ("limit", "2"),
            ("limit", False),
            ("scale", "0.5"),
            ("scale", -1),
        ]:
            item = {"label": "b", "ratio": 0.5, field: bad}
            with pytest.raises(bridge.ValidationError) as created:
                await client.invoke("gauge:create", {"item": item})
            assert created.value.rpc_code == -32602
            assert [e.field for e in created.value.errors] == [f"item.{field}"]
            with pytest.raises(bridge.ValidationError) as updated:
                await client.invoke("gauge:update", {"id": made["id"], "updates": {field: bad}})
            assert updated.value.rpc_code == -32602
            assert [e.field for e in updated.value.errors] == [f"updates.{field}"]
        patched = await client.invoke(
            "gauge:update", {"id": made["id"], "updates": {"ratio": 0.25, "limit": None, "scale": 3}}
        )
        assert (patched["ratio"], patched["limit"], patched["scale"], patched["version"]) == (
            0.25,
            None,
            3.0,
            2,
        )
        assert await client.invoke("gauge:list") == [patched]
