"""Over the wire: a collection of an application declares a secret bound to its destination.

``Collection(secret_bound_to=...)`` is llm-config's key rule (a stored key never follows
a new ``baseUrl`` or ``provider`` on its own) made a rule any collection may declare: a
patch that moves a bound field without the secret is refused and stores nothing; with the
secret, or when it changes an unbound field, it is written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

import bridge
from tests.e2e.wire import open_ws, recv_json, request
from tests.helpers.notes import TOKEN
from tests.helpers.templates import running


class Relay(bridge.WireModel):
    """A relay that posts with ``token`` to ``url`` in ``region``; ``label`` is its own."""

    label: str
    url: str
    region: str | None = None
    token: str


RELAYS = bridge.Collection("relay", Relay, secret=("token",), secret_bound_to={"token": ("url", "region")})
OTHER_TOKEN = "rly-" + "Z9y8X7w6" * 5


def registry() -> bridge.Registry:
    reg = bridge.Registry()
    reg.add_collection(RELAYS)
    return reg


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def served(data: Path) -> AsyncIterator[bridge.Bridge]:
    async with running(data, registry()) as app:
        yield app


@pytest.fixture
async def ws(served: bridge.Bridge) -> AsyncIterator[ClientConnection]:
    async with await open_ws(served) as connection:
        yield connection


async def call(ws: ClientConnection, method: str, params: Any, request_id: int = 1) -> dict[str, Any]:
    """Send one request; return its response frame (notifications before it are skipped)."""
    await ws.send(request(method, params, request_id))
    while True:
        reply: dict[str, Any] = await recv_json(ws)
        if reply.get("id") == request_id:
            return reply


def stored_row(data: Path, item_id: str) -> tuple[Any, ...]:
    """The item's row as the database holds it (fields with the sealed token, version, revision)."""
    with sqlite3.connect(data / "collections.db") as db:
        row = db.execute("SELECT data, version, revision FROM items WHERE id = ?", (item_id,)).fetchone()
    db.close()
    assert row is not None
    return tuple(row)


def token_required(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {
            "code": -32602,
            "message": "Invalid params: updates.token",
            "data": {
                "code": "VALIDATION_ERROR",
                "name": "ValidationError",
                "errors": [
                    {
                        "field": "updates.token",
                        "code": "REQUIRED",
                        "message": "is required when url or region changes",
                    }
                ],
            },
        },
    }


@pytest.mark.parametrize("moved", [{"url": "https://attacker.example/h"}, {"region": None}, {"region": "us"}])
async def test_moving_a_bound_field_without_the_secret_is_refused_and_stores_nothing(
    data: Path, served: bridge.Bridge, ws: ClientConnection, moved: dict[str, Any]
) -> None:
    item = {"label": "Main", "url": "https://a.example/h", "region": "eu", "token": TOKEN}
    created = (await call(ws, "relay:create", {"item": item}))["result"]
    before = stored_row(data, created["id"])

    reply = await call(ws, "relay:update", {"id": created["id"], "updates": moved}, 2)

    assert reply == token_required(2)
    assert stored_row(data, created["id"]) == before
    assert (await call(ws, "relay:read", {"id": created["id"]}, 3))["result"] == created
    assert await served.collections["relay"].secret(created["id"], "token") == TOKEN


async def test_moving_a_bound_field_with_the_secret_is_written(
    data: Path, served: bridge.Bridge, ws: ClientConnection
) -> None:
    item = {"label": "Main", "url": "https://a.example/h", "region": "eu", "token": TOKEN}
    created = (await call(ws, "relay:create", {"item": item}))["result"]

    moved = await call(
        ws,
        "relay:update",
        {"id": created["id"], "updates": {"url": "https://b.example/h", "token": OTHER_TOKEN}},
        2,
    )

    view = moved["result"]
    assert (view["url"], view["tokenPreview"], view["version"]) == (
        "https://b.example/h",
        "••••" + OTHER_TOKEN[-4:],
        2,
    )
    assert await served.collections["relay"].secret(created["id"], "token") == OTHER_TOKEN
    assert stored_row(data, created["id"])[1] == 2


async def test_an_unbound_field_changed_without_the_secret_is_written_and_keeps_it(
    data: Path, served: bridge.Bridge, ws: ClientConnection
) -> None:
    item = {"label": "Main", "url": "https://a.example/h", "region": "eu", "token": TOKEN}
    created = (await call(ws, "relay:create", {"item": item}))["result"]
    stored_before = json.loads(stored_row(data, created["id"])[0])

    renamed = (await call(ws, "relay:update", {"id": created["id"], "updates": {"label": "Renamed"}}, 2))[
        "result"
    ]
    # A bound field sent with its current value moves nothing: no secret needed.
    same = (await call(ws, "relay:update", {"id": created["id"], "updates": {"url": item["url"]}}, 3))[
        "result"
    ]

    assert (renamed["label"], renamed["tokenPreview"], renamed["version"]) == (
        "Renamed",
        created["tokenPreview"],
        2,
    )
    assert same == renamed
    assert await served.collections["relay"].secret(created["id"], "token") == TOKEN
    # The token kept its ciphertext: only the label changed in the stored row.
    assert json.loads(stored_row(data, created["id"])[0]) == {**stored_before, "label": "Renamed"}
