"""Start-up, read path, cancelled writes and migration of a trusted-but-checked store (issue 16).

Real SQLite files and PostgreSQL databases; faults (a failing load, a caller cancelled
after its commit) are injected by wrapping one store method.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.app import BridgeOptions, SecretOptions, start_bridge
from bridge.client import BridgeClient
from bridge.keystore import KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigChanged, LlmConfigPatch
from bridge.service import LlmConfigService
from bridge.storage import ConfigStore, SqliteConfigStore
from bridge.storage import sqlite as sqlite_store
from tests.conftest import openai_config
from tests.integration.test_service_sqlite import make, open_service

__all__ = ["open_service"]  # a fixture, used by name

FIXTURES = Path(__file__).parent.parent / "fixtures"
TIMEOUT_S = 15.0


def recorder(svc: LlmConfigService) -> tuple[list[LlmConfigChanged], asyncio.Event]:
    events: list[LlmConfigChanged] = []
    arrived = asyncio.Event()

    def on(event: LlmConfigChanged) -> None:
        events.append(event)
        arrived.set()

    svc.events.subscribe(on)
    return events, arrived


# ---- cancellation ------------------------------------------------------------------------


async def test_caller_cancelled_after_commit_leaves_cache_and_store_equal_and_event_is_sent(
    tmp_path: Path, open_service: Callable[[Path], Awaitable[tuple[LlmConfigService, ConfigStore]]]
) -> None:
    svc, store = await open_service(tmp_path)
    try:
        view = await svc.create(make("Before"))
        events, arrived = recorder(svc)
        committed = asyncio.Event()
        release = asyncio.Event()
        real_update = store.update

        async def commit_then_stall(*args: Any, **kwargs: Any) -> Any:
            outcome = await real_update(*args, **kwargs)
            committed.set()
            await release.wait()  # the caller is cancelled here, after the commit
            return outcome

        store.update = commit_then_stall  # type: ignore[method-assign]
        caller = asyncio.ensure_future(svc.update(view.id, LlmConfigPatch(custom_name="After")))
        await asyncio.wait_for(committed.wait(), TIMEOUT_S)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        release.set()
        await asyncio.wait_for(arrived.wait(), TIMEOUT_S)
        assert [(e.type.value, e.config.custom_name if e.config else None) for e in events] == [
            ("updated", "After")
        ]
        store.update = real_update  # type: ignore[method-assign]
        assert (await svc.validate_cache())["consistent"] is True
        read = await svc.read(view.id)
        assert read is not None
        assert read.custom_name == "After"
    finally:
        await svc.close()
        await store.close()


# ---- read path ---------------------------------------------------------------------------


async def test_read_miss_catches_up_when_the_store_moved_and_reads_nothing_otherwise(
    tmp_path: Path, open_service: Callable[[Path], Awaitable[tuple[LlmConfigService, ConfigStore]]]
) -> None:
    reader, reader_store = await open_service(tmp_path)
    writer, writer_store = await open_service(tmp_path)
    try:
        await reader.initialize()
        reads = {"load": 0, "changes_since": 0}
        for name in reads:
            real = getattr(reader_store, name)

            def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
                reads[_name] += 1
                return _real(*args)

            setattr(reader_store, name, counted)
        # Nothing moved: a miss costs no store read.
        assert await reader.read("00000000-0000-4000-8000-000000000000") is None
        assert reads == {"load": 0, "changes_since": 0}

        events, _ = recorder(reader)
        view = await writer.create(make("Elsewhere"))
        if not isinstance(reader_store, SqliteConfigStore):
            # PostgreSQL learns of a commit by NOTIFY: wait until it arrived.
            await asyncio.wait_for(reader_store.wait_for_change(), TIMEOUT_S)
        assert reader_store.moved() is True
        found = await reader.read(view.id)
        assert found is not None
        assert found.custom_name == "Elsewhere"
        assert [(e.type.value, e.id) for e in events] == [("created", view.id)]
        assert [v.id for v in await reader.list()] == [view.id]
        assert reads["load"] == 0
        assert reads["changes_since"] == 1
    finally:
        for svc, store in ((reader, reader_store), (writer, writer_store)):
            await svc.close()
            await store.close()


# ---- start-up ----------------------------------------------------------------------------


async def test_start_up_reads_the_whole_store_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = BridgeOptions(data_dir=tmp_path, secrets=SecretOptions(backend=SecretBackend.FILE))
    first = await start_bridge(options)
    try:
        async with BridgeClient(first.url, first.token) as client:
            for i in range(3):
                await client.create_config(openai_config(f"C{i}"))
    finally:
        await first.close()
    loads = 0
    real_load = SqliteConfigStore.load

    async def counted(self: SqliteConfigStore) -> Any:
        nonlocal loads
        loads += 1
        return await real_load(self)

    monkeypatch.setattr(SqliteConfigStore, "load", counted)
    second = await start_bridge(options)
    try:
        async with BridgeClient(second.url, second.token) as client:
            assert len(await client.invoke("llm-config:list")) == 3
    finally:
        await second.close()
    assert loads == 1


async def test_failed_load_at_start_up_serves_degraded_and_recovers_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = BridgeOptions(data_dir=tmp_path, secrets=SecretOptions(backend=SecretBackend.FILE))
    first = await start_bridge(options)
    try:
        async with BridgeClient(first.url, first.token) as client:
            ids = [(await client.create_config(openai_config(f"C{i}"))).id for i in range(3)]
    finally:
        await first.close()

    healthy = asyncio.Event()
    failures = 0
    real_load = SqliteConfigStore.load

    async def flaky(self: SqliteConfigStore) -> Any:
        nonlocal failures
        if not healthy.is_set():
            failures += 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return await real_load(self)

    monkeypatch.setattr(SqliteConfigStore, "load", flaky)
    served = await start_bridge(options)
    try:
        async with BridgeClient(served.url, served.token) as client:
            events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            client.on("llm-config:changed", events.put_nowait)
            hello = await client.invoke("bridge:hello")
            assert hello["degraded"] == "load_failed"
            assert hello["cache"]["count"] == 0
            assert await client.invoke("llm-config:list") == []
            healthy.set()
            # The background retry loads the rows and announces them.
            seen = [await asyncio.wait_for(events.get(), TIMEOUT_S) for _ in ids]
            assert sorted(e["id"] for e in seen) == sorted(ids)
            assert all(e["type"] == "created" for e in seen)
            hello = await client.invoke("bridge:hello")
            assert "degraded" not in hello
            assert [c["id"] for c in await client.invoke("llm-config:list")] == ids
            assert failures >= 1
    finally:
        await served.close()


async def test_refresh_cache_retries_a_failed_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = BridgeOptions(data_dir=tmp_path, secrets=SecretOptions(backend=SecretBackend.FILE))
    first = await start_bridge(options)
    try:
        async with BridgeClient(first.url, first.token) as client:
            await client.create_config(openai_config("Kept"))
    finally:
        await first.close()
    failing = True
    real_load = SqliteConfigStore.load

    async def broken_until_fixed(self: SqliteConfigStore) -> Any:
        if failing:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return await real_load(self)

    monkeypatch.setattr(SqliteConfigStore, "load", broken_until_fixed)
    served = await start_bridge(options)
    try:
        async with BridgeClient(served.url, served.token) as client:
            assert (await client.invoke("bridge:hello"))["degraded"] == "load_failed"
            assert await client.invoke("llm-config:list") == []
            failing = False
            assert (await client.invoke("llm-config:refresh-cache"))["count"] == 1
            assert "degraded" not in await client.invoke("bridge:hello")
    finally:
        await served.close()


# ---- migration of a database written by the previous release --------------------------------


def copy_fixture(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "schema2", data)
    return data


async def test_schema_2_database_from_the_previous_release_is_migrated_and_serves(tmp_path: Path) -> None:
    data = copy_fixture(tmp_path)
    db = data / "bridge.db"
    store = SqliteConfigStore(db, poll_interval_s=0.05)
    await store.open()
    # Schema 2 logged positional BLOBs: rewritten value for value, none left undecodable.
    feed = await store.changes_since(0)
    assert feed.changes is not None
    assert [(c.revision, c.type.value, c.undecodable) for c in feed.changes] == [
        (1, "created", False),
        (2, "created", False),
        (3, "created", False),
        (4, "updated", False),
        (5, "deleted", False),
    ]
    key = load_data_key(data, SecretBackend.FILE, must_exist=True)
    svc = LlmConfigService(store, KeyCipher(key))
    try:
        views = await svc.list()
        assert [(v.custom_name, v.version) for v in views] == [
            ("Schema Two A (renamed)", 2),
            ("Schema Two B", 1),
        ]
        assert svc.quarantined() == []
        assert await svc.get_api_key(views[0].id) is not None
        assert not list(data.glob("bridge.db.pre-migration-*"))
        # The migrated file has the triggers: another program's edit is seen.
        events, arrived = recorder(svc)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("UPDATE configs SET use_auth_header = 0 WHERE id = ?", (views[1].id,))
        other.close()
        await asyncio.wait_for(arrived.wait(), TIMEOUT_S)
        assert [(e.type.value, e.id, e.revision) for e in events] == [("updated", views[1].id, 6)]
    finally:
        await svc.close()
        await store.close()
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA user_version").fetchone() == (sqlite_store.SCHEMA_VERSION,)
    check.close()


async def test_failed_migration_changes_nothing_and_keeps_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy_fixture(tmp_path)
    db = data / "bridge.db"
    before = sqlite3.connect(db)
    rows_before = before.execute("SELECT * FROM configs ORDER BY seq").fetchall()
    before.close()
    broken = dict(sqlite_store._TRIGGERS)
    broken["bridge_configs_insert"] = (
        "CREATE TRIGGER broken AFTER INSERT ON no_such_table BEGIN SELECT 1; END"
    )
    monkeypatch.setattr(sqlite_store, "_TRIGGERS", broken)
    store = SqliteConfigStore(db)
    with pytest.raises(sqlite3.OperationalError):
        await store.open()
    await store.close()
    after = sqlite3.connect(db)
    assert after.execute("PRAGMA user_version").fetchone() == (2,)
    assert after.execute("SELECT * FROM configs ORDER BY seq").fetchall() == rows_before
    after.close()
    [copy] = data.glob("bridge.db.pre-migration-*")
    kept = sqlite3.connect(copy)
    assert kept.execute("SELECT * FROM configs ORDER BY seq").fetchall() == rows_before
    kept.close()


def copy_schema_3_fixture(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "schema3", data)
    return data


async def test_schema_3_database_is_migrated_and_its_positional_change_log_still_feeds(
    tmp_path: Path,
) -> None:
    data = copy_schema_3_fixture(tmp_path)
    db = data / "bridge.db"
    before = sqlite3.connect(db)
    assert before.execute("PRAGMA user_version").fetchone() == (3,)
    assert before.execute("SELECT row FROM changes WHERE revision = 1").fetchone()[0].startswith("[")
    before.close()
    store = SqliteConfigStore(db, poll_interval_s=0.05)
    await store.open()
    try:
        state = await store.load()
        feed = await store.changes_since(0)
    finally:
        await store.close()
    assert not list(data.glob("bridge.db.pre-migration-*"))
    assert feed.changes is not None
    # Every entry written by schema 3 decodes, and the last one of each id is the table's row.
    assert [(c.revision, c.type.value, c.undecodable) for c in feed.changes] == [
        (1, "created", False),
        (2, "created", False),
        (3, "created", False),
        (4, "updated", False),
        (5, "deleted", False),
    ]
    by_revision = {c.revision: c.config for c in feed.changes}
    first, _, third, fourth, _ = (by_revision[r] for r in range(1, 6))
    assert first is not None
    assert third is not None
    assert fourth is not None
    assert (first.custom_name, first.version, first.revision) == ("Schema Three A", 1, 1)
    assert fourth == state.configs[0]
    assert third == state.configs[1]
    assert third.use_auth_header is False
    assert third.base_url == "http://127.0.0.1:9/v1"
    assert first.api_key_ct == fourth.api_key_ct  # the hex of the ciphertext, byte for byte
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA user_version").fetchone() == (sqlite_store.SCHEMA_VERSION,)
    assert all(
        row.startswith("{") for (row,) in check.execute("SELECT row FROM changes WHERE row IS NOT NULL")
    )
    check.close()
    # The migrated store serves through the service, keys open with the fixture's data key.
    store = SqliteConfigStore(db, poll_interval_s=0.05)
    await store.open()
    key = load_data_key(data, SecretBackend.FILE, must_exist=True)
    svc = LlmConfigService(store, KeyCipher(key))
    try:
        views = await svc.list()
        assert [(v.custom_name, v.version, v.use_auth_header) for v in views] == [
            ("Schema Three A (renamed)", 2, True),
            ("Schema Three C", 1, False),
        ]
        assert svc.quarantined() == []
        assert await svc.get_api_key(views[1].id) == "token-c"
        # Writes after the migration are logged in the new format and fed back.
        await svc.update(views[1].id, LlmConfigPatch.model_validate({"customName": "Schema Three C2"}))
        renamed = await svc.read(views[1].id)
        assert renamed is not None
        assert renamed.custom_name == "Schema Three C2"
    finally:
        await svc.close()
        await store.close()


async def test_failed_schema_3_migration_changes_nothing_and_keeps_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy_schema_3_fixture(tmp_path)
    db = data / "bridge.db"
    before = sqlite3.connect(db)
    log_before = before.execute("SELECT * FROM changes ORDER BY revision").fetchall()
    triggers_before = before.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    before.close()
    # Fault injection: the last step of the migration fails, after the log was rewritten.
    monkeypatch.setattr(
        sqlite_store, "_MIGRATE_TO_4", (*sqlite_store._MIGRATE_TO_4, "UPDATE no_such_table SET x = 1")
    )
    store = SqliteConfigStore(db)
    with pytest.raises(sqlite3.OperationalError):
        await store.open()
    await store.close()
    after = sqlite3.connect(db)
    assert after.execute("PRAGMA user_version").fetchone() == (3,)
    assert after.execute("SELECT * FROM changes ORDER BY revision").fetchall() == log_before
    assert (
        after.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        == triggers_before
    )
    after.close()
    [copy] = data.glob("bridge.db.pre-migration-*")
    kept = sqlite3.connect(copy)
    assert kept.execute("SELECT * FROM changes ORDER BY revision").fetchall() == log_before
    kept.close()
