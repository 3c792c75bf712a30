"""The collections' SQLite store and service on a real file: DB-side checks, revisions, feed, reload."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.collection.service import CollectionService
from bridge.collection.sqlite import SqliteCollectionStore
from bridge.errors import DuplicateConfigNameError, SchemaTooNewError, VersionConflictError
from bridge.keystore import DataKey, KeyCipher
from tests.helpers.templates import load_example

CIPHER = KeyCipher(DataKey(b"k" * 32, "file"))
NOW = "2026-01-01T00:00:00.000Z"


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteCollectionStore, SqliteCollectionStore]]:
    """Two stores (two connections, as two processes have) on one file."""
    path = tmp_path / "collections.db"
    first, second = SqliteCollectionStore(path), SqliteCollectionStore(path)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def service(store: SqliteCollectionStore) -> CollectionService:
    """The example's prompt-template service on ``store``, not following it (tests drive it)."""
    return CollectionService(load_example().PROMPT_TEMPLATES.rules, store, CIPHER, watch=False)


def template(name: str) -> Any:
    return load_example().PromptTemplate(name=name, template="t")


async def test_unique_keys_are_enforced_by_the_database(
    stores: tuple[SqliteCollectionStore, SqliteCollectionStore],
) -> None:
    first, second = stores
    await first.insert("c", str(uuid.uuid4()), {"name": "A"}, keys=[("name", "a")], now=NOW, since=0)
    with pytest.raises(DuplicateConfigNameError) as raised:
        await second.insert("c", str(uuid.uuid4()), {"name": "a"}, keys=[("name", "a")], now=NOW, since=0)
    assert raised.value.context == {"field": "name"}
    # Another collection has keys of its own.
    await second.insert("d", str(uuid.uuid4()), {"name": "a"}, keys=[("name", "a")], now=NOW, since=0)
    revision, items = await first.load("c")
    assert revision == 1
    assert len(items) == 1


async def test_versions_are_checked_and_revisions_are_gap_free_per_collection(
    stores: tuple[SqliteCollectionStore, SqliteCollectionStore],
) -> None:
    first, second = stores
    item_id = str(uuid.uuid4())
    await first.insert("c", item_id, {"name": "A"}, keys=[], now=NOW, since=0)
    feed = await second.update(
        "c", item_id, {"name": "B"}, keys=[], now=NOW, base_version=1, expected_version=1, since=0
    )
    assert feed.revision == 2
    assert feed.changes is not None
    assert [(c.revision, c.kind) for c in feed.changes] == [(1, "created"), (2, "updated")]
    assert feed.changes[-1].item is not None
    assert feed.changes[-1].item.version == 2
    with pytest.raises(VersionConflictError):
        await first.update(
            "c", item_id, {"name": "C"}, keys=[], now=NOW, base_version=2, expected_version=1, since=2
        )
    with pytest.raises(VersionConflictError):
        await first.delete("c", item_id, 1, since=2)
    await first.insert("other", str(uuid.uuid4()), {}, keys=[], now=NOW, since=0)
    assert await first.delete("c", item_id, 2, since=2) is not None
    assert await first.delete("c", item_id, None, since=3) is None
    with sqlite3.connect(first.path) as db:
        logged = [
            r[0] for r in db.execute("SELECT revision FROM changes WHERE collection = 'c' ORDER BY revision")
        ]
        counters = dict(db.execute("SELECT collection, revision FROM revisions"))
    db.close()
    assert logged == [1, 2, 3]
    assert counters == {"c": 3, "other": 1}


async def test_a_reader_behind_the_log_reloads_and_publishes_every_difference(
    stores: tuple[SqliteCollectionStore, SqliteCollectionStore],
) -> None:
    first, second = stores
    writer, reader = service(first), service(second)
    await writer.start()
    await reader.start()
    seen: list[Any] = []
    reader.events.subscribe(seen.append)
    made = [await writer.create(template(f"T{i}")) for i in range(3)]
    await writer.delete(made[0].id)
    with sqlite3.connect(first.path) as db:
        db.execute("DELETE FROM changes")  # as a trim would, past the reader
    db.close()
    own = await reader.create(template("Mine"))
    assert [v.id for v in reader.list()] == [made[1].id, made[2].id, own.id]
    assert reader.revision == 5
    assert {(e.type.value, e.id) for e in seen} == {
        ("created", made[1].id),
        ("created", made[2].id),
        ("created", own.id),
    }
    await writer.close()
    await reader.close()


async def test_an_undecodable_log_entry_makes_the_reader_reload_from_the_table(
    stores: tuple[SqliteCollectionStore, SqliteCollectionStore],
) -> None:
    first, second = stores
    writer, reader = service(first), service(second)
    await writer.start()
    await reader.start()
    made = await writer.create(template("A"))
    with sqlite3.connect(first.path) as db:
        db.execute("UPDATE changes SET row = '{\"id\": 5}'")
    db.close()
    await reader.create(template("B"))
    assert [v.name for v in reader.list()] == ["A", "B"]
    assert reader.read(made.id) == made
    await writer.close()
    await reader.close()


async def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "collections.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    before = path.read_bytes()
    store = SqliteCollectionStore(path)
    with pytest.raises(SchemaTooNewError):
        await store.open()
    await store.close()
    assert path.read_bytes() == before


async def test_the_log_is_trimmed_and_a_reader_behind_it_reloads(
    stores: tuple[SqliteCollectionStore, SqliteCollectionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small figures so that a few writes trim (the real ones: every 1000, keep 10,000).
    monkeypatch.setattr("bridge.collection.protocol.TRIM_EVERY", 4)
    monkeypatch.setattr("bridge.collection.protocol.CHANGE_LOG_KEEP", 3)
    first, second = stores
    writer, reader = service(first), service(second)
    await writer.start()
    await reader.start()
    made = [await writer.create(template(f"T{i}")) for i in range(8)]
    with sqlite3.connect(first.path) as db:
        logged = [r[0] for r in db.execute("SELECT revision FROM changes ORDER BY revision")]
    db.close()
    assert logged == [6, 7, 8]  # trimmed at revision 4 (≤ 1) and 8 (≤ 5): the last 3 kept
    seen: list[Any] = []
    reader.events.subscribe(seen.append)
    await reader.delete(made[0].id)  # its own write: the log no longer reaches revision 0
    assert [v.id for v in reader.list()] == [m.id for m in made[1:]]
    assert reader.revision == 9
    assert sorted(e.id for e in seen if e.type.value == "created") == sorted(m.id for m in made[1:])
    await writer.close()
    await reader.close()


async def test_a_damaged_file_is_moved_aside_with_its_bytes_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "collections.db"
    path.write_bytes(b"this is not a database" * 100)
    store = SqliteCollectionStore(path)
    await store.open()
    try:
        assert store.recovered_from is not None
        assert Path(store.recovered_from).read_bytes() == b"this is not a database" * 100
        assert await store.load("c") == (0, [])
        await store.insert("c", str(uuid.uuid4()), {}, keys=[], now=NOW, since=0)
    finally:
        await store.close()
