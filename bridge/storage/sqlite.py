"""``SqliteConfigStore``: the embedded default store (standard-library ``sqlite3``).

WAL, ``synchronous=FULL``, ``busy_timeout`` 5 s, every write in ``BEGIN IMMEDIATE``,
``PRAGMA quick_check`` on open (DESIGN §3). All SQLite work runs on one dedicated thread
so the event loop never blocks on disk. Several processes may share the file: the
unique ``name_key`` index, existence, ``expectedVersion`` and version + 1 are checked in
the write transaction. Triggers on the ``configs`` table bump the ``revision`` counter
row by exactly one, set the row's ``revision`` and ``version + 1`` and append to the
``changes`` log for every write, whoever makes it (bridge, the ``sqlite3`` shell, a
migration script): other processes read the log after noticing ``PRAGMA data_version``
move.

Nothing read from the file is trusted: text that is not UTF-8 is returned with lone
surrogates (``surrogateescape``) for the service to quarantine, a change-log entry that
does not decode is reported as such, and structural damage that loses nothing (the
revision row, the change log or a trigger gone) is repaired on open and on reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog

from bridge.datadir import DB_COMPANIONS
from bridge.errors import DuplicateConfigNameError, SchemaTooNewError
from bridge.storage import changelog, protocol
from bridge.storage.base import COLUMNS, Mutation, StoredConfig, StoreState, WriteOutcome, row_values
from bridge.storage.changes import Change

log = structlog.get_logger(__name__)

T = TypeVar("T")

DB_FILE_NAME: Final = "bridge.db"
SCHEMA_VERSION: Final = 4
"""``PRAGMA user_version`` of the schema below; 1 lacked ``configs.revision``, 2 the triggers,
3 logged rows as positional JSON arrays (4: the JSON objects every backend logs)."""
BUSY_TIMEOUT_MS: Final = 5000

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
_META = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
)"""
_CHANGES = """
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    row BLOB
)"""
_REV = "(SELECT revision FROM meta WHERE id = 1)"
_NO_META = (
    "SELECT RAISE(ABORT, 'bridge: the revision row is missing') "
    "WHERE NOT EXISTS (SELECT 1 FROM meta WHERE id = 1);"
)
_TRIM = f"DELETE FROM changes WHERE {changelog.trim_condition(_REV)};"
_LOG_OBJECT = f"json_object({protocol.log_object_pairs(lambda c: c, lambda e: f'hex({e})')})"
"""The change-log row (:mod:`bridge.storage.protocol`'s codec) of the configs row in scope."""
_LOG_ROW = (
    "INSERT INTO changes (revision, id, type, row) SELECT revision, id, '{kind}', "
    f"{_LOG_OBJECT} FROM configs WHERE seq = NEW.seq;"
)
_COUNTERS: Final = ("version", "revision")
"""The columns the triggers keep (nobody else may change them)."""
_CONTENT_COLUMNS: Final = tuple(name for name in COLUMNS if name not in _COUNTERS)
_ALL_COLUMNS = ("seq", *_CONTENT_COLUMNS, "version", "revision")
_SAME_CONTENT = " AND ".join(f"OLD.{c} IS NEW.{c}" for c in _CONTENT_COLUMNS)
"""A trigger's condition: the statement changed none of the content columns."""
_TRIGGERS: Final = {
    # Every write to configs, whoever makes it, takes the next revision, logs the row as
    # of that revision and (for updates) version + 1. recursive_triggers is off (SQLite's
    # default), so the triggers' own UPDATE of configs does not fire them again.
    "bridge_configs_insert": (
        "CREATE TRIGGER IF NOT EXISTS bridge_configs_insert AFTER INSERT ON configs BEGIN "
        f"{_NO_META} UPDATE meta SET revision = revision + 1 WHERE id = 1; "
        f"UPDATE configs SET revision = {_REV} WHERE seq = NEW.seq; "
        f"{_LOG_ROW.format(kind='created')} {_TRIM} END"
    ),
    "bridge_configs_update": (
        "CREATE TRIGGER IF NOT EXISTS bridge_configs_update AFTER UPDATE ON configs "
        f"WHEN NOT ({_SAME_CONTENT}) BEGIN {_NO_META} UPDATE meta SET revision = revision + 1 WHERE id = 1; "
        f"UPDATE configs SET version = OLD.version + 1, revision = {_REV} WHERE seq = NEW.seq; "
        f"{_LOG_ROW.format(kind='updated')} {_TRIM} END"
    ),
    # The triggers' own UPDATEs change only version and revision (to the counter's value);
    # anyone else changing only those is refused: the database keeps them.
    "bridge_configs_counters": (
        "CREATE TRIGGER IF NOT EXISTS bridge_configs_counters "
        f"BEFORE UPDATE OF version, revision, seq ON configs WHEN ({_SAME_CONTENT}) "
        f"AND (NEW.revision IS NOT {_REV} OR OLD.seq IS NOT NEW.seq) "
        "BEGIN SELECT RAISE(ABORT, 'bridge: version and revision are kept by the database'); END"
    ),
    "bridge_configs_delete": (
        "CREATE TRIGGER IF NOT EXISTS bridge_configs_delete AFTER DELETE ON configs BEGIN "
        f"{_NO_META} UPDATE meta SET revision = revision + 1 WHERE id = 1; "
        f"INSERT INTO changes (revision, id, type, row) VALUES ({_REV}, OLD.id, 'deleted', NULL); {_TRIM} END"
    ),
}
_COLUMNS: Final = ", ".join(COLUMNS)
_UPDATE: Final = f"UPDATE configs SET {', '.join(f'{c}=?' for c in protocol.UPDATE_COLUMNS)} WHERE id=?"
_MIGRATE_1_TO_2 = (
    "ALTER TABLE configs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE changes ADD COLUMN row BLOB",
    (
        "UPDATE configs SET revision = COALESCE("
        "(SELECT MAX(c.revision) FROM changes c WHERE c.id = configs.id), 0)"
    ),
)
_SCHEMA_3_LOG_FIELDS: Final = (
    "id",
    "custom_name",
    "name_key",
    "provider",
    "api_key_ct",
    "api_key_preview",
    "base_url",
    "use_auth_header",
    "created_at",
    "updated_at",
    "version",
    "revision",
)
"""Frozen: the positions of schema 3's logged arrays and the keys of schema 4's objects.

A recorded migration must do the same whatever later releases change in
:class:`~bridge.storage.base.StoredConfig`, so it is not built from the live columns."""
_SCHEMA_4_LOG_OBJECT: Final = (
    "json_object("
    + ", ".join(f"'{n}', {f'hex({n})' if n == 'api_key_ct' else n}" for n in _SCHEMA_3_LOG_FIELDS)
    + ")"
)
_MIGRATE_TO_4 = (
    # Schemas 2 and 3 logged positional arrays (schema 2 as BLOBs of the JSON text):
    # rewrite them as the objects schema 4's triggers log, value for value; anything else
    # stays as it is (undecodable).
    (
        "UPDATE changes SET row = json_object("
        + ", ".join(
            f"'{name}', json_extract(CAST(row AS TEXT), '$[{i}]')"
            for i, name in enumerate(_SCHEMA_3_LOG_FIELDS)
        )
        + ") WHERE typeof(row) IN ('text', 'blob') AND json_valid(CAST(row AS TEXT)) "
        "AND json_type(CAST(row AS TEXT)) = 'array' "
        f"AND json_array_length(CAST(row AS TEXT)) = {len(_SCHEMA_3_LOG_FIELDS)}"
    ),
    # Schema 1 logged no rows: such an entry stood for the row's present state (what the
    # feed used to read through a join); it now says so itself.
    (
        f"UPDATE changes SET row = (SELECT {_SCHEMA_4_LOG_OBJECT} FROM configs "
        "WHERE configs.id = changes.id) WHERE row IS NULL AND type <> 'deleted'"
    ),
)
_CONFIG_COLUMNS: Final = frozenset(_ALL_COLUMNS)


class StoreDamagedError(Exception):
    """The file is structurally damaged beyond repair (e.g. the configs table is gone).

    Attributes:
        reason: what is wrong, for the log and ``bridge doctor`` (never a value).
    """

    def __init__(self, reason: str) -> None:
        """Build with ``reason``."""
        super().__init__(reason)
        self.reason = reason


def text_of(raw: bytes) -> str:
    """SQLite text → ``str``; bytes that are not UTF-8 become lone surrogates.

    A strict decode would fail the whole query on one bad row; the services quarantine
    the row instead (``rules.UNDECODABLE_TEXT``). The ``text_factory`` of every
    connection to ``bridge.db`` and ``collections.db``.
    """
    return raw.decode("utf-8", "surrogateescape")


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-write for a store's own thread (``bridge.db``, ``collections.db``).

    A new file is created 0600 first; SQLite gives its ``-wal`` and ``-shm`` the database
    file's mode (names and URLs are nobody else's business). Autocommit (every
    transaction explicit), a 5 s lock wait, text through :func:`text_of`.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.text_factory = text_of
    return conn


def read_only(
    path: Path, *, wait_s: float = BUSY_TIMEOUT_MS / 1000, any_thread: bool = False
) -> sqlite3.Connection:
    """A read-only connection to ``path`` (it never creates, checkpoints or deletes a file).

    Args:
        path: the database file.
        wait_s: how long a statement waits for a lock, in seconds (0: a data-version probe).
        any_thread: True for a connection used from the event loop's thread (a probe).
    """
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=not any_thread, timeout=wait_s
    )
    conn.text_factory = text_of
    return conn


def prepare(conn: sqlite3.Connection, path: Path, newest: int) -> int:
    """Set the pragmas of DESIGN §3 on a new connection; return its ``PRAGMA user_version``.

    ``busy_timeout`` 5 s; then the version is checked before ``journal_mode`` is set, so a
    file from a newer bridge is left byte-for-byte untouched; then WAL and
    ``synchronous=FULL``.

    Raises:
        SchemaTooNewError: ``user_version`` is above ``newest``.
    """
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > newest:
        raise SchemaTooNewError(path, version)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return int(version)


def open_prepared(path: Path, setup: Callable[[sqlite3.Connection], object]) -> sqlite3.Connection:
    """:func:`connect` to ``path`` and run ``setup`` on the connection; closed again if ``setup`` raises."""
    conn = connect(path)
    try:
        setup(conn)
    except BaseException:
        conn.close()
        raise
    return conn


async def run_on(
    executor: ThreadPoolExecutor, conn: sqlite3.Connection | None, fn: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``fn(conn)`` on a store's own thread (the event loop never blocks on disk).

    Raises:
        RuntimeError: ``conn`` is None (the store is not open).
    """
    if conn is None:
        raise RuntimeError("store is not open")
    return await asyncio.get_running_loop().run_in_executor(executor, fn, conn)


async def open_on(
    executor: ThreadPoolExecutor, open_file: Callable[[], sqlite3.Connection]
) -> sqlite3.Connection:
    """Run ``open_file`` on a store's own thread and return its connection.

    A thread cannot be interrupted: when the caller is cancelled while the file opens (an
    embedding program's start-up timed out), the connection is closed as soon as the
    thread has made it, so nothing stays open behind the caller (:meth:`close` then finds
    no connection, and joining the thread waits for that close).

    Raises:
        Whatever ``open_file`` raises.
    """
    opening = executor.submit(open_file)
    try:
        return await asyncio.shield(asyncio.wrap_future(opening))
    except asyncio.CancelledError:
        opening.add_done_callback(_close_abandoned)
        raise


def _close_abandoned(opening: Future[sqlite3.Connection]) -> None:
    """Close the connection of an open whose caller was cancelled (on the store's thread, or now)."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def close_on(
    executor: ThreadPoolExecutor, conn: sqlite3.Connection | None, probe: sqlite3.Connection | None
) -> None:
    """Close a store's probe, then its connection on its thread, then join the thread (off the loop)."""
    if probe is not None:
        probe.close()
    if conn is not None:
        await asyncio.get_running_loop().run_in_executor(executor, conn.close)
    await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)


def probe_version(probe: sqlite3.Connection | None) -> int | None:
    """``PRAGMA data_version`` of a probe connection (:func:`read_only`), run on the event loop.

    Cheap (no disk read). It moves with every other connection's commit, the store's own
    included. None when there is no probe or it fails (callers count that as moved).
    """
    if probe is None:
        return None
    try:
        return _data_version(probe)
    except sqlite3.Error:
        return None


def open_healthy(
    path: Path, open_file: Callable[[], sqlite3.Connection], moved: Callable[[str, str], None]
) -> sqlite3.Connection:
    """Open ``path`` with ``open_file``; a damaged file is moved aside (bytes kept) and replaced.

    Damage is :func:`damage_of`'s finding, :class:`StoreDamagedError`, or SQLite's
    ``SQLITE_CORRUPT``/``SQLITE_NOTADB`` while opening; a lock, an I/O error or a failed
    migration is raised and leaves the file where it is (DESIGN §3).

    Args:
        path: the database file.
        open_file: opens (and prepares) the file; called again after a move.
        moved: told ``(moved_to, reason)`` once the file is moved aside, before the new one opens.
    """
    reason = damage_of(path)
    if reason is None:
        try:
            return open_file()
        except StoreDamagedError as exc:
            reason = exc.reason
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}:
                raise
            reason = f"failed to open ({type(exc).__name__})"
    moved(move_aside(path), reason)
    return open_file()


def _rows(fetched: list[tuple[Any, ...]]) -> list[StoredConfig]:
    """Build rows straight from SQLite's values (the load path: 10,000 rows at start-up)."""
    return [protocol.make_row(values) for values in fetched]


def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    """True for lock contention (another process holds the file), which is not damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED} or "locked" in str(exc)


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: ``BEGIN IMMEDIATE``, ``COMMIT`` when the block ends, ``ROLLBACK`` if it raises.

    Used by every write of both SQLite files (``bridge.db`` and ``collections.db``).

    Raises:
        Whatever the block or the ``COMMIT`` raises (``sqlite3.Error``, ``BaseException``),
        after rolling back.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def damage_of(path: Path) -> str | None:
    """Return why the SQLite file at ``path`` is unusable, or None when healthy or absent.

    ``PRAGMA quick_check`` runs on a read-only connection: a read-write connection to a
    damaged file may delete its ``-wal`` on close or checkpoint WAL frames into it, and
    the copy moved aside must keep the original bytes. Used for ``bridge.db`` and
    ``collections.db``.

    Raises:
        sqlite3.OperationalError: the file is locked or busy (not damage: never moved).
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = read_only(path)
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


def move_aside(path: Path) -> str:
    """Move a damaged SQLite file and its companions to ``<name>.corrupt-<UTC stamp>``; return that path.

    The bytes are kept (DESIGN §3): ``-wal``, ``-shm`` and ``-journal`` move with it.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in DB_COMPANIONS:
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(f"{target}{suffix}")
    return str(target)


def _is_name_conflict(exc: sqlite3.IntegrityError) -> bool:
    return "configs.name_key" in str(exc)


def inspect_structure(conn: sqlite3.Connection) -> tuple[list[str], str | None]:
    """Look at the schema of an open database without changing it.

    Returns:
        ``(repairable, fatal)``: findings that :func:`repair_structure` fixes without
        losing anything (``meta table missing``, ``revision row missing``, ``changes
        table missing``, ``trigger <name> missing``), and the one that makes the file
        unusable (``configs table missing``, ``configs column <c> missing``) or None.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    if "configs" not in tables:
        return [], "configs table missing"
    columns = {r[1] for r in conn.execute("PRAGMA table_info(configs)")}
    missing_columns = sorted(_CONFIG_COLUMNS - columns)
    if missing_columns:
        return [], f"configs column {missing_columns[0]} missing"
    found: list[str] = []
    if "meta" not in tables:
        found.append("meta table missing")
    elif conn.execute("SELECT 1 FROM meta WHERE id = 1").fetchone() is None:
        found.append("revision row missing")
    if "changes" not in tables:
        found.append("changes table missing")
    found.extend(f"trigger {name} missing" for name in _TRIGGERS if name not in triggers)
    return found, None


def repair_structure(conn: sqlite3.Connection) -> list[str]:
    """Repair what :func:`inspect_structure` finds, inside the caller's write transaction.

    A lost revision row is recomputed from what the store holds (the highest revision of
    any row or logged change), so revisions stay increasing and no client drops an event
    as stale. A lost change log is recreated empty: processes behind it reload.

    Returns:
        The findings repaired (empty when healthy).

    Raises:
        StoreDamagedError: the damage loses data (the configs table or a column is gone).
    """
    found, fatal = inspect_structure(conn)
    if fatal is not None:
        raise StoreDamagedError(fatal)
    if not found:
        return []
    conn.execute(_META)
    conn.execute(_CHANGES)
    if conn.execute("SELECT 1 FROM meta WHERE id = 1").fetchone() is None:
        (top,) = conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(revision) FROM configs), 0), "
            "COALESCE((SELECT MAX(revision) FROM changes), 0))"
        ).fetchone()
        conn.execute("INSERT INTO meta (id, revision) VALUES (1, ?)", (int(top),))
    for statement in _TRIGGERS.values():
        conn.execute(statement)
    return found


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
        self.repaired: list[str] = []
        """Structural findings repaired when the store was opened or reloaded."""
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._data_version = 0
        self._synced_data_version = -1
        self._probe: sqlite3.Connection | None = None
        """A read-only connection of its own, used on the event loop for ``PRAGMA
        data_version`` alone: it sees every other connection's commits (ours included)."""

    # ---- plumbing -------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await run_on(self._executor, self._conn, fn)

    def _connect(self) -> sqlite3.Connection:
        return open_prepared(self.path, self._prepare)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Refuse a newer schema and set the pragmas (:func:`prepare`), create or migrate the schema.

        Structural damage that loses nothing is then repaired (:func:`repair_structure`);
        damage that would lose data raises :class:`StoreDamagedError`.
        """
        user_version = prepare(conn, self.path, SCHEMA_VERSION)
        conn.execute("PRAGMA recursive_triggers = OFF")
        if user_version < SCHEMA_VERSION:
            self._migrate(conn, user_version)
        self._repair(conn)

    def _repair(self, conn: sqlite3.Connection) -> None:
        with write_transaction(conn):
            repaired = repair_structure(conn)
        if repaired:
            self.repaired.extend(repaired)
            log.warning("store_repaired", path=str(self.path), findings=repaired)

    def _backup(self) -> Path:
        """Copy the database (a consistent snapshot, WAL included) before a migration."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.pre-migration-{stamp}")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        src = read_only(self.path)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return target

    def _migrate(self, conn: sqlite3.Connection, seen_version: int) -> None:  # noqa: C901, PLR0912 - one step per version
        """Create the schema or migrate it to :data:`SCHEMA_VERSION` in one transaction.

        The version is read again under the write lock: another process may have
        migrated the file between our first look and ``BEGIN IMMEDIATE``. An existing
        database is first copied to ``bridge.db.pre-migration-<UTC>``; the copy is removed
        once the migration has committed (kept if it fails).
        """
        backup = self._backup() if seen_version > 0 else None
        conn.execute("BEGIN IMMEDIATE")
        try:
            (user_version,) = conn.execute("PRAGMA user_version").fetchone()
            if user_version == 0:
                # executescript() would COMMIT first: run the statements one by one.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
            if user_version == 1:
                for statement in _MIGRATE_1_TO_2:
                    conn.execute(statement)
            if user_version < SCHEMA_VERSION:
                # The triggers of an older schema log the old format: replace them all.
                for name in _TRIGGERS:
                    conn.execute(f"DROP TRIGGER IF EXISTS {name}")
                for statement in _MIGRATE_TO_4:
                    conn.execute(statement)
                for statement in _TRIGGERS.values():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if backup is not None:
                log.exception("store_migration_failed", path=str(self.path), backup=str(backup))
            raise
        if user_version > 0:
            log.info(
                "store_migrated", path=str(self.path), from_version=user_version, to_version=SCHEMA_VERSION
            )
        if backup is not None:
            backup.unlink()

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return open_healthy(self.path, self._connect, self._moved)

    def _moved(self, moved_to: str, reason: str) -> None:
        # Keep the bytes, start empty (DESIGN §3).
        self.recovered_from = moved_to
        log.error("store_quarantined", path=str(self.path), moved_to=moved_to, reason=reason)

    async def open(self) -> None:
        """Open or create the database; a corrupt one is moved aside and replaced."""
        self._conn = await open_on(self._executor, self._open_sync)
        self._data_version = await self._run(_data_version)
        self._probe = read_only(self.path, wait_s=0, any_thread=True)

    async def close(self) -> None:
        """Close the connection and its thread; idempotent."""
        conn, self._conn = self._conn, None
        probe, self._probe = self._probe, None
        await close_on(self._executor, conn, probe)

    # ---- reads ----------------------------------------------------------------------

    async def has_ciphertexts(self) -> bool:
        """Return True when any config row exists (each holds an encrypted key)."""
        return await self._run(
            lambda c: c.execute("SELECT EXISTS (SELECT 1 FROM configs)").fetchone()[0] == 1
        )

    async def key_ids(self) -> set[bytes]:
        """Return the ids (8 bytes each) of the data keys named by the stored ciphertexts."""
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT DISTINCT substr(api_key_ct, 1, {protocol.KEY_ID_BYTES}) FROM configs "
                "WHERE typeof(api_key_ct) = 'blob'"
            ).fetchall()
        )
        return {bytes(r[0]) for r in rows}

    def _probe_version(self) -> int:
        """``PRAGMA data_version`` of the probe connection (-2: unknown, counts as moved)."""
        version = probe_version(self._probe)
        return -2 if version is None else version

    def moved(self) -> bool:
        """True when a connection committed since the last load or feed read.

        One ``PRAGMA data_version`` on the probe connection, synchronously (no table is
        read, no thread hop): the read path asks it on a cache miss. This store's own
        writes count as a move too (the probe is another connection): the first miss
        after one reads the feed once.
        """
        version = self._probe_version()
        return version < 0 or version != self._synced_data_version

    async def load(self) -> StoreState:
        """Return every config in creation order and the revision, in one transaction.

        Structural damage that loses nothing (the revision row, the change log or a
        trigger gone while the store was open) is repaired first.

        Raises:
            StoreDamagedError: the configs table (or one of its columns) is gone.
        """

        def work(conn: sqlite3.Connection) -> StoreState:
            found, fatal = inspect_structure(conn)
            if fatal is not None:
                raise StoreDamagedError(fatal)
            if found:
                self._repair(conn)
            conn.execute("BEGIN")
            try:
                (revision,) = conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()
                rows = conn.execute(f"SELECT {_COLUMNS} FROM configs ORDER BY seq").fetchall()
            finally:
                conn.execute("COMMIT")
            return StoreState(int(revision), _rows(rows))

        before = self._probe_version()
        state = await self._run(work)
        self._synced_data_version = before
        return state

    async def changes_since(self, since: int) -> WriteOutcome:
        """Return the changes after ``since`` in revision order (None: reload needed)."""

        def work(conn: sqlite3.Connection) -> WriteOutcome:
            conn.execute("BEGIN")
            try:
                outcome = _feed(conn, since, _revision(conn), None, None)
            finally:
                conn.execute("COMMIT")
            return outcome

        # Read before the feed: a commit in between is in the feed, or makes the next
        # miss read it again (never missed).
        before = self._probe_version()
        outcome = await self._run(work)
        self._synced_data_version = before
        return outcome

    async def wait_for_change(self) -> None:
        """Poll ``PRAGMA data_version`` until another connection has committed."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            version = await self._run(_data_version)
            if version != self._data_version:
                self._data_version = version
                return

    # ---- writes ---------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], protocol.Written], since: int) -> WriteOutcome:
        """Run ``fn`` in ``BEGIN IMMEDIATE``; the outcome's feed ends with its own change.

        The triggers take the revision and log the change; a lost revision row is
        recomputed first (:func:`repair_structure`). Other writers' changes come from the
        log, this write's own from the row it left in the table.
        """

        def work(conn: sqlite3.Connection) -> WriteOutcome:
            with write_transaction(conn):
                if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None or (
                    conn.execute("SELECT 1 FROM meta WHERE id = 1").fetchone() is None
                ):
                    self.repaired.extend(repair_structure(conn))
                revision_before = _revision(conn)
                written = fn(conn)
                revision = _revision(conn)
                own = protocol.own_change(written, revision_before, revision)
                return _feed(conn, since, revision, own, written.current)

        return await self._run(work)

    async def insert(self, config: StoredConfig, since: int) -> WriteOutcome:
        """Insert at the next revision; raises DuplicateConfigNameError on a name clash."""

        def fn(conn: sqlite3.Connection) -> protocol.Written:
            try:
                conn.execute(
                    f"INSERT INTO configs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    row_values(config),
                )
            except sqlite3.IntegrityError as exc:
                if _is_name_conflict(exc):
                    raise DuplicateConfigNameError from None
                raise
            row = _current(conn, config.id)
            return protocol.Written(config.id, row, row, created=True)

        return await self._write(fn, since)

    async def update(
        self, config_id: str, mutate: Mutation, expected_version: int | None, since: int
    ) -> WriteOutcome:
        """Apply ``mutate`` to the current row in the write transaction (see protocol)."""

        def fn(conn: sqlite3.Connection) -> protocol.Written:
            current = _current(conn, config_id)
            updated = protocol.checked_update(config_id, current, mutate, expected_version)
            if updated is None:
                return protocol.Written(config_id, current, current)
            try:
                # The trigger sets version + 1 and the revision, and logs the row.
                conn.execute(_UPDATE, (*protocol.update_values(updated), config_id))
            except sqlite3.IntegrityError as exc:
                if _is_name_conflict(exc):
                    raise DuplicateConfigNameError from None
                raise
            row = _current(conn, config_id)
            return protocol.Written(config_id, row, row)

        return await self._write(fn, since)

    async def delete(self, config_id: str, expected_version: int | None, since: int) -> WriteOutcome:
        """Delete at the next revision; unknown id → no change, no error."""

        def fn(conn: sqlite3.Connection) -> protocol.Written:
            found = conn.execute("SELECT version FROM configs WHERE id = ?", (config_id,)).fetchone()
            if protocol.checked_delete(config_id, None if found is None else found[0], expected_version):
                conn.execute("DELETE FROM configs WHERE id = ?", (config_id,))
            return protocol.Written(config_id, None, None)

        return await self._write(fn, since)

    async def reseal(self, seal: Callable[[StoredConfig], bytes | None]) -> int:
        """Replace every row's ciphertext by ``seal(row)`` in one transaction (key rotation).

        Args:
            seal: returns the new ciphertext, or None to leave the row as it is.

        Returns:
            The number of rows re-sealed (each a write: new revision, version + 1).
        """

        def work(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                rows = _rows(conn.execute(f"SELECT {_COLUMNS} FROM configs ORDER BY seq").fetchall())
                count = 0
                for row in rows:
                    sealed = seal(row)
                    if sealed is not None:
                        conn.execute("UPDATE configs SET api_key_ct = ? WHERE id = ?", (sealed, row.id))
                        count += 1
            return count

        return await self._run(work)


def _current(conn: sqlite3.Connection, config_id: str) -> StoredConfig | None:
    found = conn.execute(f"SELECT {_COLUMNS} FROM configs WHERE id = ?", (config_id,)).fetchone()
    return None if found is None else protocol.make_row(found)


def _revision(conn: sqlite3.Connection) -> int:
    (revision,) = conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()
    return int(revision)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


_PRESENT_COLUMNS: Final = ", ".join(f"k.{name}" for name in COLUMNS)


def _feed(
    conn: sqlite3.Connection,
    since: int,
    revision: int,
    own: Change[StoredConfig] | None,
    current: StoredConfig | None,
) -> WriteOutcome:
    """The feed after ``since``: the log's window, each entry with its id's row in the table (the join).

    What it means is :func:`~bridge.storage.protocol.build_feed`'s (the change log's rules).
    """
    window = changelog.log_window(since, revision, own)
    if window is None:
        return protocol.build_feed([], {}, revision=revision, own=own, current=current)
    (oldest,) = conn.execute("SELECT MIN(revision) FROM changes").fetchone()
    rows = conn.execute(
        f"SELECT c.revision, c.type, c.id, c.row, {_PRESENT_COLUMNS} FROM changes c "
        "LEFT JOIN configs k ON k.id = c.id WHERE c.revision > ? AND c.revision <= ? "
        "ORDER BY c.revision",
        window,
    ).fetchall()
    return protocol.build_feed(
        [r[:4] for r in rows],
        {r[4]: protocol.make_row(r[4:]) for r in rows if r[4] is not None},
        revision=revision,
        own=own,
        current=current,
        window=window,
        oldest=oldest,
    )


@dataclass(frozen=True, slots=True)
class Examination:
    """What :func:`examine_file` found in a database file (read-only; nothing changed).

    Attributes:
        schema_version: ``PRAGMA user_version`` (0 for a new or foreign file).
        damage: why the file is unusable (``quick_check failed``…), else None.
        repairable: structural findings the server repairs on open without loss.
        fatal: structural damage that makes the server move the file aside, else None.
        rows: the stored rows (empty when unreadable).
    """

    schema_version: int
    damage: str | None
    repairable: list[str]
    fatal: str | None
    rows: list[StoredConfig]


def examine_file(path: Path) -> Examination:
    """Examine the database at ``path`` on a read-only connection (``bridge doctor``).

    Raises:
        FileNotFoundError: there is no database at ``path``.
    """
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    damage = damage_of(path)
    if damage is not None:
        return Examination(0, damage, [], None, [])
    conn = read_only(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        repairable, fatal = inspect_structure(conn)
        if version < SCHEMA_VERSION and fatal is None:
            repairable = [f for f in repairable if not f.startswith("trigger ")]
            repairable.append(f"schema version {version} (migrated to {SCHEMA_VERSION} on open)")
        rows: list[StoredConfig] = []
        if fatal is None:
            rows = _rows(conn.execute(f"SELECT {_COLUMNS} FROM configs ORDER BY seq").fetchall())
    finally:
        conn.close()
    return Examination(int(version), None, repairable, fatal, rows)
