"""Over the wire: control characters in a config and moving a stored key's destination (issue 15).

A renderer may not smuggle a header or another host into ``baseUrl`` (the URL parser drops
tabs and newlines before validating), nor point a saved config's key somewhere else
without giving the key: an in-process consumer would then send the key there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from bridge.cli import Bridge
from tests.conftest import OPENAI_KEY, openai_config
from tests.e2e.wire import open_ws, recv_json, request, running_bridge


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path / "data") as running:
        yield running


@pytest.fixture
async def ws(bridge: Bridge) -> AsyncIterator[ClientConnection]:
    async with await open_ws(bridge) as connection:
        yield connection


async def call(ws: ClientConnection, method: str, params: Any) -> dict[str, Any]:
    await ws.send(request(method, params))
    while True:
        reply: dict[str, Any] = await recv_json(ws)
        if "id" in reply:
            return reply


def validation(field: str, code: str, message: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {
            "code": -32602,
            "message": f"Invalid params: {field}",
            "data": {
                "code": "VALIDATION_ERROR",
                "name": "ValidationError",
                "errors": [{"field": field, "code": code, "message": message}],
            },
        },
    }


@pytest.mark.parametrize(
    "url", ["http://example.com/v1\r\nX-Injected: 1", "https://api.openai.com\t.evil.com/v1"]
)
async def test_base_url_with_control_characters_is_refused_and_not_stored(
    ws: ClientConnection, url: str
) -> None:
    reply = await call(ws, "llm-config:create", {"config": openai_config(baseUrl=url)})

    assert reply == validation(
        "config.baseUrl", "INVALID_URL", "must not contain spaces or control characters"
    )
    assert (await call(ws, "llm-config:list", None))["result"] == []


async def test_custom_name_with_a_bidi_override_is_refused(ws: ClientConnection) -> None:
    reply = await call(ws, "llm-config:create", {"config": openai_config("Work \u202eIAnepO")})

    assert reply == validation(
        "config.customName",
        "INVALID_FORMAT",
        "must not contain control characters or bidirectional overrides",
    )


async def test_moving_a_saved_configs_base_url_needs_its_key(bridge: Bridge, ws: ClientConnection) -> None:
    created = (await call(ws, "llm-config:create", {"config": openai_config()}))["result"]

    moved = await call(
        ws, "llm-config:update", {"id": created["id"], "updates": {"baseUrl": "https://attacker.example/v1"}}
    )

    assert moved == validation("updates.apiKey", "REQUIRED", "is required when baseUrl or provider changes")
    assert (await call(ws, "llm-config:read", {"id": created["id"]}))["result"] == created
    with_key = await call(
        ws,
        "llm-config:update",
        {"id": created["id"], "updates": {"baseUrl": "https://proxy.example/v1", "apiKey": OPENAI_KEY}},
    )
    assert with_key["result"]["baseUrl"] == "https://proxy.example/v1"
    assert await bridge.service.get_api_key(created["id"]) == OPENAI_KEY
