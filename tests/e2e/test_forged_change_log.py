"""A collection's change log is untrusted: an entry the table contradicts is not applied (DESIGN §3).

Another program that writes into ``collections.db``'s log (a forged ``deleted`` of a live
item, or a row the table does not hold) must not take the item out of the cache, nor make
the collections referencing it write their references to null: the reader reloads the
table (the truth) instead, as the config store does (``bridge.storage.changelog.cross_check``).
Real SQLite files and PostgreSQL databases; an in-process bridge; the other program is a
plain ``sqlite3`` or ``asyncpg`` connection.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bridge.collection.postgres import PostgresCollectionStore
from bridge.collection.sqlite import SqliteCollectionStore
from tests.helpers.notes import Folder, Note, folders_and_notes
from tests.helpers.templates import running


def forge(path: Path, collection: str, item_id: str, kind: str, row: str | None) -> int:
    """Another program appends a log entry at the collection's next revision; return it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE revisions SET revision = revision + 1 WHERE collection = ?", (collection,))
        (revision,) = conn.execute(
            "SELECT revision FROM revisions WHERE collection = ?", (collection,)
        ).fetchone()
        conn.execute(
            "INSERT INTO changes (collection, revision, id, type, row) VALUES (?, ?, ?, ?, ?)",
            (collection, revision, item_id, kind, row),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return int(revision)


def forged_row(path: Path, item_id: str, revision: int, **fields: Any) -> str:
    """The item's stored row with ``fields`` changed, as a log entry at ``revision`` would hold it."""
    conn = sqlite3.connect(path)
    try:
        seq, data, created, updated, version = conn.execute(
            "SELECT seq, data, created_at, updated_at, version FROM items WHERE id = ?", (item_id,)
        ).fetchone()
    finally:
        conn.close()
    entry = {
        "id": item_id,
        "seq": seq,
        "data": {**json.loads(data), **fields},
        "created_at": created,
        "updated_at": updated,
        "version": version + 1,
        "revision": revision,
    }
    return json.dumps(entry)


async def test_a_forged_deletion_of_a_live_item_keeps_it_and_the_references_to_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, folders_and_notes()) as served:
        folders, notes = served.collections["folder"], served.collections["note"]
        folder = await folders.create(Folder(title="Work"))
        note = await notes.create(Note(text="x", folder=folder.id))
        sent: list[Any] = []
        folders.events.subscribe(sent.append)
        forge(data / "collections.db", "folder", folder.id, "deleted", None)
        # This process's next write reads the log up to it (the follower may have already).
        await folders.create(Folder(title="Other"))
        await folders.events.settle()
        assert folders.read(folder.id) == folder
        assert (notes.read(note.id).folder, notes.read(note.id).version) == (folder.id, 1)
        assert ("deleted", folder.id) not in [(e.type.value, e.id) for e in sent]
        revision, items = await served.collection_store.load("folder")  # type: ignore[union-attr]
        assert [i.id for i in items] == [v.id for v in folders.list()]
        assert folders.revision == revision


async def test_a_forged_row_the_table_does_not_hold_is_not_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = data / "collections.db"
    async with running(data, folders_and_notes()) as served:
        folders = served.collections["folder"]
        folder = await folders.create(Folder(title="Work"))
        revision = folders.revision + 1
        forge(path, "folder", folder.id, "updated", forged_row(path, folder.id, revision, title="Forged"))
        await folders.create(Folder(title="Other"))
        assert folders.read(folder.id).title == "Work"


async def test_the_sqlite_feed_marks_an_entry_the_table_contradicts(tmp_path: Path) -> None:
    path = tmp_path / "collections.db"
    store = SqliteCollectionStore(path)
    await store.open()
    try:
        item_id = str(uuid.uuid4())
        feed = await store.insert(
            "folder", item_id, {"title": "Work"}, keys=[], now="2026-01-01T00:00:00.000Z", since=0
        )
        forge(path, "folder", item_id, "deleted", None)
        (change,) = (await store.changes_since("folder", feed.revision)).changes or []
        assert (change.id, change.kind, change.undecodable) == (item_id, "deleted", True)
        # A deletion the table agrees with is applied as logged.
        await store.delete("folder", item_id, None, feed.revision + 1)
        (honest,) = (await store.changes_since("folder", feed.revision + 1)).changes or []
        assert (honest.kind, honest.undecodable) == ("deleted", False)
    finally:
        await store.close()


async def test_the_postgresql_feed_marks_an_entry_the_table_contradicts(pg_dsn: str) -> None:
    store = PostgresCollectionStore(pg_dsn)
    await store.open()
    try:
        item_id = str(uuid.uuid4())
        collection = f"folder-{uuid.uuid4().hex[:8]}"
        feed = await store.insert(
            collection, item_id, {"title": "Work"}, keys=[], now="2026-01-01T00:00:00.000Z", since=0
        )
        conn = await asyncpg.connect(pg_dsn)
        try:
            async with conn.transaction():
                forged = await conn.fetchval(
                    "UPDATE bridge_collection_revisions SET revision = revision + 1 WHERE collection = $1 "
                    "RETURNING revision",
                    collection,
                )
                await conn.execute(
                    "INSERT INTO bridge_collection_changes (collection, revision, id, type, row) "
                    "VALUES ($1, $2, $3, 'deleted', NULL)",
                    collection,
                    forged,
                    item_id,
                )
        finally:
            await conn.close()
        (change,) = (await store.changes_since(collection, feed.revision)).changes or []
        assert (change.id, change.kind, change.undecodable) == (item_id, "deleted", True)
    finally:
        await store.close()
