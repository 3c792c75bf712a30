"""``BridgeClient.collection``: a live mirror of a collection on a real in-process server (DESIGN §8).

The generic mirror on the first collection, ``llm-config`` (its ``config``/``configs``
words), and what a mirror does when a restarted server no longer serves its collection;
the prompt-template example's end-to-end proof is tests/e2e/test_prompt_templates.py.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import bridge
from bridge import api
from bridge.app import Bridge
from bridge.client import BridgeClient, CollectionMirror, SchemaMismatchWarning
from bridge.errors import MethodNotFoundError
from tests.conftest import openai_config
from tests.e2e.wire import TIMEOUT, port_of, running_bridge
from tests.helpers.templates import load_example


@asynccontextmanager
async def two_clients(data_dir: Path) -> AsyncIterator[tuple[Bridge, BridgeClient, BridgeClient]]:
    """An in-process bridge and two clients of it (the test registry's schemaHash)."""
    async with running_bridge(data_dir) as served:
        options: dict[str, Any] = {"schema_hash": served.schema_hash()}
        async with (
            BridgeClient(served.url, served.token, **options) as first,
            BridgeClient(served.url, served.token, **options) as second,
        ):
            yield served, first, second


async def test_collection_mirror_loads_follows_live_events_and_is_one_per_name(tmp_path: Path) -> None:
    async with two_clients(tmp_path / "data") as (_, writer, reader):
        first = await writer.create_config(openai_config("First"))
        configs = await reader.collection("llm-config")
        assert await reader.collection("llm-config") is configs
        assert isinstance(configs, CollectionMirror)
        assert [view["id"] for view in configs.items] == [first.id]
        assert configs.revision == 1

        seen: list[dict[str, Any]] = []
        configs.on(seen.append)
        second = await writer.create_config(openai_config("Second"))
        await writer.delete_config(first.id)
        await configs.wait_for(lambda m: m.revision == 3, TIMEOUT)
        assert [(e["type"], e["id"], e["revision"]) for e in seen] == [
            ("created", second.id, 2),
            ("deleted", first.id, 3),
        ]
        snapshot = await reader.invoke("llm-config:snapshot")
        assert configs.items == snapshot["configs"]
        assert configs.revision == snapshot["revision"]


async def test_collection_of_an_unknown_name_raises_method_not_found_and_is_not_followed(
    tmp_path: Path,
) -> None:
    async with two_clients(tmp_path / "data") as (_, client, _other):
        with pytest.raises(MethodNotFoundError):
            await client.collection("no-such-thing")
        # Not followed: asking again asks the server again (a followed name returns its mirror).
        with pytest.raises(MethodNotFoundError):
            await client.collection("no-such-thing")
        assert (await client.hello()).protocol_version == 1  # the connection is fine


async def test_a_failing_subscriber_is_logged_and_the_connection_keeps_serving(tmp_path: Path) -> None:
    async with two_clients(tmp_path / "data") as (_, client, _other):
        configs = await client.collection("llm-config")
        later: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def broken(_event: dict[str, Any]) -> None:
            raise RuntimeError("a subscriber's bug")

        client.on("llm-config:changed", broken)
        configs.on(broken)
        client.on("llm-config:changed", later.put_nowait)
        with capture_logs() as logs:
            created = await client.create_config(openai_config("Survives"))
            event = await asyncio.wait_for(later.get(), TIMEOUT)
        assert (event["type"], event["id"]) == ("created", created.id)
        failures = [entry for entry in logs if entry["event"] == "client_callback_failed"]
        assert [entry["topic"] for entry in failures] == ["llm-config:changed", "llm-config:changed"]
        # The reader is still alive: a call after the failing callbacks is answered.
        assert [view.id for view in await client.list_configs()] == [created.id]
        assert configs.get(created.id) is not None


async def start_on(data_dir: Path, port: int, registry: api.Registry | None = None) -> Bridge:
    """An in-process bridge on ``port`` (0: any) serving ``registry`` beside bridge's own (a fixed token)."""
    return await bridge.start_bridge(
        bridge.BridgeOptions(
            data_dir=data_dir,
            token="T" * 43,
            secrets=bridge.SecretOptions(backend=bridge.SecretBackend.FILE),
            transport=bridge.TransportOptions(port=port),
        ),
        registry,
    )


async def test_a_server_restarted_without_the_collection_keeps_the_client_connected(tmp_path: Path) -> None:
    example = load_example()
    first = await start_on(tmp_path / "data", 0, example.build_registry())
    port = port_of(first)
    client = BridgeClient(first.url, first.token, reconnect=True, backoff_initial_s=0.05, backoff_max_s=0.3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SchemaMismatchWarning)  # not this test's subject
            await client.connect()
        templates = await client.collection("prompt-template")
        created = await client.call(
            example.PROMPT_TEMPLATES.channels.create, {"item": {"name": "A", "template": "t"}}
        )
        await templates.wait_for(lambda m: created.id in m, TIMEOUT)
        reader = client._reader
        assert reader is not None
        await first.close()
        await asyncio.wait_for(reader, TIMEOUT)

        # The same data directory and port, but a stock registry: no prompt-template channels.
        with capture_logs() as logs:
            second = await start_on(tmp_path / "data", port)
            try:
                await client.wait_connected(TIMEOUT)
                assert (await client.hello()).protocol_version == 1
                assert await client.list_configs() == []
            finally:
                await second.close()
        failures = [entry for entry in logs if entry["event"] == "collection_resync_failed"]
        assert [(entry["topic"], entry["error"]) for entry in failures] == [
            ("prompt-template:changed", "METHOD_NOT_FOUND")
        ]
        assert templates.get(created.id) == created.model_dump(mode="json")  # what it knew, kept
    finally:
        await client.close()
