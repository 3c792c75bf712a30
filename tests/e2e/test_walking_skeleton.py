"""End to end: ``bridge serve`` as a subprocess, driven by BridgeClient and raw frames."""

from __future__ import annotations

import asyncio
import json
import stat
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from bridge.client import BridgeClient, read_connection_file
from bridge.errors import DuplicateConfigNameError, ValidationError
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, ServedBridge, openai_config, start_bridge_process

TIMEOUT = 10


@pytest.fixture
def served(served_on_backend: ServedBridge) -> ServedBridge:
    """Every test here runs on SQLite and on PostgreSQL."""
    return served_on_backend


async def raw(served: ServedBridge) -> ClientConnection:
    return await connect(
        served.url, additional_headers={"Authorization": f"Bearer {served.token}"}, compression=None
    )


async def rpc(ws: ClientConnection, method: str, params: Any = None, request_id: int = 1) -> Any:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    await ws.send(json.dumps(message))
    while True:  # notifications precede the response that caused them: skip them here
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if "method" not in reply:
            return reply


def test_ready_line_and_connection_file_match(served: ServedBridge) -> None:
    info = read_connection_file(served.data_dir / "connection.json")
    assert (info.url, info.token) == (served.url, served.token)
    assert served.url.startswith("ws://127.0.0.1:")
    assert served.ready["pid"] == served.process.pid
    mode = stat.S_IMODE((served.data_dir / "connection.json").stat().st_mode)
    assert mode == 0o600


async def test_crud_over_the_wire_with_raw_frames(served: ServedBridge) -> None:
    async with await raw(served) as ws:
        created = await rpc(ws, "llm-config:create", {"config": openai_config()})
        view = created["result"]
        assert created["id"] == 1
        assert set(view) == {
            "id",
            "customName",
            "provider",
            "apiKeyPreview",
            "baseUrl",
            "useAuthHeader",
            "createdAt",
            "updatedAt",
            "version",
        }
        assert view["apiKeyPreview"] == OPENAI_KEY[:3] + "..." + OPENAI_KEY[-3:]
        assert view["baseUrl"] is None
        assert view["version"] == 1
        assert view["createdAt"] == view["updatedAt"]
        assert view["createdAt"].endswith("Z")

        read = await rpc(ws, "llm-config:read", {"id": view["id"]}, 2)
        assert read == {"jsonrpc": "2.0", "id": 2, "result": view}

        updated = (
            await rpc(ws, "llm-config:update", {"id": view["id"], "updates": {"useAuthHeader": False}}, 3)
        )["result"]
        assert updated["version"] == 2
        assert updated["useAuthHeader"] is False

        listed = await rpc(ws, "llm-config:list", None, 4)
        assert listed["result"] == [updated]
        snapshot = await rpc(ws, "llm-config:snapshot", {}, 5)
        assert snapshot["result"] == {"revision": 2, "configs": [updated]}

        deleted = await rpc(ws, "llm-config:delete", {"id": view["id"]}, 6)
        assert deleted["result"] == {"deleted": True}
        again = await rpc(ws, "llm-config:delete", {"id": view["id"]}, 7)
        assert again["result"] == {"deleted": False}
        assert (await rpc(ws, "llm-config:read", {"id": view["id"]}, 8))["result"] is None


async def test_validation_error_names_fields_and_never_echoes_the_key(served: ServedBridge) -> None:
    async with await raw(served) as ws:
        bad_key = "sk-too-short-but-secret"
        reply = await rpc(ws, "llm-config:create", {"config": openai_config(apiKey=bad_key, extra=1)})
    error = reply["error"]
    assert error["code"] == -32602
    assert error["data"]["code"] == "VALIDATION_ERROR"
    assert [(e["field"], e["code"]) for e in error["data"]["errors"]] == [
        ("config.apiKey", "API_KEY_FORMAT"),
        ("config.extra", "UNKNOWN_FIELD"),
    ]
    assert bad_key not in json.dumps(reply)


async def test_client_typed_helpers_and_rebuilt_errors(served: ServedBridge) -> None:
    async with BridgeClient(served.url, served.token) as client:
        view = await client.create_config(openai_config("Work"))
        assert view.custom_name == "Work"
        with pytest.raises(DuplicateConfigNameError):
            await client.create_config(openai_config("  WORK "))
        with pytest.raises(ValidationError) as caught:
            await client.create_config({"customName": "x", "provider": "anthropic", "apiKey": "sk-1"})
        assert [e.field for e in caught.value.errors] == ["config.apiKey"]
        assert [v.id for v in await client.list_configs()] == [view.id]
        hello = await client.hello()
        assert hello.protocol_version == 1
        assert hello.secret_backend == "file"
        assert hello.revision == 1
        assert "llm-config:create" in hello.channels


async def test_writes_notify_every_connection_before_the_writers_response(served: ServedBridge) -> None:
    async with await raw(served) as writer, await raw(served) as listener:
        # Make sure both connections are registered before the write.
        await rpc(listener, "bridge:hello", None, 100)
        await writer.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "llm-config:create",
                    "params": {"config": openai_config()},
                }
            )
        )
        first = orjson.loads(await asyncio.wait_for(writer.recv(), TIMEOUT))
        second = orjson.loads(await asyncio.wait_for(writer.recv(), TIMEOUT))
        assert first["method"] == "llm-config:changed"
        assert "id" not in first
        assert second["id"] == 1
        assert first["params"] == {
            "type": "created",
            "id": second["result"]["id"],
            "revision": 1,
            "config": second["result"],
        }
        heard = orjson.loads(await asyncio.wait_for(listener.recv(), TIMEOUT))
        assert heard == first

        config_id = second["result"]["id"]
        await rpc(writer, "llm-config:update", {"id": config_id, "updates": {"customName": "Renamed"}}, 2)
        await rpc(writer, "llm-config:delete", {"id": config_id}, 3)
        events = [orjson.loads(await asyncio.wait_for(listener.recv(), TIMEOUT)) for _ in range(2)]
        assert [(e["params"]["type"], e["params"]["revision"]) for e in events] == [
            ("updated", 2),
            ("deleted", 3),
        ]
        assert "config" not in events[1]["params"]


async def test_no_op_update_sends_no_notification_and_keeps_version(served: ServedBridge) -> None:
    async with BridgeClient(served.url, served.token) as client:
        events: asyncio.Queue[Any] = asyncio.Queue()
        client.on("llm-config:changed", events.put_nowait)
        view = await client.create_config(openai_config())
        assert (await asyncio.wait_for(events.get(), TIMEOUT))["type"] == "created"
        same = await client.update_config(view.id, {"apiKey": OPENAI_KEY, "customName": "My OpenAI"})
        assert same.version == 1
        changed = await client.update_config(view.id, {"apiKey": OPENAI_KEY[:-1] + "Z"})
        assert changed.version == 2
        event = await asyncio.wait_for(events.get(), TIMEOUT)
        assert (event["type"], event["revision"]) == ("updated", 2)
        assert events.empty()


async def test_missing_or_wrong_token_is_refused_with_401(served: ServedBridge) -> None:
    with pytest.raises(InvalidStatus) as missing:
        await connect(served.url, compression=None)
    assert missing.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as wrong:
        await connect(served.url, additional_headers={"Authorization": "Bearer " + "x" * 43})
    assert wrong.value.response.status_code == 401


async def test_token_by_subprotocol_pair_and_query_string(served: ServedBridge) -> None:
    offered = [Subprotocol("bridge.v1"), Subprotocol(f"bridge.v1.token.{served.token}")]
    async with connect(served.url, subprotocols=offered, compression=None) as ws:
        assert ws.subprotocol == "bridge.v1"
        assert (await rpc(ws, "bridge:hello"))["result"]["protocolVersion"] == 1
    async with connect(f"{served.url}/?token={served.token}", compression=None) as ws:
        assert (await rpc(ws, "llm-config:list"))["result"] == []


async def test_restart_keeps_configs_and_never_stores_the_key_in_plain_text(served: ServedBridge) -> None:
    async with BridgeClient(served.url, served.token) as client:
        first = await client.create_config(openai_config("One"))
        second = await client.create_config(
            {"customName": "Two", "provider": "anthropic", "apiKey": ANTHROPIC_KEY}
        )
    assert served.stop() == 0
    assert not (served.data_dir / "connection.json").exists()
    for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
        path = served.data_dir / name
        if path.exists():
            data = path.read_bytes()
            assert OPENAI_KEY.encode() not in data
            assert ANTHROPIC_KEY.encode() not in data

    again = start_bridge_process(served.data_dir, *served.extra)
    try:
        async with BridgeClient(again.url, again.token) as client:
            assert [v.id for v in await client.list_configs()] == [first.id, second.id]
            assert (await client.read_config(second.id)) == second
            assert (await client.hello()).revision == 2
    finally:
        assert again.stop() == 0
    assert OPENAI_KEY not in served.log_text() + again.log_text()
    assert served.token not in served.log_text()
