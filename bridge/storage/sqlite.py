"""``SqliteConfigStore``: the embedded default store (standard-library ``sqlite3``).

WAL, ``synchronous=FULL``, ``busy_timeout`` 5 s, every write in ``BEGIN IMMEDIATE``,
``PRAGMA quick_check`` on open (DESIGN §3). All SQLite work runs on one dedicated thread
so the event loop never blocks on disk. Several processes may share the file: the
unique ``name_key`` index, existence, ``expectedVersion`` and version + 1 are checked in
the write transaction, and each write bumps the ``revision`` counter row by exactly one
and appends to the ``changes`` log, which other processes read after noticing
``PRAGMA data_version`` move.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
import structlog

from bridge.errors import (
    ConfigNotFoundError,
    DuplicateConfigNameError,
    SchemaTooNewError,
    VersionConflictError,
)
from bridge.models import ChangeType
from bridge.storage.base import COLUMNS, Change, Mutation, StoredConfig, StoreState, WriteOutcome, row_values

log = structlog.get_logger(__name__)

T = TypeVar("T")

DB_FILE_NAME: Final = "bridge.db"
SCHEMA_VERSION: Final = 2
"""``PRAGMA user_version`` of the schema below; 1 lacked ``configs.revision``."""
BUSY_TIMEOUT_MS: Final = 5000
CHANGE_LOG_KEEP: Final = 10_000
"""Changes kept in the log; a process further behind reloads everything."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS configs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    custom_name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    api_key_ct BLOB NOT NULL,
    api_key_preview TEXT NOT NULL,
    base_url TEXT,
    use_auth_header INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    row BLOB
);
"""
_COLUMNS: Final = ", ".join(COLUMNS)
_MIGRATE_1_TO_2 = (
    "ALTER TABLE configs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE changes ADD COLUMN row BLOB",
    (
        "UPDATE configs SET revision = COALESCE("
        "(SELECT MAX(c.revision) FROM changes c WHERE c.id = configs.id), 0)"
    ),
)


def _row(values: tuple[Any, ...]) -> StoredConfig:
    (cid, name, key, provider, ct, preview, url, auth, created, updated, version, revision) = values
    return StoredConfig(
        id=str(cid),
        custom_name=str(name),
        name_key=str(key),
        provider=str(provider),
        api_key_ct=bytes(ct),
        api_key_preview=str(preview),
        base_url=None if url is None else str(url),
        use_auth_header=bool(auth),
        created_at=str(created),
        updated_at=str(updated),
        version=int(version),
        revision=int(revision),
    )


def _rows(fetched: list[tuple[Any, ...]]) -> list[StoredConfig]:
    """Build rows straight from SQLite's values (the load path: 10,000 rows at start-up).

    The columns' declared types (TEXT, BLOB, INTEGER) already give ``str``, ``bytes`` and
    ``int``, so only the boolean needs converting. The provider names are shared, and so
    is ``updated_at`` when it equals ``created_at`` (as on every config never updated):
    fewer objects per cached config.
    """
    providers = _PROVIDER_NAMES
    return [
        StoredConfig(
            cid,
            name,
            key,
            providers.get(provider, provider),
            ct,
            preview,
            url,
            auth == 1,
            created,
            created if updated == created else updated,
            version,
            revision,
        )
        for (cid, name, key, provider, ct, preview, url, auth, created, updated, version, revision) in fetched
    ]


_PROVIDER_NAMES: dict[str, str] = {name: name for name in ("openai", "anthropic", "google", "custom")}


def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    """True for lock contention (another process holds the file), which is not damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED} or "locked" in str(exc)


def _is_name_conflict(exc: sqlite3.IntegrityError) -> bool:
    return "configs.name_key" in str(exc)


class SqliteConfigStore:
    """The :class:`~bridge.storage.base.ConfigStore` on one SQLite file.

    Args:
        path: the database file (``<data-dir>/bridge.db``); created with its directory.
        poll_interval_s: how often ``wait_for_change`` polls ``PRAGMA data_version``, in
            seconds (DESIGN §3: other processes' commits are noticed within 1 s).
    """

    def __init__(self, path: Path, *, poll_interval_s: float = 0.2) -> None:
        """Configure the store; nothing touches the disk until :meth:`open`."""
        self.path = path
        self.poll_interval_s = poll_interval_s
        self.recovered_from: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._data_version = 0

    # ---- plumbing -------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    def _connect(self) -> sqlite3.Connection:
        # A new database file is created 0600 first; SQLite gives its -wal and -shm the
        # database file's mode. Config names and URLs are nobody else's business.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Refuse a newer schema, set the pragmas of DESIGN §3, create or migrate the schema.

        The version is checked before ``journal_mode`` is set: a file from a newer bridge
        is left byte-for-byte untouched.
        """
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (user_version,) = conn.execute("PRAGMA user_version").fetchone()
        if user_version > SCHEMA_VERSION:
            raise SchemaTooNewError(self.path, user_version)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        if user_version < SCHEMA_VERSION:
            self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema or migrate it to :data:`SCHEMA_VERSION` in one transaction.

        The version is read again under the write lock: another process may have
        migrated the file between our first look and ``BEGIN IMMEDIATE``.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            (user_version,) = conn.execute("PRAGMA user_version").fetchone()
            if user_version == 0:
                # executescript() would COMMIT first: run the statements one by one.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
            elif user_version == 1:
                for statement in _MIGRATE_1_TO_2:
                    conn.execute(statement)
                log.info("store_migrated", path=str(self.path), from_version=1, to_version=2)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _quarantine(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm", "-journal"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.replace(f"{target}{suffix}")
        return str(target)

    def _damage(self) -> str | None:
        """Return why the existing file is unusable, or None when it is healthy or absent.

        ``PRAGMA quick_check`` runs on a read-only connection: a read-write connection to a
        damaged file may delete its ``-wal`` on close or checkpoint WAL frames into it,
        and the quarantined copy must keep the original bytes.

        Raises:
            sqlite3.OperationalError: the file is locked or busy (not damage: never moved).
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        try:
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except sqlite3.DatabaseError as exc:
            return f"unreadable ({type(exc).__name__})"
        try:
            (result,) = conn.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise
            return f"not a database or malformed ({type(exc).__name__})"
        finally:
            conn.close()
        return None if result == "ok" else "quick_check failed"

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        reason = self._damage()
        if reason is None:
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                # Only damage is quarantined; a lock, an I/O error or a failed migration
                # is raised and leaves the file where it is.
                if getattr(exc, "sqlite_errorcode", None) not in {
                    sqlite3.SQLITE_CORRUPT,
                    sqlite3.SQLITE_NOTADB,
                }:
                    raise
                reason = f"failed to open ({type(exc).__name__})"
        # Keep the bytes, start empty (DESIGN §3).
        self.recovered_from = self._quarantine()
        log.error("store_quarantined", path=str(self.path), moved_to=self.recovered_from, reason=reason)
        return self._connect()

    async def open(self) -> None:
        """Open or create the database; a corrupt one is moved aside and replaced."""
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._open_sync)
        self._data_version = await self._run(_data_version)

    async def close(self) -> None:
        """Close the connection and its thread; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        # Joining the store thread must not block the event loop.
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    # ---- reads ----------------------------------------------------------------------

    async def has_ciphertexts(self) -> bool:
        """Return True when any config row exists (each holds an encrypted key)."""
        return await self._run(
            lambda c: c.execute("SELECT EXISTS (SELECT 1 FROM configs)").fetchone()[0] == 1
        )

    async def load(self) -> StoreState:
        """Return every config in creation order and the revision, in one transaction."""

        def work(conn: sqlite3.Connection) -> StoreState:
            conn.execute("BEGIN")
            try:
                (revision,) = conn.execute("SELECT revision FROM meta").fetchone()
                rows = conn.execute(f"SELECT {_COLUMNS} FROM configs ORDER BY seq").fetchall()
            finally:
                conn.execute("COMMIT")
            return StoreState(int(revision), _rows(rows))

        return await self._run(work)

    async def changes_since(self, since: int) -> WriteOutcome:
        """Return the changes after ``since`` in revision order (None: reload needed)."""

        def work(conn: sqlite3.Connection) -> WriteOutcome:
            conn.execute("BEGIN")
            try:
                return _feed(conn, since, None)
            finally:
                conn.execute("COMMIT")

        return await self._run(work)

    async def wait_for_change(self) -> None:
        """Poll ``PRAGMA data_version`` until another connection has committed."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            version = await self._run(_data_version)
            if version != self._data_version:
                self._data_version = version
                return

    # ---- writes ---------------------------------------------------------------------

    async def _write(
        self, fn: Callable[[sqlite3.Connection], StoredConfig | None], since: int
    ) -> WriteOutcome:
        """Run ``fn`` in ``BEGIN IMMEDIATE``; the outcome's feed includes its own change."""

        def work(conn: sqlite3.Connection) -> WriteOutcome:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (revision_before,) = conn.execute("SELECT revision FROM meta").fetchone()
                current = fn(conn)
                outcome = _feed(conn, since, current)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return replace(outcome, written=outcome.revision != revision_before)

        return await self._run(work)

    async def insert(self, config: StoredConfig, since: int) -> WriteOutcome:
        """Insert at the next revision; raises DuplicateConfigNameError on a name clash."""

        def fn(conn: sqlite3.Connection) -> StoredConfig | None:
            written = replace(config, revision=_next_revision(conn))
            try:
                conn.execute(
                    f"INSERT INTO configs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    row_values(written),
                )
            except sqlite3.IntegrityError as exc:
                if _is_name_conflict(exc):
                    raise DuplicateConfigNameError from None
                raise
            _log(conn, written.revision, ChangeType.CREATED, config.id, written)
            return written

        return await self._write(fn, since)

    async def update(
        self, config_id: str, mutate: Mutation, expected_version: int | None, since: int
    ) -> WriteOutcome:
        """Apply ``mutate`` to the current row in the write transaction (see protocol)."""

        def fn(conn: sqlite3.Connection) -> StoredConfig | None:
            found = conn.execute(f"SELECT {_COLUMNS} FROM configs WHERE id = ?", (config_id,)).fetchone()
            if found is None:
                raise ConfigNotFoundError(config_id)
            current = _row(found)
            if expected_version is not None and expected_version != current.version:
                raise VersionConflictError(config_id, expected_version, current.version)
            updated = mutate(current)
            if updated is None:
                return current
            updated = replace(updated, revision=_next_revision(conn))
            try:
                conn.execute(
                    "UPDATE configs SET custom_name=?, name_key=?, provider=?, api_key_ct=?, "
                    "api_key_preview=?, base_url=?, use_auth_header=?, updated_at=?, "
                    "version=version + 1, revision=? WHERE id=? AND version=?",
                    (
                        updated.custom_name,
                        updated.name_key,
                        updated.provider,
                        updated.api_key_ct,
                        updated.api_key_preview,
                        updated.base_url,
                        int(updated.use_auth_header),
                        updated.updated_at,
                        updated.revision,
                        config_id,
                        current.version,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if _is_name_conflict(exc):
                    raise DuplicateConfigNameError from None
                raise
            _log(conn, updated.revision, ChangeType.UPDATED, config_id, updated)
            return updated

        return await self._write(fn, since)

    async def delete(self, config_id: str, expected_version: int | None, since: int) -> WriteOutcome:
        """Delete at the next revision; unknown id → no change, no error."""

        def fn(conn: sqlite3.Connection) -> StoredConfig | None:
            found = conn.execute("SELECT version FROM configs WHERE id = ?", (config_id,)).fetchone()
            if found is None:
                return None
            if expected_version is not None and expected_version != found[0]:
                raise VersionConflictError(config_id, expected_version, int(found[0]))
            conn.execute("DELETE FROM configs WHERE id = ?", (config_id,))
            _log(conn, _next_revision(conn), ChangeType.DELETED, config_id, None)
            return None

        return await self._write(fn, since)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _next_revision(conn: sqlite3.Connection) -> int:
    """Increment the global revision counter row; returns the new revision (gap-free)."""
    (revision,) = conn.execute("UPDATE meta SET revision = revision + 1 RETURNING revision").fetchone()
    return int(revision)


def _encode_row(row: StoredConfig) -> bytes:
    values = list(row_values(row))
    values[4] = row.api_key_ct.hex()  # still the ciphertext: the log never holds a plain key
    return orjson.dumps(values)


def _decode_row(blob: bytes) -> StoredConfig:
    values = orjson.loads(blob)
    values[4] = bytes.fromhex(values[4])
    return _row(tuple(values))


def _log(
    conn: sqlite3.Connection, revision: int, kind: ChangeType, config_id: str, row: StoredConfig | None
) -> None:
    """Append one change with the row as of ``revision`` (None for deletes); trim the log."""
    conn.execute(
        "INSERT INTO changes (revision, id, type, row) VALUES (?, ?, ?, ?)",
        (revision, config_id, kind.value, None if row is None else _encode_row(row)),
    )
    if revision % 1000 == 0:
        conn.execute("DELETE FROM changes WHERE revision <= ?", (revision - CHANGE_LOG_KEEP,))


def _feed(conn: sqlite3.Connection, since: int, current: StoredConfig | None) -> WriteOutcome:
    """Read the change log after ``since``, each change with its row as of that revision.

    Changes logged by schema 1 carry no row; they fall back to the row's present state.
    """
    (revision,) = conn.execute("SELECT revision FROM meta").fetchone()
    if revision == since:
        return WriteOutcome([], current, int(revision))
    (oldest,) = conn.execute("SELECT MIN(revision) FROM changes").fetchone()
    if oldest is None or oldest > since + 1:
        return WriteOutcome(None, current, int(revision))
    rows = conn.execute(
        f"SELECT c.revision, c.type, c.id, c.row, {', '.join('k.' + n.strip() for n in _COLUMNS.split(','))} "
        "FROM changes c LEFT JOIN configs k ON k.id = c.id WHERE c.revision > ? ORDER BY c.revision",
        (since,),
    ).fetchall()
    changes: list[Change] = []
    for r in rows:
        kind = ChangeType(r[1])
        config: StoredConfig | None = None
        if kind is not ChangeType.DELETED:
            if r[3] is not None:
                config = _decode_row(bytes(r[3]))
            elif r[4] is not None:
                config = _row(r[4:])
        changes.append(Change(int(r[0]), kind, str(r[2]), config))
    return WriteOutcome(changes, current, int(revision))
