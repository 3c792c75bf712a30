"""A change log with a hole is not a feed: the config store's readers reload, as a collection's do.

Revisions are gap-free (DESIGN §3), so a feed whose entries skip a revision has lost a
change (another program deleted a log row, or wrote one under a wrong revision). Applying
the rest would leave the cache behind the table for good; the reader reloads the table
(the truth) instead: the one rule of :func:`bridge.storage.changelog.build_feed`.
Real SQLite file and PostgreSQL database; the other program is a plain ``sqlite3`` or
``asyncpg`` connection.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import asyncpg

from bridge.keystore import DataKey, KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigInput
from bridge.service import LlmConfigService
from bridge.storage import SqliteConfigStore, StoredConfig, protocol
from bridge.storage.postgres import PostgresConfigStore
from tests.conftest import OPENAI_KEY, openai_config
from tests.integration.test_service_state import assert_cache_equals_store, recorder


def make(name: str) -> LlmConfigInput:
    return LlmConfigInput.model_validate(openai_config(name))


async def open_service(data_dir: Path) -> tuple[LlmConfigService, SqliteConfigStore]:
    """A service on a fresh file, not following it: only its own writes read the log."""
    store = SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    key = load_data_key(data_dir, SecretBackend.FILE, must_exist=False)
    return LlmConfigService(store, KeyCipher(key), watch=False), store


def row(name: str) -> StoredConfig:
    """A valid stored config named ``name`` (version 1)."""
    cipher = KeyCipher(DataKey(b"k" * 32, "file"))
    config_id = str(uuid.uuid4())
    now = "2026-01-01T00:00:00.000Z"
    return StoredConfig(
        id=config_id,
        custom_name=name,
        name_key=name.casefold(),
        provider="openai",
        api_key_ct=cipher.encrypt(OPENAI_KEY, config_id),
        api_key_preview="sk-...890",
        base_url=None,
        use_auth_header=True,
        created_at=now,
        updated_at=now,
        version=1,
    )


def rename_behind_a_hole(path: Path, first: str, second: str) -> None:
    """Another program renames ``first`` then ``second`` in one transaction and drops the first's log row."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for config_id, name in ((first, "First renamed"), (second, "Second renamed")):
            conn.execute(
                "UPDATE configs SET custom_name = ?, name_key = ? WHERE id = ?",
                (name, name.casefold(), config_id),
            )
        (hole,) = conn.execute(
            "SELECT MIN(revision) FROM changes WHERE id = ? AND type = 'updated'", (first,)
        ).fetchone()
        conn.execute("DELETE FROM changes WHERE revision = ?", (hole,))
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_write_whose_feed_skips_a_revision_reloads_and_sends_the_lost_change(tmp_path: Path) -> None:
    svc, store = await open_service(tmp_path)
    try:
        first = await svc.create(make("First"))
        second = await svc.create(make("Second"))
        rename_behind_a_hole(store.path, first.id, second.id)
        events = recorder(svc)
        await svc.create(make("Third"))
        assert (await svc.read(first.id)).custom_name == "First renamed"  # type: ignore[union-attr]
        assert (await svc.read(second.id)).custom_name == "Second renamed"  # type: ignore[union-attr]
        assert {(e.type.value, e.id) for e in events} >= {("updated", first.id), ("updated", second.id)}
        await assert_cache_equals_store(svc)
    finally:
        await svc.close()
        await store.close()


async def test_a_catch_up_whose_log_skips_a_revision_reports_no_changes(tmp_path: Path) -> None:
    svc, store = await open_service(tmp_path)
    try:
        first = await svc.create(make("First"))
        second = await svc.create(make("Second"))
        since = svc.cache_info().revision
        rename_behind_a_hole(store.path, first.id, second.id)
        feed = await store.changes_since(since)
        assert feed.changes is None  # the reader reloads
        assert feed.revision == since + 2
    finally:
        await svc.close()
        await store.close()


def test_contiguous_entries_are_exactly_the_revisions_after_since_up_to_upto() -> None:
    def entries(*revisions: int) -> list[protocol.LogEntry]:
        return [(r, "updated", "id", None) for r in revisions]

    assert protocol.log_is_whole(entries(3, 4, 5), 2, 5)
    assert protocol.log_is_whole([], 5, 5)
    assert not protocol.log_is_whole(entries(3, 5), 2, 5)
    assert not protocol.log_is_whole(entries(3, 4), 2, 5)
    assert not protocol.log_is_whole(entries(3, 3, 4), 2, 4)
    assert not protocol.log_is_whole([("3", "updated", "id", None)], 2, 3)


async def test_a_postgresql_catch_up_whose_log_skips_a_revision_reports_no_changes(pg_dsn: str) -> None:
    store = PostgresConfigStore(pg_dsn, check_interval_s=30)
    await store.open()
    try:
        since = (await store.load()).revision
        rows = [row(f"Gap {n} {uuid.uuid4()}") for n in range(3)]
        for n, each in enumerate(rows):
            await store.insert(each, since + n)
        conn = await asyncpg.connect(pg_dsn)
        try:  # the middle one: the log still reaches back to since + 1
            await conn.execute("DELETE FROM bridge_changes WHERE revision = $1", since + 2)
        finally:
            await conn.close()
        assert (await store.changes_since(since)).changes is None  # the reader reloads
        whole = await store.changes_since(since + 2)  # nothing missing after the hole
        assert [c.id for c in whole.changes or []] == [rows[2].id]
    finally:
        await store.close()
