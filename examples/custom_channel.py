"""Channels of your own: register ``app:echo`` and an ``app:tick`` topic, serve from Python.

Run: ``.venv/bin/python examples/custom_channel.py`` — starts a bridge on a temporary
data directory, calls ``app:echo`` through a real client, receives an ``app:tick``
notification, and shows both in ``bridge:hello`` and ``rpc.discover``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import bridge
from bridge.client import BridgeClient
from bridge.keystore import SecretBackend
from bridge.models import WireModel


class EchoParams(WireModel):
    """Params of ``app:echo``: ``{text}``."""

    text: str


class EchoResult(WireModel):
    """Result of ``app:echo``: ``{text, length}`` (length in code points)."""

    text: str
    length: int


class Tick(WireModel):
    """Payload of the ``app:tick`` notification: ``{count}``."""

    count: int


APP_ECHO: bridge.ChannelSpec[EchoParams, EchoResult] = bridge.ChannelSpec(
    "app:echo", EchoParams, EchoResult, "Echo a text back with its length."
)
APP_TICK = bridge.TopicSpec("app:tick", Tick, "A counter pushed by the application.")


def build_registry() -> bridge.Registry:
    """A registry with the application's channel and topic (bridge adds its own)."""
    registry = bridge.Registry()

    async def echo(params: EchoParams) -> EchoResult:
        return EchoResult(text=params.text, length=len(params.text))

    registry.add(APP_ECHO, echo)
    registry.add_topic(APP_TICK)
    return registry


async def main(data_dir: Path) -> dict[str, Any]:
    """Start the bridge in process, use the custom channel and topic, return what was seen."""
    running = await bridge.start_bridge(
        bridge.BridgeOptions(data_dir=data_dir, secrets=bridge.SecretOptions(backend=SecretBackend.FILE)),
        build_registry(),
    )
    try:
        # The client's types describe this registry: it expects this bridge's schemaHash, so
        # bridge:hello reports no drift (a stock client would warn: the channels differ).
        async with BridgeClient(running.url, running.token, schema_hash=running.schema_hash()) as client:
            ticks: asyncio.Queue[Any] = asyncio.Queue()
            client.on(APP_TICK.name, ticks.put_nowait)
            echoed = await client.call(APP_ECHO, EchoParams(text="héllo"))
            await client.hello()  # a round trip: the subscription is surely in place server-side
            running.notify(APP_TICK, Tick(count=1))
            tick = await asyncio.wait_for(ticks.get(), 10)
            hello = await client.hello()
            document = await client.invoke("rpc.discover")
    finally:
        await running.close()
    return {"echo": echoed, "tick": tick, "channels": hello.channels, "document": document}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        seen = asyncio.run(main(Path(tmp)))
    print("echo:", seen["echo"])
    print("tick:", seen["tick"])
    print("channels:", seen["channels"])
    print("openrpc methods:", [m["name"] for m in seen["document"]["methods"]])
