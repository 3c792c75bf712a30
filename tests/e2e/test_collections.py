"""Collections end to end: the prompt-template example over the wire with real clients.

Real SQLite files on ``tmp_path``, real sockets on 127.0.0.1 port 0, real ``BridgeClient``s;
a second process is ``python -m tests.helpers.templates serve`` on the same data directory.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import bridge
from bridge.client import BridgeClient
from bridge.errors import ConfigNotFoundError, DuplicateConfigNameError, ValidationError, VersionConflictError
from tests.conftest import openai_config
from tests.helpers.templates import load_example, options, running, start_sidecar, stop_sidecar

TEMPLATE_KEYS = {"id", "name", "template", "model", "createdAt", "updatedAt", "version"}


def template(name: str = "Summarize", model: str | None = None) -> dict[str, Any]:
    """A ``PromptTemplate`` wire dict."""
    return {"name": name, "template": "Summarize: {text}", "model": model}


def events_of(client: BridgeClient, topic: str = "prompt-template:changed") -> asyncio.Queue[dict[str, Any]]:
    """Queue every ``topic`` payload ``client`` receives."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on(topic, queue.put_nowait)
    return queue


async def until_revision(queue: asyncio.Queue[dict[str, Any]], revision: int) -> list[dict[str, Any]]:
    """Events up to the one reaching ``revision`` (each wait bounded)."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["revision"] < revision:
        seen.append(await asyncio.wait_for(queue.get(), 15))
    return seen


def client_of(served: bridge.Bridge) -> BridgeClient:
    return BridgeClient(served.url, served.token, schema_hash=served.schema_hash())


async def test_the_example_clears_the_model_when_its_config_is_deleted(tmp_path: Path) -> None:
    seen = await load_example().main(tmp_path / "data")
    created, (first, second) = seen["created"], seen["events"]
    assert set(created) == TEMPLATE_KEYS
    assert created["version"] == 1
    assert created["model"] is not None
    assert first == {"type": "created", "id": created["id"], "revision": 1, "item": created}
    assert second["type"] == "updated"
    assert second["revision"] == 2
    assert second["item"]["model"] is None
    assert second["item"]["version"] == 2
    assert seen["snapshot"] == {"revision": 2, "items": [second["item"]]}


async def test_crud_over_the_wire(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as served, client_of(served) as client:
        events = events_of(client)
        a = await client.invoke("prompt-template:create", {"item": template("Alpha")})
        b = await client.invoke("prompt-template:create", {"item": {"name": "  Beta ", "template": "t"}})
        assert b["name"] == "Beta"  # the model's own rules (strip_whitespace) apply
        assert b["model"] is None
        assert await client.invoke("prompt-template:read", {"id": a["id"]}) == a
        assert await client.invoke("prompt-template:read", {"id": a["id"].upper()}) == a
        assert await client.invoke("prompt-template:read", {"id": str(uuid.uuid4())}) is None
        updated = await client.invoke(
            "prompt-template:update", {"id": a["id"], "updates": {"template": "New"}, "expectedVersion": 1}
        )
        assert updated == {**a, "template": "New", "version": 2, "updatedAt": updated["updatedAt"]}
        assert [t["id"] for t in await client.invoke("prompt-template:list")] == [a["id"], b["id"]]
        assert await client.invoke("prompt-template:delete", {"id": b["id"]}) == {"deleted": True}
        assert await client.invoke("prompt-template:delete", {"id": b["id"]}) == {"deleted": False}
        snapshot = await client.invoke("prompt-template:snapshot", {})
        assert snapshot == {"revision": 4, "items": [updated]}
        seen = await until_revision(events, 4)
        assert [(e["type"], e["revision"]) for e in seen] == [
            ("created", 1),
            ("created", 2),
            ("updated", 3),
            ("deleted", 4),
        ]
        assert seen[2]["item"] == updated
        assert seen[3] == {"type": "deleted", "id": b["id"], "revision": 4}


async def test_write_errors_are_the_documented_codes_and_the_connection_stays_healthy(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as served, client_of(served) as client:
        a = await client.invoke("prompt-template:create", {"item": template("Straße")})
        with pytest.raises(DuplicateConfigNameError) as duplicate:
            await client.invoke("prompt-template:create", {"item": template(" STRASSE ")})
        assert duplicate.value.context == {"field": "name"}
        with pytest.raises(VersionConflictError) as conflict:
            await client.invoke(
                "prompt-template:update", {"id": a["id"], "updates": {}, "expectedVersion": 7}
            )
        assert conflict.value.context == {"id": a["id"], "expectedVersion": 7, "actualVersion": 1}
        with pytest.raises(VersionConflictError):
            await client.invoke("prompt-template:delete", {"id": a["id"], "expectedVersion": 2})
        with pytest.raises(ConfigNotFoundError):
            await client.invoke("prompt-template:update", {"id": str(uuid.uuid4()), "updates": {"name": "x"}})
        with pytest.raises(ValidationError) as unknown_field:
            await client.invoke("prompt-template:create", {"item": {**template("X"), "color": "red"}})
        assert [(e.field, e.code) for e in unknown_field.value.errors] == [("item.color", "UNKNOWN_FIELD")]
        with pytest.raises(ValidationError) as too_long:
            await client.invoke("prompt-template:update", {"id": a["id"], "updates": {"name": "x" * 101}})
        assert [e.field for e in too_long.value.errors] == ["updates.name"]
        with pytest.raises(ValidationError) as null_name:
            await client.invoke("prompt-template:update", {"id": a["id"], "updates": {"name": None}})
        assert [e.field for e in null_name.value.errors] == ["updates.name"]
        with pytest.raises(ValidationError):
            await client.invoke("prompt-template:read", {"id": "not-a-uuid"})
        # Renaming to its own name in another case is no conflict with itself.
        renamed = await client.invoke(
            "prompt-template:update", {"id": a["id"], "updates": {"name": "STRASSE"}}
        )
        assert renamed["version"] == 2
        assert await client.invoke("prompt-template:snapshot") == {"revision": 2, "items": [renamed]}


async def test_a_dangling_reference_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as served, client_of(served) as client:
        missing = str(uuid.uuid4())
        with pytest.raises(ValidationError) as refused:
            await client.invoke("prompt-template:create", {"item": template("A", model=missing)})
        assert [(e.field, e.code) for e in refused.value.errors] == [("item.model", "UNKNOWN_REFERENCE")]
        assert missing not in str(refused.value.errors[0].message)
        item = await client.invoke("prompt-template:create", {"item": template("A")})
        with pytest.raises(ValidationError) as refused_update:
            await client.invoke("prompt-template:update", {"id": item["id"], "updates": {"model": missing}})
        assert [(e.field, e.code) for e in refused_update.value.errors] == [
            ("updates.model", "UNKNOWN_REFERENCE")
        ]
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        linked = await client.invoke(
            "prompt-template:update", {"id": item["id"], "updates": {"model": config["id"]}}
        )
        assert linked["model"] == config["id"]
        assert await client.invoke("prompt-template:snapshot") == {"revision": 2, "items": [linked]}


async def test_rpc_discover_describes_the_collection(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as served, client_of(served) as client:
        hello = await client.hello()
        document = await client.invoke("rpc.discover")
    assert client.schema_mismatch is None
    names = {"create", "read", "update", "delete", "list", "snapshot"}
    assert {f"prompt-template:{n}" for n in names} <= set(hello.channels)
    methods = {m["name"]: m for m in document["methods"]}
    assert {f"prompt-template:{n}" for n in names} <= set(methods)
    assert methods["prompt-template:create"]["result"]["schema"] == {
        "$ref": "#/components/schemas/PromptTemplateView"
    }
    view = document["components"]["schemas"]["PromptTemplateView"]
    assert set(view["properties"]) == TEMPLATE_KEYS
    changed = methods["prompt-template:changed"]
    assert changed["x-server-to-client"] is True
    params = {p["name"]: p for p in changed["params"]}
    assert set(params) == {"type", "id", "revision", "item"}
    assert params["item"]["required"] is False
    assert params["item"]["schema"] == {"$ref": "#/components/schemas/PromptTemplateView"}
    snapshot = document["components"]["schemas"]["PromptTemplateSnapshot"]
    assert snapshot["properties"]["items"]["items"] == {"$ref": "#/components/schemas/PromptTemplateView"}


async def test_two_processes_share_items_with_gap_free_revisions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as here:
        process, ready = start_sidecar(data)
        try:
            async with BridgeClient(ready["url"], ready["token"], schema_hash=served.schema_hash()) as there:
                seen_here, seen_there = events_of(here), events_of(there)
                calls = []
                for i in range(10):
                    client = here if i % 2 else there
                    calls.append(client.invoke("prompt-template:create", {"item": template(f"T{i}")}))
                created = await asyncio.gather(*calls)
                # Unique ignoring case across processes: the other process's name is taken.
                with pytest.raises(DuplicateConfigNameError):
                    await here.invoke("prompt-template:create", {"item": template("t1")})
                with pytest.raises(DuplicateConfigNameError):
                    await there.invoke("prompt-template:create", {"item": template(" T2")})
                for queue in (seen_here, seen_there):
                    events = await until_revision(queue, 10)
                    assert [e["revision"] for e in events] == list(range(1, 11))
                    assert {e["id"] for e in events} == {c["id"] for c in created}
                # A config deleted by the other process clears the model here too, once.
                config = await there.invoke("llm-config:create", {"config": openai_config()})
                item = await here.invoke("prompt-template:create", {"item": template("Linked", config["id"])})
                await there.invoke("llm-config:delete", {"id": config["id"]})
                events = await until_revision(seen_here, 12)
                assert events[-1]["type"] == "updated"
                assert events[-1]["item"]["model"] is None
                assert events[-1]["item"]["version"] == 2
                snap_here = await here.invoke("prompt-template:snapshot")
                snap_there = await there.invoke("prompt-template:snapshot")
                assert snap_here["revision"] == 12
                cleared = next(t for t in snap_here["items"] if t["id"] == item["id"])
                assert cleared["model"] is None
                # The other process catches up to the same state (no second clearing write).
                while snap_there["revision"] < 12:
                    await until_revision(seen_there, 12)
                    snap_there = await there.invoke("prompt-template:snapshot")
                assert snap_there == snap_here
        finally:
            assert stop_sidecar(process) == 0


async def test_items_and_revisions_survive_a_restart_and_deleted_references_are_repaired(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        item = await client.invoke("prompt-template:create", {"item": template("Linked", config["id"])})
    # The config is deleted by a bridge that does not serve the collection (it was down).
    async with running(data, bridge.Registry()) as stock, client_of(stock) as client:
        assert await client.invoke("llm-config:delete", {"id": config["id"]}) == {"deleted": True}
    async with running(data) as served, client_of(served) as client:
        snapshot = await client.invoke("prompt-template:snapshot")
    assert snapshot["revision"] == 2
    (repaired,) = snapshot["items"]
    assert repaired == {**item, "model": None, "version": 2, "updatedAt": repaired["updatedAt"]}


async def test_a_bad_row_is_quarantined_and_the_connection_stays_healthy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        good = await client.invoke("prompt-template:create", {"item": template("Good")})
    bad_id, junk_id = str(uuid.uuid4()), str(uuid.uuid4())
    with sqlite3.connect(data / "collections.db") as db:
        row = (
            "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "
            "VALUES (?, ?, ?, ?, ?, 1, 1)"
        )
        stamp = good["createdAt"]
        db.execute(
            row, ("prompt-template", bad_id, '{"name": "", "template": "secret-ish text"}', stamp, stamp)
        )
        db.execute(row, ("prompt-template", junk_id, "not json", stamp, stamp))
    db.close()
    with capture_logs() as logs:
        async with running(data) as served, client_of(served) as client:
            assert await client.invoke("prompt-template:list") == [good]
            assert await client.invoke("prompt-template:read", {"id": bad_id}) is None
            assert served.collections["prompt-template"].quarantined() == {
                bad_id: "name.INVALID_LENGTH",
                junk_id: "UNDECODABLE_ROW",
            }
            # Healthy: writes and reads go on.
            more = await client.invoke("prompt-template:create", {"item": template("More")})
            assert [t["id"] for t in await client.invoke("prompt-template:list")] == [good["id"], more["id"]]
    held = [e for e in logs if e["event"] == "item_quarantined"]
    assert sorted((e["id"], e["reason"]) for e in held) == sorted(
        [(bad_id, "name.INVALID_LENGTH"), (junk_id, "UNDECODABLE_ROW")]
    )
    assert "secret-ish" not in repr(logs)


@pytest.mark.parametrize("name", ["collections.db", "collections.db-wal"])
async def test_a_collections_file_writable_by_others_is_refused(tmp_path: Path, name: str) -> None:
    data = tmp_path / "data"
    async with running(data):
        pass
    target = data / name
    target.touch()
    target.chmod(0o666)
    with pytest.raises(bridge.InsecurePathError, match=r"writable by group or others \(mode 0666\)"):
        await bridge.start_bridge(options(data), load_example().build_registry())


class Folder(bridge.WireModel):
    """A folder of templates."""

    title: str


class Filed(bridge.WireModel):
    """A template filed in a folder (a reference between two collections of the application)."""

    label: str
    folder: str | None = None


async def test_a_reference_to_another_collection_is_checked_and_cleared(tmp_path: Path) -> None:
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("folder", Folder))
    registry.add_collection(bridge.Collection("filed", Filed, references={"folder": bridge.Ref("folder")}))
    async with running(tmp_path / "data", registry) as served, client_of(served) as client:
        seen = events_of(client, "filed:changed")
        folder = await client.invoke("folder:create", {"item": {"title": "Work"}})
        with pytest.raises(ValidationError):
            await client.invoke("filed:create", {"item": {"label": "x", "folder": str(uuid.uuid4())}})
        filed = await client.invoke("filed:create", {"item": {"label": "x", "folder": folder["id"]}})
        await client.invoke("folder:delete", {"id": folder["id"]})
        events = await until_revision(seen, 2)
        assert [(e["type"], e["revision"]) for e in events] == [("created", 1), ("updated", 2)]
        assert events[1]["item"] == {
            **filed,
            "folder": None,
            "version": 2,
            "updatedAt": events[1]["item"]["updatedAt"],
        }


async def test_a_reference_to_a_collection_not_served_refuses_to_start(tmp_path: Path) -> None:
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("filed", Filed, references={"folder": bridge.Ref("folder")}))
    with pytest.raises(bridge.StartupError, match="not served"):
        await bridge.start_bridge(options(tmp_path / "data"), registry)
