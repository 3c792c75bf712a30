"""Issue #14 follow-ups found by a new user: collection errors, strict params, stored rows checked."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

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
