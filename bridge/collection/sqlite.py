"""``SqliteCollectionStore``: every collection's items in ``<data-dir>/collections.db``.

A file of its own beside ``bridge.db``: the llm-config schema (its version, migrations,
``bridge doctor`` and ``rotate-key``) stays as it is, and a collection never shares a
transaction with a config. The pragmas are ``bridge.db``'s (DESIGN §3): WAL,
``synchronous=FULL``, ``busy_timeout`` 5 s, every write in ``BEGIN IMMEDIATE``. All SQLite
work runs on one thread so the event loop never blocks on disk.

Tables: ``items`` (one row per item, fields as a JSON object, ``UNIQUE (collection,
id)``), ``item_keys`` (the unique keys: ``PRIMARY KEY (collection, field, key)``, so the
database refuses a duplicate whoever writes), ``revisions`` (one gap-free counter per
collection) and ``changes`` (the log other processes follow after ``PRAGMA
data_version`` moves). What the SQL means is :mod:`bridge.collection.protocol`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

import structlog

from bridge.collection import protocol
from bridge.collection.protocol import Change, Feed, StoredItem
from bridge.keystore import KEY_ID_BYTES
from bridge.models import ChangeType
from bridge.storage import changelog
from bridge.storage.sqlite import (
    close_on,
    open_healthy,
    open_on,
    open_prepared,
    prepare,
    probe_version,
    read_only,
    run_on,
    write_transaction,
)

T = TypeVar("T")
log = structlog.get_logger(__name__)

COLLECTIONS_DB_FILE_NAME: Final = "collections.db"
SCHEMA_VERSION: Final = 1
"""``PRAGMA user_version`` of the schema below."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    revision INTEGER NOT NULL,
    UNIQUE (collection, id)
);
CREATE TABLE IF NOT EXISTS item_keys (
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    key TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (collection, field, key)
);
CREATE INDEX IF NOT EXISTS item_keys_by_id ON item_keys (collection, id);
CREATE TABLE IF NOT EXISTS revisions (
    collection TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    collection TEXT NOT NULL,
    revision INTEGER NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    row TEXT,
    PRIMARY KEY (collection, revision)
);
"""
_EXAMINE: Final = f"SELECT collection, {', '.join(protocol.ITEM_COLUMNS)} FROM items ORDER BY seq"  # noqa: S608 - fixed names
_SELECT: Final = f"SELECT {', '.join(protocol.ITEM_COLUMNS)} FROM items"  # noqa: S608 - fixed column names
_JOINED: Final = ", ".join(f"i.{name}" for name in protocol.ITEM_COLUMNS)
"""The item columns of a change-log read joined with the table (alias ``i``)."""


class SqliteCollectionStore(protocol.CollectionStore):
    """Items of every collection in one SQLite file, shared safely by several processes.

    Args:
        path: the database file (``<data-dir>/collections.db``); created 0600.
        poll_interval_s: how often a follower should poll :meth:`data_version`, in seconds.
    """

    def __init__(self, path: Path, *, poll_interval_s: float = 0.2) -> None:
        """Configure the store; nothing touches the disk until :meth:`open`."""
        self.path = path
        self.poll_interval_s = poll_interval_s
        self.recovered_from: str | None = None
        """Where a damaged file was moved at :meth:`open` (``collections.db.corrupt-<UTC stamp>``)."""
        self._conn: sqlite3.Connection | None = None
        self._probe: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collections-store")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await run_on(self._executor, self._conn, fn)

    async def open(self) -> None:
        """Create or open the file and its schema.

        Raises:
            SchemaTooNewError: the file was written by a newer bridge (left untouched).
            sqlite3.DatabaseError: the file is not a usable database.
        """
        self._conn = await open_on(self._executor, self._open_sync)
        self._probe = read_only(self.path, wait_s=0, any_thread=True)

    def _open_sync(self) -> sqlite3.Connection:
        """Open the file; a damaged one is moved aside (bytes kept) and replaced, as ``bridge.db`` is."""
        return open_healthy(self.path, lambda: open_prepared(self.path, self._prepare), self._moved)

    def _moved(self, moved_to: str, reason: str) -> None:
        self.recovered_from = moved_to
        log.error("collections_store_quarantined", path=str(self.path), moved_to=moved_to, reason=reason)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Refuse a newer schema, set the pragmas (``storage.sqlite.prepare``), create the schema."""
        if prepare(conn, self.path, SCHEMA_VERSION) < SCHEMA_VERSION:
            with write_transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def close(self) -> None:
        """Close the connections and the thread; idempotent."""
        conn, self._conn = self._conn, None
        probe, self._probe = self._probe, None
        await close_on(self._executor, conn, probe)

    def data_version(self) -> int:
        """``PRAGMA data_version`` of a connection of its own: moves with every commit, ours included.

        Cheap (no disk read), run on the event loop. -1 when the probe fails (counts as moved).
        """
        version = probe_version(self._probe)
        return -1 if version is None else version

    # ---- reads --------------------------------------------------------------------

    async def load(self, collection: str) -> tuple[int, list[StoredItem]]:
        """Return the collection's revision and every item in creation order (one read transaction)."""

        def work(conn: sqlite3.Connection) -> tuple[int, list[StoredItem]]:
            conn.execute("BEGIN")
            try:
                revision = _revision(conn, collection)
                rows = conn.execute(f"{_SELECT} WHERE collection = ? ORDER BY seq", (collection,)).fetchall()
            finally:
                conn.execute("COMMIT")
            return revision, [protocol.make_item(tuple(r)) for r in rows]

        return await self._run(work)

    async def changes_since(self, collection: str, since: int) -> Feed[StoredItem]:
        """Return the changes after revision ``since`` (``changes`` None: the log does not reach it)."""

        def work(conn: sqlite3.Connection) -> Feed[StoredItem]:
            conn.execute("BEGIN")
            try:
                revision = _revision(conn, collection)
                return _feed(conn, collection, since, revision, None)
            finally:
                conn.execute("COMMIT")

        return await self._run(work)

    async def has_ciphertexts(self) -> bool:
        """True when any item holds a secret (the data key that sealed it must not be lost)."""
        return bool(await self.key_ids())

    async def key_ids(self) -> set[bytes]:
        """The ids of the data keys naming any stored secret, in every collection."""

        def work(conn: sqlite3.Connection) -> set[bytes]:
            found: set[bytes] = set()
            for (data,) in conn.execute("SELECT data FROM items WHERE data LIKE '%$sealed%'"):
                found |= protocol.key_ids_of(protocol.decode_data(data), KEY_ID_BYTES)
            return found

        return await self._run(work)

    async def reseal(self, seal: protocol.Resealer) -> int:
        """Seal every secret again with ``seal``, in one transaction; return the items rewritten.

        Each rewritten item is a write (its collection's next revision, ``version + 1``,
        logged): running servers publish it as ``updated``.
        """

        def work(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                rows = conn.execute(
                    f"SELECT collection, {', '.join(protocol.ITEM_COLUMNS)} FROM items ORDER BY seq"  # noqa: S608 - fixed names
                ).fetchall()
                count = 0
                for collection, *values in rows:
                    item = protocol.make_item(tuple(values))
                    data = protocol.reseal_data(collection, item, seal)
                    if data is None:
                        continue
                    again = protocol.rewritten(item, data, _bump(conn, collection))
                    conn.execute(
                        "UPDATE items SET data = ?, version = ?, revision = ? "
                        "WHERE collection = ? AND id = ?",
                        (protocol.encode_data(data), again.version, again.revision, collection, item.id),
                    )
                    _log(conn, collection, Change(again.revision, item.id, ChangeType.UPDATED, again))
                    count += 1
            return count

        return await self._run(work)

    # ---- writes -------------------------------------------------------------------

    async def _insert(self, op: protocol.ItemWrite) -> Feed[StoredItem]:
        collection, item_id, now = op.collection, op.item_id, op.now

        def work(conn: sqlite3.Connection) -> Feed[StoredItem]:
            def write() -> StoredItem:
                revision = _bump(conn, collection)
                _insert_keys(conn, collection, item_id, op.keys)
                cursor = conn.execute(
                    "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "
                    "VALUES (?, ?, ?, ?, ?, 1, ?)",
                    (collection, item_id, protocol.encode_data(op.data), now, now, revision),
                )
                return protocol.created_item(item_id, int(cursor.lastrowid or 0), op.data, now, revision)

            return _transaction(conn, collection, op.since, ChangeType.CREATED, write)

        return await self._run(work)

    async def _update(self, op: protocol.ItemWrite) -> Feed[StoredItem]:
        collection, item_id = op.collection, op.item_id

        def work(conn: sqlite3.Connection) -> Feed[StoredItem]:
            def write() -> StoredItem:
                found = conn.execute(
                    f"{_SELECT} WHERE collection = ? AND id = ?", (collection, item_id)
                ).fetchone()
                protocol.check_write(
                    item_id, None if found is None else found[5], op.expected_version, op.base_version
                )
                item = protocol.rewritten(
                    protocol.make_item(tuple(found)), op.data, _bump(conn, collection), op.now
                )
                conn.execute("DELETE FROM item_keys WHERE collection = ? AND id = ?", (collection, item_id))
                _insert_keys(conn, collection, item_id, op.keys)
                conn.execute(
                    "UPDATE items SET data = ?, updated_at = ?, version = ?, revision = ? "
                    "WHERE collection = ? AND id = ?",
                    (protocol.encode_data(op.data), op.now, item.version, item.revision, collection, item_id),
                )
                return item

            return _transaction(conn, collection, op.since, ChangeType.UPDATED, write)

        return await self._run(work)

    async def _delete(self, op: protocol.ItemDelete) -> Feed[StoredItem] | None:
        collection, item_id = op.collection, op.item_id

        def work(conn: sqlite3.Connection) -> Feed[StoredItem] | None:
            with write_transaction(conn):
                found = conn.execute(
                    "SELECT version FROM items WHERE collection = ? AND id = ?", (collection, item_id)
                ).fetchone()
                protocol.check_write(item_id, None if found is None else found[0], op.expected_version, None)
                if found is None:
                    return None
                revision = _bump(conn, collection)
                conn.execute("DELETE FROM item_keys WHERE collection = ? AND id = ?", (collection, item_id))
                conn.execute("DELETE FROM items WHERE collection = ? AND id = ?", (collection, item_id))
                own: Change[StoredItem] = Change(revision, item_id, ChangeType.DELETED, None)
                _log(conn, collection, own)
                return _feed(conn, collection, op.since, revision, own)

        return await self._run(work)


# ---- SQL helpers (run on the store's thread, inside the caller's transaction) --------------


def _revision(conn: sqlite3.Connection, collection: str) -> int:
    """The collection's revision: its counter row, else (row lost) :func:`~protocol.recovered_revision`."""
    row = conn.execute("SELECT revision FROM revisions WHERE collection = ?", (collection,)).fetchone()
    if row is not None:
        return int(row[0])
    logged, stored = conn.execute(
        "SELECT (SELECT MAX(revision) FROM changes WHERE collection = ?1), "
        "(SELECT MAX(revision) FROM items WHERE collection = ?1)",
        (collection,),
    ).fetchone()
    return protocol.recovered_revision(logged, stored)


def _bump(conn: sqlite3.Connection, collection: str) -> int:
    """Take the collection's next revision (gap-free: the transaction holds the write lock)."""
    revision = _revision(conn, collection) + 1
    conn.execute(
        "INSERT INTO revisions (collection, revision) VALUES (?, ?) "
        "ON CONFLICT (collection) DO UPDATE SET revision = excluded.revision",
        (collection, revision),
    )
    return revision


def _insert_keys(
    conn: sqlite3.Connection, collection: str, item_id: str, keys: list[tuple[str, str]]
) -> None:
    for field, key in keys:
        try:
            conn.execute(
                "INSERT INTO item_keys (collection, field, key, id) VALUES (?, ?, ?, ?)",
                (collection, field, key, item_id),
            )
        except sqlite3.IntegrityError:
            raise protocol.duplicate_key(collection, field) from None


def _log(conn: sqlite3.Connection, collection: str, own: Change[StoredItem]) -> None:
    conn.execute(
        "INSERT INTO changes (collection, revision, id, type, row) VALUES (?, ?, ?, ?, ?)",
        (collection, own.revision, own.id, own.kind.value, protocol.logged_row(own)),
    )
    below = protocol.trim_below(own.revision)
    if below is not None:
        conn.execute("DELETE FROM changes WHERE collection = ? AND revision <= ?", (collection, below))


def _feed(
    conn: sqlite3.Connection,
    collection: str,
    since: int,
    revision: int,
    own: Change[StoredItem] | None,
) -> Feed[StoredItem]:
    """Changes after ``since``: the log's window, each entry with its id's item in the table (the join).

    What it means is :func:`bridge.storage.changelog.build_feed`'s (the change log's rules).
    """
    window = changelog.log_window(since, revision, own)
    if window is None:
        return changelog.build_feed(protocol.ITEM_LOG, [], {}, revision=revision, own=own)
    (oldest,) = conn.execute(
        "SELECT MIN(revision) FROM changes WHERE collection = ?", (collection,)
    ).fetchone()
    rows = conn.execute(
        f"SELECT c.revision, c.type, c.id, c.row, {_JOINED} FROM changes c "  # noqa: S608 - fixed names
        "LEFT JOIN items i ON i.collection = c.collection AND i.id = c.id "
        "WHERE c.collection = ? AND c.revision > ? AND c.revision <= ? ORDER BY c.revision",
        (collection, *window),
    ).fetchall()
    return changelog.build_feed(
        protocol.ITEM_LOG,
        [r[:4] for r in rows],
        {r[4]: protocol.make_item(tuple(r[4:])) for r in rows if r[4] is not None},
        revision=revision,
        own=own,
        window=window,
        oldest=oldest,
    )


def _transaction(
    conn: sqlite3.Connection, collection: str, since: int, kind: ChangeType, write: Callable[[], StoredItem]
) -> Feed[StoredItem]:
    with write_transaction(conn):
        item = write()
        own = Change(item.revision, item.id, kind, item)
        _log(conn, collection, own)
        return _feed(conn, collection, since, item.revision, own)


def examine_collections(path: Path) -> tuple[int, list[tuple[str, StoredItem]]]:
    """Read ``collections.db`` on a read-only connection (``bridge doctor``), changing no byte.

    Returns:
        ``(schema version, [(collection, item)] in creation order)``.

    Raises:
        sqlite3.DatabaseError: the file is not a database, or ``quick_check`` fails.
    """
    conn = read_only(path)
    try:
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        rows = conn.execute(_EXAMINE).fetchall()
    finally:
        conn.close()
    return int(version), [(collection, protocol.make_item(tuple(values))) for collection, *values in rows]
