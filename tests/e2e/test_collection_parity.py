"""Collections keep the promises llm-config keeps (issue 14, S4-B).

Real SQLite files on ``tmp_path``, real sockets on 127.0.0.1 port 0, real clients; the
"other program" that breaks a row is a plain ``sqlite3`` connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

import bridge
from bridge.client import BridgeClient
from tests.conftest import openai_config
from tests.e2e.wire import open_ws, recv_json, request
from tests.helpers.templates import running

TIMEOUT = 10.0


def template(name: str, model: str | None = None) -> dict[str, Any]:
    """A ``PromptTemplate`` wire dict."""
    return {"name": name, "template": "Summarize: {text}", "model": model}


def client_of(served: bridge.Bridge) -> BridgeClient:
    """A ``BridgeClient`` of ``served``."""
    return BridgeClient(served.url, served.token, schema_hash=served.schema_hash())


async def call(ws: ClientConnection, method: str, params: Any, request_id: int) -> tuple[Any, list[Any]]:
    """Send one request; return its result and every notification read before its response."""
    await ws.send(request(method, params, request_id))
    before: list[Any] = []
    while True:
        frame = await recv_json(ws)
        if frame.get("id") == request_id:
            assert "result" in frame, frame
            return frame["result"], before
        before.append(frame)


class Folder(bridge.WireModel):
    """A folder of notes."""

    title: str


class Note(bridge.WireModel):
    """A note filed in a folder."""

    text: str
    folder: str | None = None


def folders_and_notes() -> bridge.Registry:
    """``folder`` and ``note`` (``note.folder`` references a folder, set-null)."""
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("folder", Folder))
    registry.add_collection(bridge.Collection("note", Note, references={"folder": bridge.Ref("folder")}))
    return registry


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
