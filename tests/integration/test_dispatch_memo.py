"""The hot-path caches never change a reply: the dispatcher's params memo (by value) and the
service's cached view JSON (spliced into read/list/snapshot replies)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge import api
from bridge.keystore import KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigInput, LlmConfigPatch, LlmConfigView, Snapshot
from bridge.rpc import dispatch
from bridge.rpc.dispatch import Dispatcher
from bridge.service import LlmConfigService, register_llm_config_channels
from bridge.service.channels import JsonMemo
from bridge.storage import SqliteConfigStore
from tests.conftest import openai_config
from tests.integration.test_service_sqlite import make


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Dispatcher, LlmConfigService]]:
    store = SqliteConfigStore(tmp_path / "bridge.db")
    await store.open()
    key = load_data_key(tmp_path, SecretBackend.FILE, must_exist=False)
    service = LlmConfigService(store, KeyCipher(key), watch=False)
    registry = api.Registry()
    register_llm_config_channels(registry, service)
    yield Dispatcher(registry), service
    await service.close()
    await store.close()


async def call(dispatcher: Dispatcher, method: str, params: Any) -> Any:
    reply = await dispatcher.handle_frame(
        orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).decode()
    )
    assert reply is not None
    return orjson.loads(reply)


async def test_repeated_read_returns_the_current_view_after_an_update(
    served: tuple[Dispatcher, LlmConfigService],
) -> None:
    dispatcher, service = served
    view = await service.create(make("First"))
    first = await call(dispatcher, "llm-config:read", {"id": view.id})
    assert (await call(dispatcher, "llm-config:read", {"id": view.id})) == first
    updated = await call(
        dispatcher, "llm-config:update", {"id": view.id, "updates": {"customName": "Second"}}
    )
    again = await call(dispatcher, "llm-config:read", {"id": view.id})
    assert again["result"]["customName"] == "Second"
    assert again["result"] == updated["result"]
    listed = await call(dispatcher, "llm-config:list", {})
    assert listed["result"] == [again["result"]]


async def test_upper_case_id_reads_the_same_config_as_lower_case(
    served: tuple[Dispatcher, LlmConfigService],
) -> None:
    dispatcher, service = served
    view = await service.create(make())
    lower = await call(dispatcher, "llm-config:read", {"id": view.id})
    upper = await call(dispatcher, "llm-config:read", {"id": view.id.upper()})
    assert upper == lower


async def test_boolean_is_never_served_from_a_memo_entry_of_the_equal_integer(
    served: tuple[Dispatcher, LlmConfigService],
) -> None:
    dispatcher, _ = served
    unknown = "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"
    ok = await call(dispatcher, "llm-config:delete", {"id": unknown, "expectedVersion": 1})
    assert ok["result"] == {"deleted": False}
    # True == 1 and hash(True) == hash(1): the memo key carries the type, so this is
    # validated afresh and refused as a non-integer.
    bad = await call(dispatcher, "llm-config:delete", {"id": unknown, "expectedVersion": True})
    assert bad["error"]["code"] == -32602
    assert bad["error"]["data"]["errors"][0]["field"] == "expectedVersion"


async def test_invalid_params_give_the_same_error_every_time(
    served: tuple[Dispatcher, LlmConfigService],
) -> None:
    dispatcher, _ = served
    replies = [await call(dispatcher, "llm-config:read", {"id": "not-a-uuid"}) for _ in range(3)]
    assert replies[0]["error"]["code"] == -32602
    assert replies[1:] == [replies[0], replies[0]]


async def test_cached_json_is_exactly_the_pydantic_wire_form(
    served: tuple[Dispatcher, LlmConfigService],
) -> None:
    dispatcher, service = served
    for i in range(3):
        extra = {"baseUrl": "https://example.com/v1", "useAuthHeader": False} if i else {}
        await service.create(LlmConfigInput.model_validate(openai_config(f"Config {i}", **extra)))
    revision, views = await service.snapshot()
    wire_views = api.LLM_CONFIG_LIST.dump_result(views)
    assert (await call(dispatcher, "llm-config:list", {}))["result"] == wire_views
    snapshot = await call(dispatcher, "llm-config:snapshot", {})
    assert snapshot["result"] == api.LLM_CONFIG_SNAPSHOT.dump_result(
        Snapshot(revision=revision, configs=views)
    )
    for view in views:
        reply = await call(dispatcher, "llm-config:read", {"id": view.id})
        assert reply["result"] == api.LLM_CONFIG_READ.dump_result(view)
    # Reads of the same config twice send the same bytes; an unknown id reads null.
    unknown = await call(dispatcher, "llm-config:read", {"id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"})
    assert unknown["result"] is None


async def test_params_memo_stays_bounded(
    served: tuple[Dispatcher, LlmConfigService], monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher, service = served
    monkeypatch.setattr(dispatch, "_MEMO_MAX", 4)
    views = [await service.create(make(f"Config {i}")) for i in range(6)]
    for view in views:
        reply = await call(dispatcher, "llm-config:read", {"id": view.id})
        assert reply["result"]["id"] == view.id
    assert len(dispatcher._params_memo) <= 4


async def test_an_unchanged_view_is_one_object_and_is_serialised_once(
    served: tuple[Dispatcher, LlmConfigService],
) -> None:
    _, service = served
    view = await service.create(make("Kept"))
    first = await service.read(view.id)
    assert first is not None
    # The service returns models; the same object while the config is unchanged...
    assert await service.read(view.id) is first
    assert (await service.list())[0] is first
    assert (await service.snapshot())[1][0] is first
    # ...so the binding's memo serialises it once and hands back the same bytes.
    memo = JsonMemo(LlmConfigView)
    data = memo.json(first)
    assert memo.json(first) is data
    assert orjson.loads(data) == first.model_dump(mode="json", by_alias=True)
    await service.update(view.id, LlmConfigPatch(custom_name="Changed"))
    changed = await service.read(view.id)
    assert changed is not None
    assert changed is not first
    assert orjson.loads(memo.json(changed))["customName"] == "Changed"


async def test_an_unchanged_list_is_one_tuple_and_its_array_is_serialised_once(
    served: tuple[Dispatcher, LlmConfigService],
) -> None:
    dispatcher, service = served
    one = await service.create(make("One"))
    _, views = await service.views()
    assert (await service.views())[1] is views
    memo = JsonMemo(LlmConfigView)
    data = memo.array(views)
    assert memo.array(views) is data
    # Any change gives a new tuple, and the list reply follows it.
    two = await service.create(make("Two"))
    _, after_create = await service.views()
    assert after_create is not views
    assert [v["id"] for v in orjson.loads(memo.array(after_create))] == [one.id, two.id]
    await service.delete(one.id)
    listed = await call(dispatcher, "llm-config:list", {})
    assert [v["id"] for v in listed["result"]] == [two.id]
    snapshot = await call(dispatcher, "llm-config:snapshot", {})
    assert [v["id"] for v in snapshot["result"]["configs"]] == [two.id]
