"""Issue #14 follow-ups found by a new user: collection errors, strict params, stored rows checked."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import bridge
from bridge.client import BridgeClient
from bridge.errors import (
    ConfigNotFoundError,
    DuplicateConfigNameError,
    DuplicateItemError,
    ItemNotFoundError,
    VersionConflictError,
)
from tests.conftest import openai_config
from tests.helpers.templates import running


def template(name: str = "Summarize") -> dict[str, Any]:
    return {"name": name, "template": "Summarize: {text}", "model": None}


def client_of(served: bridge.Bridge) -> BridgeClient:
    return BridgeClient(served.url, served.token, schema_hash=served.schema_hash())


async def test_collection_errors_speak_of_items_and_llm_config_errors_are_unchanged(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as served, client_of(served) as client:
        a = await client.invoke("prompt-template:create", {"item": template()})
        missing = str(uuid.uuid4())
        with pytest.raises(ItemNotFoundError) as not_found:
            await client.invoke("prompt-template:update", {"id": missing, "updates": {"name": "x"}})
        assert not_found.value.code == "ITEM_NOT_FOUND"
        assert not_found.value.message == f"Item {missing} of prompt-template not found"
        assert not_found.value.context == {"id": missing}
        with pytest.raises(DuplicateItemError) as duplicate:
            await client.invoke("prompt-template:create", {"item": template("SUMMARIZE")})
        assert duplicate.value.code == "DUPLICATE_ITEM"
        assert "Config" not in duplicate.value.message
        with pytest.raises(VersionConflictError) as conflict:
            await client.invoke(
                "prompt-template:update", {"id": a["id"], "updates": {}, "expectedVersion": 3}
            )
        assert conflict.value.message == f"Item {a['id']} of prompt-template is at version 1, not 3"
        with pytest.raises(VersionConflictError) as deleted:
            await client.invoke("prompt-template:delete", {"id": a["id"], "expectedVersion": 3})
        assert deleted.value.message.startswith(f"Item {a['id']} of prompt-template ")
        # llm-config keeps its codes and wording.
        config = await client.invoke("llm-config:create", {"config": openai_config()})
        with pytest.raises(ConfigNotFoundError) as config_missing:
            await client.invoke("llm-config:update", {"id": missing, "updates": {"customName": "x"}})
        assert type(config_missing.value) is ConfigNotFoundError
        assert config_missing.value.message == f"Config {missing} not found"
        with pytest.raises(DuplicateConfigNameError) as config_duplicate:
            await client.invoke("llm-config:create", {"config": openai_config()})
        assert config_duplicate.value.code == "DUPLICATE_CONFIG_NAME"
        with pytest.raises(VersionConflictError) as config_conflict:
            await client.invoke(
                "llm-config:update", {"id": config["id"], "updates": {}, "expectedVersion": 3}
            )
        assert config_conflict.value.message == f"Config {config['id']} is at version 1, not 3"
        assert await client.invoke("prompt-template:read", {"id": a["id"]}) == a


class Counter(bridge.WireModel):
    """An item with an int and a bool field."""

    label: str
    count: int
    limit: int | None = None
    enabled: bool = True


COUNTERS = bridge.Collection("counter", Counter, unique=("label",))


async def test_int_and_bool_params_of_a_collection_are_strict_like_llm_config(tmp_path: Path) -> None:
    registry = bridge.Registry()
    registry.add_collection(COUNTERS)
    async with running(tmp_path / "data", registry) as served, client_of(served) as client:
        made = await client.invoke("counter:create", {"item": {"label": "a", "count": 5, "limit": 7}})
        assert (made["count"], made["limit"], made["enabled"]) == (5, 7, True)
        for field, bad in [
            ("count", "5"),
            ("count", 5.0),
            ("count", True),
            ("limit", "7"),
            ("enabled", "true"),
            ("enabled", 1),
        ]:
            item = {"label": "b", "count": 1, field: bad}
            with pytest.raises(bridge.ValidationError) as created:
                await client.invoke("counter:create", {"item": item})
            assert created.value.rpc_code == -32602
            assert [e.field for e in created.value.errors] == [f"item.{field}"]
            with pytest.raises(bridge.ValidationError) as updated:
                await client.invoke("counter:update", {"id": made["id"], "updates": {field: bad}})
            assert [e.field for e in updated.value.errors] == [f"updates.{field}"]
        patched = await client.invoke(
            "counter:update", {"id": made["id"], "updates": {"count": 6, "enabled": False}}
        )
        assert (patched["count"], patched["enabled"], patched["version"]) == (6, False, 2)
        assert await client.invoke("counter:list") == [patched]


async def test_stored_rows_sharing_a_unique_key_serve_the_first_and_hold_the_later(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        first = await client.invoke("prompt-template:create", {"item": template("Groceries")})
    later, third = str(uuid.uuid4()), str(uuid.uuid4())
    with sqlite3.connect(data / "collections.db") as db:
        # Another program copies the row twice without item_keys: "groceries" collides
        # (ignoring case) with the first; "Errands" collides with nothing.
        for new_id, name in ((later, "groceries"), (third, "Errands")):
            db.execute(
                "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "
                "SELECT collection, ?, json_set(data, '$.name', ?), created_at, updated_at, version, "
                "revision FROM items WHERE id = ?",
                (new_id, name, first["id"]),
            )
    db.close()
    with capture_logs() as logs:
        async with running(data) as served, client_of(served) as client:
            service = served.collections["prompt-template"]
            assert service.quarantined() == {later: "NAME_CONFLICT"}
            listed = await client.invoke("prompt-template:list")
            assert [(t["id"], t["name"]) for t in listed] == [(first["id"], "Groceries"), (third, "Errands")]
            assert await client.invoke("prompt-template:read", {"id": later}) is None
            # The held row's key stays the first's: a new item cannot take it.
            with pytest.raises(DuplicateItemError):
                await client.invoke("prompt-template:create", {"item": template("GROCERIES")})
            # An update that gives it a unique value of its own restores it (sent as created).
            restored = await client.invoke(
                "prompt-template:update", {"id": later, "updates": {"name": "Groceries 2"}}
            )
            assert restored["name"] == "Groceries 2"
            assert service.quarantined() == {}
            assert [t["id"] for t in await client.invoke("prompt-template:list")] == [
                first["id"],
                later,
                third,
            ]
            # Its old name no longer collides with anything it holds: deleting the first frees it.
            assert await client.invoke("prompt-template:delete", {"id": first["id"]}) == {"deleted": True}
            made = await client.invoke("prompt-template:create", {"item": template("groceries")})
            assert made["name"] == "groceries"
    assert [e["id"] for e in logs if e["event"] == "item_quarantined"] == [later]


async def test_a_held_duplicate_can_be_deleted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data) as served, client_of(served) as client:
        first = await client.invoke("prompt-template:create", {"item": template("Groceries")})
    later = str(uuid.uuid4())
    with sqlite3.connect(data / "collections.db") as db:
        db.execute(
            "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "
            "SELECT collection, ?, data, created_at, updated_at, version, revision FROM items WHERE id = ?",
            (later, first["id"]),
        )
    db.close()
    async with running(data) as served, client_of(served) as client:
        assert served.collections["prompt-template"].quarantined() == {later: "NAME_CONFLICT"}
        assert await client.invoke("prompt-template:delete", {"id": later}) == {"deleted": True}
        assert served.collections["prompt-template"].quarantined() == {}
        assert await client.invoke("prompt-template:list") == [first]
    with sqlite3.connect(data / "collections.db") as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)
    db.close()
