"""The collections' PostgreSQL store: the same protocol as SQLite, shared by instances (real server)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import bridge
from bridge.client import BridgeClient
from bridge.collection.postgres import PostgresCollectionStore
from bridge.collection.service import CollectionService
from bridge.errors import DuplicateConfigNameError, SchemaTooNewError, VersionConflictError
from bridge.keystore import DataKey, KeyCipher, SecretBackend
from tests.conftest import openai_config
from tests.helpers.templates import load_example

CIPHER = KeyCipher(DataKey(b"k" * 32, "file"))
NOW = "2026-01-01T00:00:00.000Z"


@pytest.fixture
async def stores(pg_dsn: str) -> AsyncIterator[tuple[PostgresCollectionStore, PostgresCollectionStore]]:
    """Two stores (two pools and listeners, as two instances have) on one database."""
    first = PostgresCollectionStore(pg_dsn, poll_interval_s=0.02)
    second = PostgresCollectionStore(pg_dsn, poll_interval_s=0.02)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def service(store: PostgresCollectionStore) -> CollectionService:
    return CollectionService(load_example().PROMPT_TEMPLATES.rules, store, CIPHER)


async def events_until(queue: asyncio.Queue[Any], revision: int) -> list[Any]:
    seen: list[Any] = []
    while not seen or seen[-1].revision < revision:
        seen.append(await asyncio.wait_for(queue.get(), 15))
    return seen


async def test_the_database_checks_keys_and_versions(
    stores: tuple[PostgresCollectionStore, PostgresCollectionStore],
) -> None:
    first, second = stores
    item_id = str(uuid.uuid4())
    await first.insert("c", item_id, {"name": "A"}, keys=[("name", "a")], now=NOW, since=0)
    with pytest.raises(DuplicateConfigNameError):
        await second.insert("c", str(uuid.uuid4()), {"name": "a"}, keys=[("name", "a")], now=NOW, since=0)
    with pytest.raises(VersionConflictError):
        await second.update("c", item_id, {}, keys=[], now=NOW, base_version=1, expected_version=2, since=1)
    with pytest.raises(VersionConflictError):
        await second.delete("c", item_id, 3, since=1)
    assert await second.delete("c", str(uuid.uuid4()), None, since=1) is None
    feed = await second.update(
        "c", item_id, {"name": "B"}, keys=[], now=NOW, base_version=1, expected_version=None, since=0
    )
    # Refused writes took no revision: the feed is gap-free.
    assert feed.changes is not None
    assert [(c.revision, c.kind) for c in feed.changes] == [(1, "created"), (2, "updated")]
    assert await first.load("c") == (2, [feed.changes[-1].item])


async def test_instances_follow_each_other_with_gap_free_revisions(
    stores: tuple[PostgresCollectionStore, PostgresCollectionStore],
) -> None:
    first, second = stores
    a, b = service(first), service(second)
    await a.start()
    await b.start()
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(), asyncio.Queue()]
    a.events.subscribe(queues[0].put_nowait)
    b.events.subscribe(queues[1].put_nowait)
    template = load_example().PromptTemplate
    made = await asyncio.gather(
        *[(a if i % 2 else b).create(template(name=f"T{i}", template="t")) for i in range(12)]
    )
    with pytest.raises(DuplicateConfigNameError):
        await a.create(template(name=" t3 ", template="t"))
    for queue in queues:
        events = await events_until(queue, 12)
        assert [e.revision for e in events] == list(range(1, 13))
        assert {e.id for e in events} == {m.id for m in made}
    assert [v.id for v in a.list()] == [v.id for v in b.list()]
    await a.close()
    await b.close()


async def test_a_lost_listener_is_restored_and_nothing_is_missed(
    stores: tuple[PostgresCollectionStore, PostgresCollectionStore], pg_dsn: str
) -> None:
    first, second = stores
    a, b = service(first), service(second)
    await a.start()
    await b.start()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    b.events.subscribe(queue.put_nowait)
    admin = await asyncpg.connect(pg_dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'bridge-collections-listener-%'"
        )
    finally:
        await admin.close()
    assert killed == 2
    template = load_example().PromptTemplate
    made = await a.create(template(name="After", template="t"))
    (event,) = await events_until(queue, 1)
    assert event.id == made.id
    await a.close()
    await b.close()


async def test_a_newer_schema_is_refused(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE bridge_collection_schema (version integer NOT NULL)")
        await conn.execute("INSERT INTO bridge_collection_schema VALUES (99)")
    finally:
        await conn.close()
    store = PostgresCollectionStore(pg_dsn)
    with pytest.raises(SchemaTooNewError):
        await store.open()
    await store.close()


async def test_two_bridges_on_one_database_share_templates_and_clear_references(
    tmp_path: Path, pg_dsn: str, data_key_file: Path
) -> None:
    def options(name: str) -> bridge.BridgeOptions:
        return bridge.BridgeOptions(
            data_dir=tmp_path / name,
            store=bridge.StoreOptions(uri=pg_dsn, poll_interval_s=0.05),
            secrets=bridge.SecretOptions(backend=SecretBackend.FILE, data_key_file=data_key_file),
        )

    example = load_example()
    one = await bridge.start_bridge(options("one"), example.build_registry())
    two = await bridge.start_bridge(options("two"), example.build_registry())
    try:
        async with (
            BridgeClient(one.url, one.token, schema_hash=one.schema_hash()) as here,
            BridgeClient(two.url, two.token, schema_hash=two.schema_hash()) as there,
        ):
            seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            seen_there: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            here.on("prompt-template:changed", seen.put_nowait)
            there.on("prompt-template:changed", seen_there.put_nowait)
            config = await there.invoke("llm-config:create", {"config": openai_config()})
            # The config may reach instance one through its feed a little later.
            for _ in range(100):
                if await here.invoke("llm-config:read", {"id": config["id"]}) is not None:
                    break
                await asyncio.sleep(0.05)
            item = await here.invoke(
                "prompt-template:create", {"item": {"name": "P", "template": "t", "model": config["id"]}}
            )
            await there.invoke("llm-config:delete", {"id": config["id"]})
            events = [await asyncio.wait_for(seen.get(), 15) for _ in range(2)]
            assert [(e["type"], e["revision"]) for e in events] == [("created", 1), ("updated", 2)]
            assert events[1]["item"]["model"] is None
            assert events[1]["item"]["id"] == item["id"]
            # The other instance gets the same two events (one clearing write, not two).
            assert [await asyncio.wait_for(seen_there.get(), 15) for _ in range(2)] == events
            assert await there.invoke("prompt-template:snapshot") == {
                "revision": 2,
                "items": [events[1]["item"]],
            }
    finally:
        await one.close()
        await two.close()


async def test_rotate_key_reseals_collection_secrets_on_postgres(
    tmp_path: Path, pg_dsn: str, data_key_file: Path
) -> None:
    class Webhook(bridge.WireModel):
        """A webhook with a secret token."""

        url: str
        token: str

    def served() -> Any:
        registry = bridge.Registry()
        registry.add_collection(bridge.Collection("webhook", Webhook, secret=("token",)))
        options = bridge.BridgeOptions(
            data_dir=tmp_path / "data",
            store=bridge.StoreOptions(uri=pg_dsn),
            secrets=bridge.SecretOptions(backend=SecretBackend.FILE, data_key_file=data_key_file),
        )
        return bridge.start_bridge(options, registry)

    token = "tok-" + "x1y2z3" * 6
    one = await served()
    try:
        made = await one.collections["webhook"].create(Webhook(url="https://a.example", token=token))
    finally:
        await one.close()
    command = [
        sys.executable,
        "-m",
        "bridge",
        "rotate-key",
        "--store",
        pg_dsn,
        "--data-key-file",
        str(data_key_file),
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert (report["event"], report["resealed"], report["unopened"]) == ("rotated", 1, 0)
    assert len(report["retired"]) == 1
    two = await served()
    try:
        service = two.collections["webhook"]
        assert service.quarantined() == {}
        assert await service.secret(made.id, "token") == token
        assert await two.collection_store.key_ids() == {bytes.fromhex(report["sealingKeyId"])}
    finally:
        await two.close()


@pytest.mark.parametrize("log_too", [False, True], ids=["counter", "counter-and-log"])
async def test_a_lost_revision_row_restarts_above_the_log_and_the_items(
    stores: tuple[PostgresCollectionStore, PostgresCollectionStore], pg_dsn: str, log_too: bool
) -> None:
    # Another program deletes the counter row (and the log): the revision must not go back
    # (a follower at 2 would take the next writes for ones it has applied).
    first, second = stores
    for name in ("a", "b"):
        await first.insert("lost", str(uuid.uuid4()), {"name": name}, keys=[], now=NOW, since=0)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("DELETE FROM bridge_collection_revisions WHERE collection = 'lost'")
        if log_too:
            await conn.execute("DELETE FROM bridge_collection_changes WHERE collection = 'lost'")
    finally:
        await conn.close()
    assert (await second.load("lost"))[0] == 2
    feed = await second.insert("lost", str(uuid.uuid4()), {"name": "c"}, keys=[], now=NOW, since=2)
    assert feed.changes is not None
    assert [c.revision for c in feed.changes] == [3]
    assert (await first.load("lost"))[0] == 3
