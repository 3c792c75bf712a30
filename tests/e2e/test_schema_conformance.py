"""Schema and behaviour agree: what a real server sends validates against what it publishes."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from websockets.asyncio.client import ClientConnection, connect

from bridge import api, schemas
from bridge.cli import Bridge, BridgeOptions, start_bridge
from bridge.keystore import SecretBackend
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, openai_config

ROOT = Path(__file__).resolve().parents[2]
OPENRPC_BYTES = (ROOT / "schemas" / "openrpc.json").read_bytes()
BUNDLE: dict[str, Any] = json.loads((ROOT / "schemas" / "bridge.schema.json").read_text(encoding="utf-8"))
OPENRPC: dict[str, Any] = json.loads(OPENRPC_BYTES)
TIMEOUT = 10
UNKNOWN_ID = "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one sub-schema of the bundle (its ``$ref``s resolve in ``$defs``)."""
    return Draft202012Validator(
        {**schema, "$defs": BUNDLE["$defs"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def result_validator(channel: str) -> Draft202012Validator:
    return validator(BUNDLE["properties"]["channels"]["properties"][channel]["properties"]["result"])


def assert_valid(v: Draft202012Validator, instance: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(instance)]
    assert errors == [], (instance, errors)


class Wire:
    """A raw JSON-RPC connection that records every notification it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.notifications: list[dict[str, Any]] = []
        self.next_id = 0

    async def send_raw(self, frame: str) -> dict[str, Any]:
        await self.ws.send(frame)
        while True:
            reply: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
            if "method" in reply:
                self.notifications.append(reply)
            else:
                return reply

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        return await self.send_raw(json.dumps(message))

    async def result(self, method: str, params: Any = None) -> Any:
        reply = await self.call(method, params)
        assert "result" in reply, reply
        assert_valid(result_validator(method), reply["result"])
        return reply["result"]

    async def error(self, method: str, params: Any, rpc_code: int) -> dict[str, Any]:
        reply = await self.call(method, params)
        return check_error(reply, rpc_code, method)


def check_error(reply: dict[str, Any], rpc_code: int, method: str | None = None) -> dict[str, Any]:
    """Assert ``reply`` is error ``rpc_code``, its data fits ErrorData, and it is documented."""
    assert "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    assert error["code"] == rpc_code, error
    assert_valid(validator(BUNDLE["properties"]["errorData"]), error["data"])
    documented = OPENRPC["components"]["errors"]
    assert error["data"]["name"] in documented
    assert documented[error["data"]["name"]]["code"] == rpc_code
    assert documented[error["data"]["name"]]["data"]["code"] == error["data"]["code"]
    if method is not None:
        listed = next(m["errors"] for m in OPENRPC["methods"] if m["name"] == method)
        assert {"$ref": f"#/components/errors/{error['data']['name']}"} in listed, (method, error)
    return error


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Bridge]:
    bridge = await start_bridge(BridgeOptions(data_dir=tmp_path, secret_backend=SecretBackend.FILE, port=0))
    try:
        yield bridge
    finally:
        await bridge.close()


@pytest.fixture
async def wire(running: Bridge) -> AsyncIterator[Wire]:
    headers = {"Authorization": f"Bearer {running.token}"}
    async with connect(running.url, additional_headers=headers, compression=None) as ws:
        yield Wire(ws)


async def test_discover_returns_the_committed_document_and_hello_its_hash(wire: Wire) -> None:
    document = await wire.result("rpc.discover")
    assert schemas.canonical_bytes(document) == OPENRPC_BYTES
    hello = await wire.result("bridge:hello", {})
    assert hello["schemaHash"] == "sha256:" + hashlib.sha256(OPENRPC_BYTES).hexdigest()
    assert hello["protocolVersion"] == api.PROTOCOL_VERSION
    assert "recoveredFrom" not in hello  # absent, not null, when nothing was recovered


async def test_every_channel_result_and_notification_matches_its_schema(wire: Wire) -> None:
    created = await wire.result("llm-config:create", {"config": openai_config()})
    custom = await wire.result(
        "llm-config:create",
        {"config": {"customName": "Local", "provider": "custom", "apiKey": "k", "baseUrl": "http://h:1/v1"}},
    )
    await wire.result("llm-config:read", {"id": created["id"]})
    assert await wire.result("llm-config:read", {"id": UNKNOWN_ID}) is None
    await wire.result(
        "llm-config:update",
        {
            "id": created["id"],
            "updates": {"customName": "Renamed", "baseUrl": "https://api.example.com", "apiKey": OPENAI_KEY},
            "expectedVersion": 1,
        },
    )
    await wire.result(
        "llm-config:update", {"id": created["id"], "updates": {"baseUrl": None, "apiKey": OPENAI_KEY}}
    )
    await wire.result(
        "llm-config:update",
        {"id": custom["id"], "updates": {"provider": "anthropic", "apiKey": ANTHROPIC_KEY}},
    )
    assert len(await wire.result("llm-config:list")) == 2
    assert len((await wire.result("llm-config:snapshot", {}))["configs"]) == 2
    await wire.result("llm-config:initialize")
    await wire.result("llm-config:refresh-cache", {})
    await wire.result("bridge:hello")
    await wire.result("rpc.discover", {})
    assert (await wire.result("llm-config:delete", {"id": custom["id"], "expectedVersion": 2})) == {
        "deleted": True
    }
    assert (await wire.result("llm-config:delete", {"id": UNKNOWN_ID})) == {"deleted": False}

    payload = validator(BUNDLE["properties"]["notifications"]["properties"]["llm-config:changed"])
    kinds = []
    for note in wire.notifications:
        assert note["method"] == "llm-config:changed"
        assert "id" not in note
        assert_valid(payload, note["params"])
        kinds.append(note["params"]["type"])
    assert kinds == ["created", "created", "updated", "updated", "updated", "deleted"]
    assert "config" not in wire.notifications[-1]["params"]


async def test_every_error_the_server_sends_matches_error_data(wire: Wire) -> None:
    created = await wire.result("llm-config:create", {"config": openai_config()})

    bad = await wire.error(
        "llm-config:create",
        {"config": {"customName": " ", "provider": "azure", "apiKey": "x", "extra": 1}},
        -32602,
    )
    assert {e["field"] for e in bad["data"]["errors"]} >= {"config.customName", "config.provider"}
    await wire.error("llm-config:read", {"id": "not-a-uuid"}, -32602)
    await wire.error("llm-config:update", {"id": created["id"], "updates": {"customName": None}}, -32602)
    await wire.error("llm-config:create", {"config": openai_config()}, 4009)
    missing = await wire.error("llm-config:update", {"id": UNKNOWN_ID, "updates": {}}, 4004)
    assert missing["data"]["context"] == {"id": UNKNOWN_ID}
    conflict = await wire.error(
        "llm-config:update", {"id": created["id"], "updates": {}, "expectedVersion": 7}, 4012
    )
    assert conflict["data"]["context"]["actualVersion"] == 1
    await wire.error("llm-config:delete", {"id": created["id"], "expectedVersion": 9}, 4012)
    await wire.error("llm-config:list", {"limit": 1}, -32602)

    check_error(await wire.call("llm-config:nope", {}), -32601)
    check_error(await wire.send_raw('{"jsonrpc": "2.0", "id": true, "method": "bridge:hello"}'), -32600)
    check_error(await wire.send_raw("{not json"), -32700)


async def test_every_documented_example_round_trips(wire: Wire) -> None:
    specs = {spec.name: spec for spec in api.BUILTIN_CHANNELS}
    count = 0
    for method in OPENRPC["methods"]:
        for pairing in method.get("examples", []):
            params = {p["name"]: p["value"] for p in pairing["params"]}
            if method.get("x-server-to-client"):
                topic = next(t for t in api.BUILTIN_TOPICS if t.name == method["name"])
                topic.payload.model_validate(params)
                schema = BUNDLE["properties"]["notifications"]["properties"][method["name"]]
                assert_valid(validator(schema), params)
            else:
                specs[method["name"]].params.model_validate(params)
                assert_valid(result_validator(method["name"]), pairing["result"]["value"])
            count += 1
    assert count >= len(api.LLM_CONFIG_CHANNELS) + 1

    # The create example's params are accepted by the running server too.
    create = next(m for m in OPENRPC["methods"] if m["name"] == "llm-config:create")
    example = create["examples"][0]
    view = await wire.result("llm-config:create", {p["name"]: p["value"] for p in example["params"]})
    expected = example["result"]["value"]
    assert {k: view[k] for k in ("customName", "provider", "apiKeyPreview", "baseUrl", "version")} == {
        k: expected[k] for k in ("customName", "provider", "apiKeyPreview", "baseUrl", "version")
    }


def test_the_published_schemas_reject_what_the_server_must_not_send() -> None:
    view = dict(
        next(m for m in OPENRPC["methods"] if m["name"] == "llm-config:read")["examples"][0]["result"][
            "value"
        ]
    )
    assert result_validator("llm-config:read").is_valid(view)
    assert not result_validator("llm-config:read").is_valid({**view, "apiKey": "sk-secret"})
    assert not result_validator("llm-config:read").is_valid({k: v for k, v in view.items() if k != "baseUrl"})
    assert not validator(BUNDLE["properties"]["errorData"]).is_valid({"code": "VALIDATION_ERROR"})
