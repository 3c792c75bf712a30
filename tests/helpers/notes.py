"""What the collection end-to-end tests share: small apps, template dicts, calls.

``folder`` and ``note`` (``note.folder`` references a folder, set-null) are the smallest
application with a reference between two collections of its own; ``Webhook`` is the
smallest model with two secret fields.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import ClientConnection

import bridge
from bridge.client import BridgeClient
from tests.e2e.wire import recv_json, request


class Folder(bridge.WireModel):
    """A folder of notes."""

    title: str


class Note(bridge.WireModel):
    """A note filed in a folder."""

    text: str
    folder: str | None = None


TOKEN = "whsec-" + "Q7r8S9t0" * 5
"""A webhook token of a shape no log line may show."""
SIGNING = "sign-" + "K1l2M3n4" * 5
"""A webhook signing key of a shape no log line may show."""


class Webhook(bridge.WireModel):
    """A webhook with two secrets."""

    url: str
    token: str
    signing_key: str | None = None


def folders_and_notes() -> bridge.Registry:
    """``folder`` and ``note`` (``note.folder`` references a folder, set-null)."""
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("folder", Folder))
    registry.add_collection(bridge.Collection("note", Note, references={"folder": bridge.Ref("folder")}))
    return registry


def template(name: str, model: str | None = None) -> dict[str, Any]:
    """A ``PromptTemplate`` wire dict (the example app's collection)."""
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
