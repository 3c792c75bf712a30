"""Collections under review: ordering of reference clearing, hostile log entries, store faults.

Real SQLite files on ``tmp_path``, real sockets on 127.0.0.1 port 0, raw WebSocket
frames where the order of frames is the subject; mocks only inject store faults.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest

import bridge
from bridge.collection.service import CollectionService
from bridge.collection.sqlite import SqliteCollectionStore
from bridge.errors import (
    ConfigNotFoundError,
    ConfigOperationFailedError,
    ValidationError,
    VersionConflictError,
)
from bridge.storage import SqliteConfigStore
from tests.conftest import OPENAI_KEY, openai_config
from tests.e2e.wire import open_ws
from tests.helpers.notes import Folder, Note, call, client_of, template
from tests.helpers.templates import load_example, open_paths, options, running


async def test_set_null_events_of_a_config_delete_come_before_its_response(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as served:
        ws = await open_ws(served)
        try:
            config, _ = await call(ws, "llm-config:create", {"config": openai_config()}, 1)
            item, _ = await call(ws, "prompt-template:create", {"item": template("A", config["id"])}, 2)
            deleted, before = await call(ws, "llm-config:delete", {"id": config["id"]}, 3)
        finally:
            await ws.close()
    assert deleted == {"deleted": True}
    assert [(f["method"], f["params"]["type"]) for f in before] == [
        ("llm-config:changed", "deleted"),
        ("prompt-template:changed", "updated"),
    ]
    cleared = before[1]["params"]
    assert cleared["id"] == item["id"]
    assert cleared["item"]["model"] is None
    assert cleared["item"]["version"] == 2


async def test_set_null_events_of_a_collection_delete_come_before_its_response(tmp_path: Path) -> None:
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("folder", Folder))
    registry.add_collection(bridge.Collection("note", Note, references={"folder": bridge.Ref("folder")}))
    async with running(tmp_path / "data", registry) as served:
        ws = await open_ws(served)
        try:
            folder, _ = await call(ws, "folder:create", {"item": {"title": "Work"}}, 1)
            note, _ = await call(ws, "note:create", {"item": {"text": "x", "folder": folder["id"]}}, 2)
            deleted, before = await call(ws, "folder:delete", {"id": folder["id"]}, 3)
        finally:
            await ws.close()
    assert deleted == {"deleted": True}
    assert [(f["method"], f["params"]["type"], f["params"]["id"]) for f in before] == [
        ("folder:changed", "deleted", folder["id"]),
        ("note:changed", "updated", note["id"]),
    ]
    assert before[1]["params"]["item"]["folder"] is None


async def test_a_log_entry_with_a_bad_seq_neither_fails_writes_nor_stops_the_feed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        first = await client.invoke("prompt-template:create", {"item": template("First")})
        # Another program logs a change whose row lies about its creation order.
        liar = str(uuid.uuid4())
        entry = {
            "id": liar,
            "seq": "not a number",
            "data": {"name": "Liar", "template": "t", "model": None},
            "created_at": first["createdAt"],
            "updated_at": first["createdAt"],
            "version": 1,
            "revision": 2,
        }
        with sqlite3.connect(data / "collections.db") as db:
            db.execute("UPDATE revisions SET revision = 2 WHERE collection = 'prompt-template'")
            db.execute(
                "INSERT INTO changes (collection, revision, id, type, row) VALUES (?, 2, ?, 'created', ?)",
                ("prompt-template", liar, orjson.dumps(entry).decode()),
            )
        db.close()
        second = await client.invoke("prompt-template:create", {"item": template("Second")})
        assert second["version"] == 1
        # The table is the truth: the lying entry's item has no row.
        assert await client.invoke("prompt-template:list") == [first, second]
        assert (await client.invoke("prompt-template:snapshot"))["revision"] == 3


async def test_a_degraded_config_load_clears_no_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        item = await client.invoke("prompt-template:create", {"item": template("Linked", config["id"])})

    async def failing(*_: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error (injected)")

    with monkeypatch.context() as patched:
        # bridge.db cannot be read: the configs are served degraded (empty, retried).
        patched.setattr(SqliteConfigStore, "load", failing)
        patched.setattr(SqliteConfigStore, "changes_since", failing)
        async with running(data) as served, client_of(served) as client:
            assert (await client.invoke("bridge:hello"))["degraded"] == "load_failed"
            # The config cannot be seen, but it was not deleted: the template keeps it.
            assert await client.invoke("prompt-template:read", {"id": item["id"]}) == item
            # A reference that cannot be checked is refused as a store failure, not as unknown.
            with pytest.raises(ConfigOperationFailedError):
                await client.invoke("prompt-template:create", {"item": template("Other", config["id"])})
    async with running(data) as served, client_of(served) as client:
        assert await client.invoke("prompt-template:snapshot") == {"revision": 1, "items": [item]}


@pytest.mark.parametrize("method", ["insert", "update", "delete"])
async def test_a_failed_store_write_is_config_operation_failed_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    async with running(tmp_path / "data") as served, client_of(served) as client:
        item = await client.invoke("prompt-template:create", {"item": template("Kept")})
        channel, params = {
            "insert": ("prompt-template:create", {"item": template("New")}),
            "update": ("prompt-template:update", {"id": item["id"], "updates": {"name": "R"}}),
            "delete": ("prompt-template:delete", {"id": item["id"]}),
        }[method]

        async def failing(*_: Any, **__: Any) -> Any:
            raise sqlite3.OperationalError("database or disk is full (injected)")

        with monkeypatch.context() as patched:
            patched.setattr(SqliteCollectionStore, method, failing)
            with pytest.raises(ConfigOperationFailedError) as failed:
                await client.invoke(channel, params)
            assert "injected" not in str(failed.value)
        assert await client.invoke("prompt-template:snapshot") == {"revision": 1, "items": [item]}
        again = await client.invoke("prompt-template:create", {"item": template("New")})
        assert again["version"] == 1


@pytest.mark.parametrize(
    ("item_id", "stamp", "reason"),
    [
        ("'NOT-A-UUID'", None, "id.INVALID_FORMAT"),
        ("upper('{uuid}')", None, "id.INVALID_FORMAT"),
        ("CAST(X'C3' AS TEXT)", None, "id.INVALID_FORMAT"),
        ("X'00'", None, "id.INVALID_FORMAT"),
        (None, "'yesterday'", "createdAt.INVALID_FORMAT"),
        (None, "CAST(X'C3' AS TEXT)", "createdAt.INVALID_FORMAT"),
    ],
)
async def test_a_row_with_a_bad_id_or_timestamp_is_quarantined_and_lists_keep_working(
    tmp_path: Path, item_id: str | None, stamp: str | None, reason: str
) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        good = await client.invoke("prompt-template:create", {"item": template("Good")})
    row_id = (item_id or "'{uuid}'").format(uuid=uuid.uuid4())
    created = stamp or f"'{good['createdAt']}'"
    # Another program's row: SQL expressions make values no parameter binding would.
    insert = (
        "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "  # noqa: S608 - test SQL
        f"VALUES ('prompt-template', {row_id}, ?, {created}, ?, 1, 1)"
    )
    with sqlite3.connect(data / "collections.db") as db:
        db.execute(insert, ('{"name": "Bad", "template": "t"}', good["updatedAt"]))
    db.close()
    async with running(data) as served, client_of(served) as client:
        assert await client.invoke("prompt-template:list") == [good]
        assert await client.invoke("prompt-template:snapshot") == {"revision": 1, "items": [good]}
        assert list(served.collections["prompt-template"].quarantined().values()) == [reason]


async def test_a_collections_file_too_new_refuses_start_up_and_leaves_bridge_db_closed(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running(data):
        pass
    with sqlite3.connect(data / "collections.db") as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(bridge.SchemaTooNewError):
        await bridge.start_bridge(options(data), load_example().build_registry())
    assert open_paths(data) == []


async def test_a_collection_that_fails_to_start_leaves_no_other_collection_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("folder", Folder))
    registry.add_collection(bridge.Collection("note", Note))
    real_start = CollectionService.start

    async def start(self: CollectionService) -> None:
        if self.name == "note":
            raise RuntimeError("injected")
        await real_start(self)

    monkeypatch.setattr(CollectionService, "start", start)
    with pytest.raises(RuntimeError, match="injected"):
        await bridge.start_bridge(options(tmp_path / "data"), registry)
    watchers = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("collection-watcher")]
    assert watchers == []
    assert open_paths(tmp_path / "data") == []


class Hook(bridge.WireModel):
    """A webhook with a secret token."""

    url: str
    token: str


HOOK_TOKEN = "whsec-" + "Q7r8S9t0" * 5


async def test_an_update_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    registry = bridge.Registry()
    registry.add_collection(load_example().PROMPT_TEMPLATES)
    registry.add_collection(bridge.Collection("hook", Hook, secret=("token",)))
    async with running(tmp_path / "data", registry) as served, client_of(served) as client:
        item = await client.invoke("prompt-template:create", {"item": template("Same")})
        same = {"name": " Same ", "template": item["template"], "model": None}
        assert await client.invoke("prompt-template:update", {"id": item["id"], "updates": same}) == item
        assert await client.invoke("prompt-template:update", {"id": item["id"], "updates": {}}) == item
        with pytest.raises(VersionConflictError):
            await client.invoke(
                "prompt-template:update", {"id": item["id"], "updates": {}, "expectedVersion": 7}
            )
        assert await client.invoke("prompt-template:snapshot") == {"revision": 1, "items": [item]}
        hook = await client.invoke("hook:create", {"item": {"url": "https://a.example", "token": HOOK_TOKEN}})
        again = {"id": hook["id"], "updates": {"token": HOOK_TOKEN}, "expectedVersion": 1}
        assert await client.invoke("hook:update", again) == hook
        assert await client.invoke("hook:snapshot") == {"revision": 1, "items": [hook]}


async def test_a_collection_that_fails_to_load_is_served_degraded_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def registry() -> bridge.Registry:
        reg = bridge.Registry()
        reg.add_collection(bridge.Collection("folder", Folder))
        reg.add_collection(bridge.Collection("note", Note, references={"folder": bridge.Ref("folder")}))
        return reg

    data = tmp_path / "data"
    async with running(data, registry()) as served, client_of(served) as client:
        folder = await client.invoke("folder:create", {"item": {"title": "Work"}})
        note = await client.invoke("note:create", {"item": {"text": "x", "folder": folder["id"]}})
    healthy = asyncio.Event()
    real_load = SqliteCollectionStore.load

    async def flaky(self: SqliteCollectionStore, collection: str) -> Any:
        if collection == "folder" and not healthy.is_set():
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return await real_load(self, collection)

    monkeypatch.setattr(SqliteCollectionStore, "load", flaky)
    async with running(data, registry()) as served, client_of(served) as client:
        seen = asyncio.Queue[dict[str, Any]]()
        client.on("folder:changed", seen.put_nowait)
        # The configs and the other collections are served; the folders, degraded, are empty.
        assert await client.invoke("llm-config:list") == []
        assert await client.invoke("folder:list") == []
        with pytest.raises(ConfigOperationFailedError):
            await client.invoke("folder:create", {"item": {"title": "Home"}})
        # A folder that cannot be seen is not a deleted one: the note keeps it.
        assert await client.invoke("note:read", {"id": note["id"]}) == note
        healthy.set()
        assert await asyncio.wait_for(seen.get(), 10) == {
            "type": "created",
            "id": folder["id"],
            "revision": 1,
            "item": folder,
        }
        assert await client.invoke("folder:snapshot") == {"revision": 1, "items": [folder]}
        assert await client.invoke("note:snapshot") == {"revision": 1, "items": [note]}
        home = await client.invoke("folder:create", {"item": {"title": "Home"}})
        assert home["version"] == 1


async def test_a_reference_repair_that_fails_does_not_stop_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        item = await client.invoke("prompt-template:create", {"item": template("Linked", config["id"])})
    async with running(data, bridge.Registry()) as stock, client_of(stock) as client:
        await client.invoke("llm-config:delete", {"id": config["id"]})

    async def failing(*_: Any, **__: Any) -> Any:
        raise sqlite3.OperationalError("database is locked (injected)")

    with monkeypatch.context() as patched:
        patched.setattr(SqliteCollectionStore, "update", failing)
        async with running(data) as served, client_of(served) as client:
            assert await client.invoke("prompt-template:read", {"id": item["id"]}) == item
    # The next start repairs it.
    async with running(data) as served, client_of(served) as client:
        (repaired,) = await client.invoke("prompt-template:list")
        assert repaired["model"] is None


class Tag(bridge.WireModel):
    """A tag whose own validator assumes text (as application code may)."""

    label: str

    @pydantic.field_validator("label", mode="before")
    @classmethod
    def _squeeze(cls, value: Any) -> Any:
        return " ".join(value.split())  # AttributeError on a number


async def test_a_row_that_makes_the_models_own_validator_raise_is_quarantined(tmp_path: Path) -> None:
    def registry() -> bridge.Registry:
        reg = bridge.Registry()
        reg.add_collection(bridge.Collection("tag", Tag))
        return reg

    data = tmp_path / "data"
    async with running(data, registry()) as served, client_of(served) as client:
        good = await client.invoke("tag:create", {"item": {"label": "a  b"}})
        assert good["label"] == "a b"
    bad = str(uuid.uuid4())
    with sqlite3.connect(data / "collections.db") as db:
        db.execute(
            "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "
            "VALUES ('tag', ?, '{\"label\": 5}', ?, ?, 1, 1)",
            (bad, good["createdAt"], good["createdAt"]),
        )
    db.close()
    async with running(data, registry()) as served, client_of(served) as client:
        assert await client.invoke("tag:list") == [good]
        assert served.collections["tag"].quarantined() == {bad: "INVALID_ROW"}
        more = await client.invoke("tag:create", {"item": {"label": "c"}})
        assert [t["id"] for t in await client.invoke("tag:list")] == [good["id"], more["id"]]


async def test_a_config_held_in_quarantine_is_not_a_deleted_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        configs = asyncio.Queue[dict[str, Any]]()
        client.on("llm-config:changed", configs.put_nowait)
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        item = await client.invoke("prompt-template:create", {"item": template("Linked", config["id"])})
        await configs.get()
        # Another program breaks the config's row: it is quarantined (sent as deleted)...
        with sqlite3.connect(data / "bridge.db") as db:
            db.execute("UPDATE configs SET provider = 'bogus' WHERE id = ?", (config["id"],))
        db.close()
        assert (await asyncio.wait_for(configs.get(), 10))["type"] == "deleted"
        # ... but the row is still there: an update that makes it valid restores it.
        restored = await client.invoke(
            "llm-config:update", {"id": config["id"], "updates": {"provider": "openai", "apiKey": OPENAI_KEY}}
        )
        assert restored["id"] == config["id"]
        # The template kept its model all along.
        assert await client.invoke("prompt-template:snapshot") == {"revision": 1, "items": [item]}
    # Broken while no bridge ran: quarantined at start, and the start-up repair keeps the model.
    with sqlite3.connect(data / "bridge.db") as db:
        db.execute("UPDATE configs SET provider = 'bogus' WHERE id = ?", (config["id"],))
    db.close()
    async with running(data) as served, client_of(served) as client:
        assert [q["id"] for q in (await client.invoke("bridge:hello"))["quarantined"]] == [config["id"]]
        assert await client.invoke("prompt-template:snapshot") == {"revision": 1, "items": [item]}


async def test_a_lost_revision_row_is_recomputed_and_writes_go_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        first = await client.invoke("prompt-template:create", {"item": template("First")})
        await client.invoke("prompt-template:update", {"id": first["id"], "updates": {"template": "u"}})
    with sqlite3.connect(data / "collections.db") as db:
        db.execute("DELETE FROM revisions")
    db.close()
    async with running(data) as served, client_of(served) as client:
        events = asyncio.Queue[dict[str, Any]]()
        client.on("prompt-template:changed", events.put_nowait)
        second = await client.invoke("prompt-template:create", {"item": template("Second")})
        assert (await asyncio.wait_for(events.get(), 10))["revision"] == 3
        snapshot = await client.invoke("prompt-template:snapshot")
        assert snapshot["revision"] == 3
        assert [t["id"] for t in snapshot["items"]] == [first["id"], second["id"]]


async def test_an_update_whose_result_is_valid_restores_a_quarantined_item(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        good = await client.invoke("prompt-template:create", {"item": template("Good")})
    held, broken = str(uuid.uuid4()), str(uuid.uuid4())
    insert = (
        "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "
        "VALUES ('prompt-template', ?, ?, ?, ?, ?, 1)"
    )
    with sqlite3.connect(data / "collections.db") as db:
        stamp = good["createdAt"]
        db.execute(insert, (held, '{"name": "", "template": "kept", "junk": 1}', stamp, stamp, 1))
        db.execute(insert, (broken, '{"name": "B", "template": "t"}', stamp, stamp, "one"))
    db.close()
    async with running(data) as served, client_of(served) as client:
        events = asyncio.Queue[dict[str, Any]]()
        client.on("prompt-template:changed", events.put_nowait)
        service = served.collections["prompt-template"]
        assert set(service.quarantined()) == {held, broken}
        # The merged result still fails: the field is named, nothing is written.
        with pytest.raises(ValidationError) as invalid:
            await client.invoke("prompt-template:update", {"id": held, "updates": {"template": "new"}})
        assert [(e.field, e.code) for e in invalid.value.errors] == [("updates.name", "INVALID_LENGTH")]
        restored = await client.invoke("prompt-template:update", {"id": held, "updates": {"name": "Fixed"}})
        assert (restored["name"], restored["template"], restored["version"]) == ("Fixed", "kept", 2)
        event = await asyncio.wait_for(events.get(), 10)
        assert (event["type"], event["id"], event["item"]) == ("created", held, restored)
        assert [t["id"] for t in await client.invoke("prompt-template:list")] == [good["id"], held]
        assert set(service.quarantined()) == {broken}
        # A row whose version is not a number cannot be updated; delete removes it.
        with pytest.raises(ConfigNotFoundError):
            await client.invoke("prompt-template:update", {"id": broken, "updates": {"name": "C"}})
        assert await client.invoke("prompt-template:delete", {"id": broken}) == {"deleted": True}
        assert service.quarantined() == {}


async def test_a_secret_that_does_not_open_is_restored_only_by_sending_it_again(tmp_path: Path) -> None:
    def registry() -> bridge.Registry:
        reg = bridge.Registry()
        reg.add_collection(bridge.Collection("hook", Hook, secret=("token",)))
        return reg

    data = tmp_path / "data"
    async with running(data, registry()) as served, client_of(served) as client:
        a = await client.invoke("hook:create", {"item": {"url": "https://a.example", "token": HOOK_TOKEN}})
        b = await client.invoke(
            "hook:create", {"item": {"url": "https://b.example", "token": "x" + HOOK_TOKEN}}
        )
    with sqlite3.connect(data / "collections.db") as db:
        db.execute(
            "UPDATE items SET data = json_set(data, '$.\"$sealed\".token', "
            "(SELECT json_extract(data, '$.\"$sealed\".token') FROM items WHERE id = ?)) WHERE id = ?",
            (a["id"], b["id"]),
        )
    db.close()
    async with running(data, registry()) as served, client_of(served) as client:
        service = served.collections["hook"]
        assert service.quarantined() == {b["id"]: "CIPHERTEXT_AUTH_FAILED"}
        with pytest.raises(ValidationError) as missing:
            await client.invoke("hook:update", {"id": b["id"], "updates": {"url": "https://c.example"}})
        assert [(e.field, e.code) for e in missing.value.errors] == [("updates.token", "INVALID_FORMAT")]
        fresh = "y" + HOOK_TOKEN
        restored = await client.invoke("hook:update", {"id": b["id"], "updates": {"token": fresh}})
        assert restored["tokenPreview"] == "••••" + fresh[-4:]  # the generic preview (item 6 of H6)
        assert await service.secret(b["id"], "token") == fresh
        assert service.quarantined() == {}


async def test_an_item_another_program_created_earlier_is_listed_in_creation_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        first = await client.invoke("prompt-template:create", {"item": template("First")})
        # Another program writes an item with a lower seq (an earlier creation) and logs it.
        early = str(uuid.uuid4())
        fields = {"name": "Early", "template": "t", "model": None}
        row = {
            "id": early,
            "seq": 0,
            "data": fields,
            "created_at": first["createdAt"],
            "updated_at": first["createdAt"],
            "version": 1,
            "revision": 2,
        }
        with sqlite3.connect(data / "collections.db") as db:
            db.execute(
                "INSERT INTO items (seq, collection, id, data, created_at, updated_at, version, revision)"
                " VALUES (0, 'prompt-template', ?, ?, ?, ?, 1, 2)",
                (early, orjson.dumps(fields).decode(), first["createdAt"], first["createdAt"]),
            )
            db.execute("UPDATE revisions SET revision = 2 WHERE collection = 'prompt-template'")
            db.execute(
                "INSERT INTO changes (collection, revision, id, type, row) VALUES (?, 2, ?, 'created', ?)",
                ("prompt-template", early, orjson.dumps(row).decode()),
            )
        db.close()
        second = await client.invoke("prompt-template:create", {"item": template("Second")})
        listed = await client.invoke("prompt-template:list")
        assert [item["id"] for item in listed] == [early, first["id"], second["id"]]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("a\u0000b", "INVALID_FORMAT"),
        ("a\u202eb", "INVALID_FORMAT"),
        ("  ", "INVALID_LENGTH"),
        ("n" * 101, "INVALID_LENGTH"),
    ],
)
async def test_a_template_name_follows_the_config_name_rules(tmp_path: Path, name: str, code: str) -> None:
    # bridge.DisplayName: a NUL or a right-to-left override would make one name read as another.
    async with running(tmp_path / "data") as served, client_of(served) as client:
        with pytest.raises(ValidationError) as invalid:
            await client.invoke("prompt-template:create", {"item": template(name)})
        assert [(e.field, e.code) for e in invalid.value.errors] == [("item.name", code)]
        item = await client.invoke("prompt-template:create", {"item": template(" Fine ")})
        assert item["name"] == "Fine"
        with pytest.raises(ValidationError) as invalid:
            await client.invoke("prompt-template:update", {"id": item["id"], "updates": {"name": name}})
        assert [(e.field, e.code) for e in invalid.value.errors] == [("updates.name", code)]
        assert await client.invoke("prompt-template:list") == [item]
