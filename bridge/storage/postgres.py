"""``PostgresConfigStore``: several bridge instances on one PostgreSQL database (DESIGN §3).

The same contract as :class:`~bridge.storage.sqlite.SqliteConfigStore`, on ``asyncpg``:

- Every write runs in one transaction that first locks the ``bridge_meta`` counter row
  (``SELECT … FOR UPDATE``): writes of all instances are serialized there, so the
  ``revision`` they take with ``UPDATE … SET revision = revision + 1 RETURNING revision``
  is gap-free and follows commit order (a sequence would be neither).
- Existence and ``expectedVersion`` are checked on the row locked with
  ``SELECT … FOR UPDATE``; the unique ``name_key`` index holds names unique.
- Each write appends one row to ``bridge_changes`` with the config as of that revision,
  so :meth:`changes_since` returns exactly one change per revision.
- Each write sends ``NOTIFY bridge_changes`` with ``{"id", "revision"}`` only (delivered at
  commit); other instances then read through :meth:`changes_since`. A dedicated
  listener connection waits for them; when it is lost it is re-established with capped
  exponential backoff and full jitter, and :meth:`wait_for_change` returns so the
  service reloads whatever was committed in the gap.

API keys are stored as the ``KeyCipher`` ciphertext (its first 8 bytes name the data
key) and the key id is also kept in its own ``key_id`` column, so an instance started
with another data key can be refused before it touches anything (:meth:`key_ids`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import structlog

from bridge.errors import DuplicateConfigNameError, SchemaTooNewError, StartupError
from bridge.storage import changelog, protocol
from bridge.storage.base import (
    COLUMNS,
    Mutation,
    StoredConfig,
    StoreState,
    WriteOutcome,
    backoff_delays,
    row_values,
)
from bridge.storage.changes import Change

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
"""Default bound on one connection attempt, in seconds."""
OP_TIMEOUT_S: Final = 15.0
"""Default bound on one store operation (acquire, statements, commit), in seconds."""

SCHEMA_VERSION: Final = 2
"""Row of ``bridge_schema``; a database with a higher one is refused, never touched.
Version 2 adds the write trigger: every write, whoever makes it, is revisioned and logged."""
CHANNEL: Final = "bridge_changes"
"""The ``LISTEN/NOTIFY`` channel every instance of one database shares."""
_MIGRATION_LOCK: Final = 0x6272_6964_6765  # "bridge": one advisory lock id for migrations

_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE bridge_meta (
            id integer PRIMARY KEY CHECK (id = 1),
            revision bigint NOT NULL
        )""",
        "INSERT INTO bridge_meta (id, revision) VALUES (1, 0)",
        """CREATE TABLE bridge_configs (
            id text PRIMARY KEY,
            seq bigint NOT NULL,
            custom_name text NOT NULL,
            name_key text NOT NULL,
            provider text NOT NULL,
            api_key_ct bytea NOT NULL,
            key_id bytea NOT NULL,
            api_key_preview text NOT NULL,
            base_url text,
            use_auth_header boolean NOT NULL,
            created_at text NOT NULL,
            updated_at text NOT NULL,
            version integer NOT NULL,
            revision bigint NOT NULL
        )""",
        "CREATE UNIQUE INDEX bridge_configs_name_key ON bridge_configs (name_key)",
        "CREATE INDEX bridge_configs_seq ON bridge_configs (seq)",
        """CREATE TABLE bridge_changes (
            revision bigint PRIMARY KEY,
            id text NOT NULL,
            type text NOT NULL,
            row bytea
        )""",
    ),
    # Every write to bridge_configs, whoever makes it (bridge, psql, a migration script),
    # takes the next revision under the counter row's lock (so revisions follow commit
    # order), sets the row's revision, version + 1 (updates), seq (inserts: creation
    # order) and key_id, logs the row as of that revision and notifies the instances.
    # Frozen as text (the channel, key-id length, trim figures and the log object's
    # fields written out): a recorded migration must not change with later constants.
    2: (
        (
            """CREATE FUNCTION bridge_configs_write() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            rev bigint;
        BEGIN
            IF TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD THEN
                RETURN NEW;
            END IF;
            UPDATE bridge_meta SET revision = revision + 1 WHERE id = 1 RETURNING revision INTO rev;
            IF rev IS NULL THEN
                RAISE EXCEPTION 'bridge: the revision row is missing';
            END IF;
            IF TG_OP = 'DELETE' THEN
                INSERT INTO bridge_changes (revision, id, type, row) VALUES (rev, OLD.id, 'deleted', NULL);
                PERFORM pg_notify('bridge_changes', json_build_object('id', OLD.id, 'revision', rev)::text);
            ELSE
                NEW.revision := rev;
                NEW.key_id := substring(NEW.api_key_ct from 1 for 8);
                IF TG_OP = 'UPDATE' THEN
                    NEW.version := OLD.version + 1;
                    NEW.seq := OLD.seq;
                ELSE
                    NEW.seq := rev;
                END IF;
                INSERT INTO bridge_changes (revision, id, type, row) VALUES (
                    rev, NEW.id, CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
                    convert_to(json_build_object("""
            "'id', NEW.id, 'custom_name', NEW.custom_name, 'name_key', NEW.name_key, "
            "'provider', NEW.provider, 'api_key_ct', encode(NEW.api_key_ct, 'hex'), "
            "'api_key_preview', NEW.api_key_preview, 'base_url', NEW.base_url, "
            "'use_auth_header', NEW.use_auth_header, 'created_at', NEW.created_at, "
            "'updated_at', NEW.updated_at, 'version', NEW.version, 'revision', rev"
            """)::text, 'UTF8'));
                PERFORM pg_notify('bridge_changes', json_build_object('id', NEW.id, 'revision', rev)::text);
            END IF;
            IF rev % 1000 = 0 THEN
                DELETE FROM bridge_changes WHERE revision <= rev - 10000;
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END $$"""
        ),
        "ALTER TABLE bridge_configs ALTER COLUMN seq SET DEFAULT 0",
        "ALTER TABLE bridge_configs ALTER COLUMN revision SET DEFAULT 0",
        "ALTER TABLE bridge_configs ALTER COLUMN key_id SET DEFAULT ''::bytea",
        """CREATE TRIGGER bridge_configs_write BEFORE INSERT OR UPDATE OR DELETE ON bridge_configs
        FOR EACH ROW EXECUTE FUNCTION bridge_configs_write()""",
    ),
}

_COLUMNS: Final = ", ".join(COLUMNS)
_UPDATE: Final = (
    "UPDATE bridge_configs SET "
    + ", ".join(f"{c}=${i}" for i, c in enumerate(protocol.UPDATE_COLUMNS, 1))
    + f" WHERE id=${len(protocol.UPDATE_COLUMNS) + 1} RETURNING {_COLUMNS}"
)
_REVISION: Final = "SELECT revision FROM bridge_meta WHERE id = 1"


_CONNECTION_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (URL and ``password=`` forms)."""
    dsn = re.sub(r"(?i)(password=)[^&\s]*", r"\1***", dsn)
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


async def create_pool(
    dsn: str, *, size: int, connect_timeout_s: float, op_timeout_s: float, name: str, where: str
) -> asyncpg.Pool:
    """Open a store's connection pool (the config store's and the collections' alike).

    Args:
        dsn: a libpq connection URI.
        size: most connections (at least one is opened now).
        connect_timeout_s: bound on one connection attempt, in seconds.
        op_timeout_s: bound on one statement, in seconds.
        name: ``application_name`` prefix (``<name>-<pid>`` in ``pg_stat_activity``).
        where: the store in the error message (``at <redacted DSN>``, ``for the collections``).

    Raises:
        StartupError: the server cannot be reached or refuses the login (only the error's
            type is told: never the DSN's password).
    """
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            timeout=connect_timeout_s,
            command_timeout=op_timeout_s,
            server_settings={"application_name": f"{name}-{os.getpid()}"},
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StartupError(f"Cannot connect to PostgreSQL {where}: {type(exc).__name__}") from None


async def listen(
    dsn: str,
    *,
    connect_timeout_s: float,
    name: str,
    channel: str,
    on_notify: Callable[[Any, int, str, str], None],
    on_lost: Callable[[Any], None],
) -> asyncpg.Connection:
    """Open a dedicated listener connection and ``LISTEN`` on ``channel``.

    Args:
        dsn: a libpq connection URI.
        connect_timeout_s: bound on the connection attempt, in seconds.
        name: ``application_name`` prefix (``<name>-<pid>``: names it for operators).
        channel: the ``LISTEN/NOTIFY`` channel.
        on_notify: asyncpg's listener callback ``(connection, pid, channel, payload)``.
        on_lost: called with the connection when it terminates.

    Raises:
        Whatever connecting or ``LISTEN`` raises (the connection is closed again).
    """
    conn = await asyncpg.connect(
        dsn, timeout=connect_timeout_s, server_settings={"application_name": f"{name}-{os.getpid()}"}
    )
    try:
        await conn.add_listener(channel, on_notify)
    except BaseException:
        await conn.close()
        raise
    conn.add_termination_listener(on_lost)
    return conn


async def migrate(
    conn: Any,
    *,
    lock: int,
    table: str,
    migrations: dict[int, tuple[str, ...]],
    newest: int,
    where: str,
    migrated: Callable[[int], None],
) -> None:
    """Apply the missing migrations inside the caller's transaction, under an advisory lock.

    Instances starting together take turns: the version is read under the lock.

    Args:
        conn: a connection in a transaction.
        lock: the advisory lock id.
        table: the table holding the schema version rows (created if absent).
        migrations: the statements of each version, from 1 to ``newest``.
        newest: the schema version this bridge writes.
        where: the store, for :class:`SchemaTooNewError`.
        migrated: told each version once its statements ran.

    Raises:
        SchemaTooNewError: the database was migrated past ``newest`` (nothing changed).
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
    await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version integer NOT NULL)")
    version = int(await conn.fetchval(f"SELECT max(version) FROM {table}") or 0)
    if version > newest:
        raise SchemaTooNewError(where, version)
    for target in range(version + 1, newest + 1):
        for statement in migrations[target]:
            await conn.execute(statement)
        await conn.execute(f"INSERT INTO {table} (version) VALUES ($1)", target)
        migrated(target)


class PostgresConfigStore:
    """The :class:`~bridge.storage.base.ConfigStore` on a PostgreSQL database.

    Args:
        dsn: a libpq connection URI (``postgresql://user:password@host:port/db``); its
            password never reaches the log (:func:`redact_dsn`).
        pool_size: most connections for reads and writes (one more listens).
        check_interval_s: how often :meth:`wait_for_change` pings its listener connection
            and reads the revision counter, in seconds — a safety net for a listener that
            died silently (no TCP reset). Notifications normally arrive long before.
        reconnect_cap_s: the longest wait between reconnect attempts, in seconds.
        connect_timeout_s: bound on one connection attempt, in seconds.
        op_timeout_s: bound on one store operation (acquire, statements, commit), in
            seconds: a database that stops answering fails the operation (5000) instead
            of holding the service's write lock forever.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        check_interval_s: float = 2.0,
        reconnect_cap_s: float = 5.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        op_timeout_s: float = OP_TIMEOUT_S,
    ) -> None:
        """Configure the store; nothing connects until :meth:`open`."""
        self.dsn = dsn
        self.pool_size = pool_size
        self.check_interval_s = check_interval_s
        self.reconnect_cap_s = reconnect_cap_s
        self.connect_timeout_s = connect_timeout_s
        self.op_timeout_s = op_timeout_s
        self.recovered_from: str | None = None
        self.repaired: list[str] = []
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._listener_lost = False
        self._seen_revision = 0
        """Highest revision this instance has read or written: notifications at or
        below it (this instance's own, or already applied) wake nobody."""
        self._notified_revision = 0
        self._closed = False

    @property
    def where(self) -> str:
        """The DSN with its password redacted, for logs and error messages."""
        return redact_dsn(self.dsn)

    # ---- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, and start listening.

        Raises:
            SchemaTooNewError: the database was migrated by a newer bridge.
            StartupError: the server cannot be reached or refuses the login.
        """
        self._pool = await create_pool(
            self.dsn,
            size=self.pool_size,
            connect_timeout_s=self.connect_timeout_s,
            op_timeout_s=self.op_timeout_s,
            name="bridge",
            where=f"at {self.where}",
        )
        try:
            await self._migrate()
            await self._repair()
            await self._listen()
        except BaseException:
            await self.close()
            raise
        log.info("store_opened", backend="postgresql", dsn=self.where)

    async def _migrate(self) -> None:
        """Apply the missing migrations in one transaction under an advisory lock.

        Instances starting together take turns: the version is read under the lock.
        """
        async with self._acquire() as conn, conn.transaction():
            await migrate(
                conn,
                lock=_MIGRATION_LOCK,
                table="bridge_schema",
                migrations=_MIGRATIONS,
                newest=SCHEMA_VERSION,
                where=self.where,
                migrated=lambda target: log.info("store_migrated", backend="postgresql", to_version=target),
            )

    async def _repair(self) -> None:
        """Repair structural damage that loses nothing (DESIGN §3), under the migration lock.

        A lost revision row is recomputed from what the database holds (the highest
        revision of any row or logged change); a lost change log is recreated empty
        (instances behind it reload); a dropped write trigger is recreated.

        Raises:
            StartupError: the configs table is gone (data lost: nothing to serve from).
        """
        found: list[str] = []
        async with self._acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if await conn.fetchval("SELECT to_regclass('bridge_configs')") is None:
                raise StartupError(f"The PostgreSQL store at {self.where} has lost its bridge_configs table")
            if await conn.fetchval("SELECT to_regclass('bridge_changes')") is None:
                await conn.execute(_MIGRATIONS[1][-1])
                found.append("changes table missing")
            if await conn.fetchval("SELECT to_regclass('bridge_meta')") is None:
                await conn.execute(_MIGRATIONS[1][0])
                found.append("meta table missing")
            if await conn.fetchval("SELECT revision FROM bridge_meta WHERE id = 1") is None:
                top = await conn.fetchval(
                    "SELECT GREATEST(COALESCE((SELECT max(revision) FROM bridge_configs), 0), "
                    "COALESCE((SELECT max(revision) FROM bridge_changes), 0))"
                )
                await conn.execute("INSERT INTO bridge_meta (id, revision) VALUES (1, $1)", int(top))
                found.append("revision row missing")
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'bridge_configs_write' "
                "AND tgrelid = 'bridge_configs'::regclass)"
            ):
                if await conn.fetchval("SELECT to_regproc('bridge_configs_write')") is None:
                    await conn.execute(_MIGRATIONS[2][0])
                await conn.execute(_MIGRATIONS[2][-1])
                found.append("trigger bridge_configs_write missing")
        if found:
            self.repaired.extend(found)
            log.warning("store_repaired", backend="postgresql", findings=found)

    async def close(self) -> None:
        """Stop listening and close every connection; idempotent."""
        self._closed = True
        self._wake.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 5)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except Exception:
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Any]:
        """Yield a pooled connection for one bounded operation.

        A connection-level failure (the server restarted, a backend was terminated)
        expires every pooled connection: the next operation gets fresh ones instead of
        tripping over the other dead sockets one by one.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("store is not open")
        try:
            async with asyncio.timeout(self.op_timeout_s), pool.acquire() as conn:
                yield conn
        except _CONNECTION_ERRORS:
            await pool.expire_connections()
            raise

    # ---- change notifications ---------------------------------------------------------

    async def _listen(self) -> None:
        """Open the dedicated listener connection and ``LISTEN`` on :data:`CHANNEL`."""
        conn = await listen(
            self.dsn,
            connect_timeout_s=self.connect_timeout_s,
            # Names the connection in pg_stat_activity, for operators (and the fault tests).
            name="bridge-listener",
            channel=CHANNEL,
            on_notify=self._on_notify,
            on_lost=self._on_listener_terminated,
        )
        self._listener = conn
        self._listener_lost = False

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            revision = int(orjson.loads(payload)["revision"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            revision = self._notified_revision + 1  # unreadable: look anyway
        self._notified_revision = max(self._notified_revision, revision)
        if revision > self._seen_revision:
            self._wake.set()

    def _on_listener_terminated(self, _conn: object) -> None:
        if not self._closed:
            self._listener_lost = True
            self._wake.set()

    async def _relisten(self) -> None:
        """Re-establish the listener, retrying with capped exponential backoff and jitter."""
        old, self._listener = self._listener, None
        if old is not None:
            old.terminate()
        log.warning("store_listener_lost", dsn=self.where)
        delay = backoff_delays(cap_s=self.reconnect_cap_s)
        attempts = 0
        while not self._closed:
            attempts += 1
            try:
                await self._listen()
            except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                wait_s = delay()
                log.info("store_listener_retry", attempt=attempts, error=type(exc).__name__, wait_s=wait_s)
                await asyncio.sleep(wait_s)
            else:
                log.info("store_listener_restored", attempts=attempts)
                return

    async def wait_for_change(self) -> None:
        """Return once another instance may have committed.

        Wakes on a ``NOTIFY`` above the highest revision this instance has seen; after a
        lost listener connection is re-established (changes during the gap were not
        notified); or when the periodic counter check finds a newer revision.
        """
        while not self._closed:
            if self._listener is None or self._listener_lost or self._listener.is_closed():
                await self._relisten()
                return
            if self._notified_revision > self._seen_revision:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.check_interval_s)
            except TimeoutError:
                if not await self._listener_alive():
                    self._listener_lost = True
                    continue
                if await self._counter_moved():
                    return
                continue
            if self._listener_lost:
                continue
            if self._notified_revision > self._seen_revision:
                return
        await asyncio.Event().wait()  # closed: nothing will ever change

    async def _listener_alive(self) -> bool:
        """Ping the listener connection: a socket that died without a reset looks open."""
        listener = self._listener
        if listener is None:
            return False
        try:
            await asyncio.wait_for(listener.fetchval("SELECT 1"), self.connect_timeout_s)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError):
            return False
        return True

    async def _counter_moved(self) -> bool:
        try:
            async with self._acquire() as conn:
                revision = int(await conn.fetchval("SELECT revision FROM bridge_meta WHERE id = 1"))
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError):
            return False
        return revision > self._seen_revision

    def _saw(self, revision: int) -> None:
        self._seen_revision = max(self._seen_revision, revision)

    # ---- reads ----------------------------------------------------------------------

    async def has_ciphertexts(self) -> bool:
        """Return True when any config row exists (each holds an encrypted key)."""
        async with self._acquire() as conn:
            return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM bridge_configs)"))

    async def key_ids(self) -> set[bytes]:
        """Return the ids (8 bytes each) of the data keys that sealed the stored API keys."""
        async with self._acquire() as conn:
            rows = await conn.fetch("SELECT DISTINCT key_id FROM bridge_configs")
        return {bytes(r["key_id"]) for r in rows}

    def moved(self) -> bool:
        """True when a notification above the highest revision seen has arrived (no query)."""
        return self._notified_revision > self._seen_revision

    async def reseal(self, seal: Callable[[StoredConfig], bytes | None]) -> int:
        """Replace every row's ciphertext by ``seal(row)`` in one transaction (key rotation)."""
        async with self._acquire() as conn, conn.transaction():
            await conn.fetchval("SELECT revision FROM bridge_meta WHERE id = 1 FOR UPDATE")
            rows = [
                protocol.make_row(r)
                for r in await conn.fetch(f"SELECT {_COLUMNS} FROM bridge_configs ORDER BY seq")
            ]
            count = 0
            for row in rows:
                sealed = seal(row)
                if sealed is not None:
                    await conn.execute(
                        "UPDATE bridge_configs SET api_key_ct = $1 WHERE id = $2", sealed, row.id
                    )
                    count += 1
        return count

    async def load(self) -> StoreState:
        """Return every config in creation order and the revision, from one snapshot.

        Structural damage that loses nothing is repaired first (:meth:`_repair`).
        """
        async with self._acquire() as conn:
            healthy = (
                await conn.fetchval(
                    "SELECT to_regclass('bridge_changes') IS NOT NULL AND EXISTS "
                    "(SELECT 1 FROM bridge_meta WHERE id = 1) AND EXISTS (SELECT 1 FROM pg_trigger "
                    "WHERE tgname = 'bridge_configs_write' AND tgrelid = 'bridge_configs'::regclass)"
                )
                if await conn.fetchval("SELECT to_regclass('bridge_meta')") is not None
                else False
            )
        if not healthy:
            await self._repair()
        async with self._acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            revision = int(await conn.fetchval("SELECT revision FROM bridge_meta WHERE id = 1"))
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM bridge_configs ORDER BY seq")
        self._saw(revision)
        return StoreState(revision, [protocol.make_row(r) for r in rows])

    async def changes_since(self, since: int) -> WriteOutcome:
        """Return the changes after ``since`` in revision order (None: reload needed)."""
        async with self._acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            outcome = await _feed(conn, since, int(await conn.fetchval(_REVISION)), None, None)
        self._saw(outcome.revision)
        return outcome

    # ---- writes ---------------------------------------------------------------------

    async def _write(self, fn: Callable[[Any], Awaitable[protocol.Written]], since: int) -> WriteOutcome:
        """Run ``fn`` in a transaction holding the counter row; the feed ends with its change.

        Other instances' changes come from the log, this write's own from the row the
        statement returned. When the connection is lost at COMMIT, the change log is read
        on a fresh connection (:meth:`_committed`): a write found there is returned as
        done; otherwise the error is raised.
        """
        seen_before = self._seen_revision
        outcome: WriteOutcome | None = None
        own: Change[StoredConfig] | None = None
        try:
            async with self._acquire() as conn, conn.transaction():
                # The global write lock: writes of every instance take turns here, so the
                # revision each one takes follows commit order.
                revision_before = int(
                    await conn.fetchval("SELECT revision FROM bridge_meta WHERE id = 1 FOR UPDATE")
                )
                written = await fn(conn)
                revision = int(await conn.fetchval(_REVISION))
                own = protocol.own_change(written, revision_before, revision)
                outcome = await _feed(conn, since, revision, own, written.current)
                # The trigger sent NOTIFY (delivered at commit). Before COMMIT: our own
                # notification may be handled before this task resumes, and must not wake
                # the watcher.
                self._saw(outcome.revision)
        except _CONNECTION_ERRORS:
            # Lost at COMMIT (or right after it), the transaction may have committed: a
            # write that did is reported as done, not as a failure the caller would retry.
            try:
                confirmed = outcome is not None and own is not None and await self._committed(own)
            except BaseException:  # cancelled while checking: as not committed
                self._forget(seen_before)
                raise
            if confirmed:
                assert outcome is not None
                log.warning("commit_confirmed_after_error", revision=outcome.revision)
                return outcome
            self._forget(seen_before)
            raise
        except BaseException:
            self._forget(seen_before)
            raise
        return outcome

    def _forget(self, seen_before: int) -> None:
        """Undo :meth:`_saw` for a write that did not commit.

        Its revision may go to another instance, whose notification must not be mistaken
        for ours.
        """
        self._seen_revision = seen_before
        if self._notified_revision > self._seen_revision:
            self._wake.set()

    async def _committed(self, own: Change[StoredConfig]) -> bool:
        """Whether ``own``, the change a failed write logged, is in the store.

        Reads the change log on a fresh connection: committed when that revision holds
        exactly our change (:func:`~bridge.storage.protocol.is_logged`). An unreachable
        server answers False (the write is then reported as failed).
        """
        try:
            async with self._acquire() as conn:
                found = await conn.fetchrow(
                    "SELECT id, type, row FROM bridge_changes WHERE revision = $1", own.revision
                )
        except Exception:
            log.warning("commit_outcome_unknown", revision=own.revision)
            return False
        if found is None:
            return False
        logged = found["row"]
        return protocol.is_logged(own, found["id"], found["type"], None if logged is None else bytes(logged))

    async def insert(self, config: StoredConfig, since: int) -> WriteOutcome:
        """Insert at the next revision; raises DuplicateConfigNameError on a name clash."""

        async def fn(conn: Any) -> protocol.Written:
            try:
                async with conn.transaction():  # a savepoint: the name clash is ours to report
                    # The trigger sets seq, key_id and the revision, logs and notifies.
                    written = await conn.fetchrow(
                        f"INSERT INTO bridge_configs ({_COLUMNS}) "
                        f"VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING {_COLUMNS}",
                        *row_values(config),
                    )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "bridge_configs_name_key":
                    raise DuplicateConfigNameError from None
                raise
            row = protocol.make_row(written)
            return protocol.Written(config.id, row, row, created=True)

        return await self._write(fn, since)

    async def update(
        self, config_id: str, mutate: Mutation, expected_version: int | None, since: int
    ) -> WriteOutcome:
        """Apply ``mutate`` to the row locked ``FOR UPDATE`` (see the protocol)."""

        async def fn(conn: Any) -> protocol.Written:
            found = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM bridge_configs WHERE id = $1 FOR UPDATE", config_id
            )
            current = None if found is None else protocol.make_row(found)
            updated = protocol.checked_update(config_id, current, mutate, expected_version)
            if updated is None:
                return protocol.Written(config_id, current, current)
            try:
                async with conn.transaction():
                    # The trigger sets version + 1, key_id and the revision, logs and notifies.
                    written = await conn.fetchrow(_UPDATE, *protocol.update_values(updated), config_id)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "bridge_configs_name_key":
                    raise DuplicateConfigNameError from None
                raise
            row = protocol.make_row(written)
            return protocol.Written(config_id, row, row)

        return await self._write(fn, since)

    async def delete(self, config_id: str, expected_version: int | None, since: int) -> WriteOutcome:
        """Delete at the next revision; unknown id → no change, no error."""

        async def fn(conn: Any) -> protocol.Written:
            found = await conn.fetchval(
                "SELECT version FROM bridge_configs WHERE id = $1 FOR UPDATE", config_id
            )
            if protocol.checked_delete(config_id, found, expected_version):
                await conn.execute("DELETE FROM bridge_configs WHERE id = $1", config_id)
            return protocol.Written(config_id, None, None)

        return await self._write(fn, since)


async def _feed(
    conn: Any, since: int, revision: int, own: Change[StoredConfig] | None, current: StoredConfig | None
) -> WriteOutcome:
    """The feed after ``since``: the log's window, and the table's rows of the ids it names.

    What it means is :func:`~bridge.storage.protocol.build_feed`'s (the change log's rules).
    """
    window = changelog.log_window(since, revision, own)
    if window is None:
        return protocol.build_feed([], {}, revision=revision, own=own, current=current)
    oldest = await conn.fetchval("SELECT min(revision) FROM bridge_changes")
    rows = await conn.fetch(
        "SELECT revision, type, id, row FROM bridge_changes WHERE revision > $1 AND revision <= $2 "
        "ORDER BY revision",
        *window,
    )
    present: dict[str, StoredConfig] = {}
    if ids := list({r["id"] for r in rows}):
        found = await conn.fetch(f"SELECT {_COLUMNS} FROM bridge_configs WHERE id = ANY($1::text[])", ids)
        present = {r["id"]: protocol.make_row(r) for r in found}
    return protocol.build_feed(
        [tuple(r) for r in rows],
        present,
        revision=revision,
        own=own,
        current=current,
        window=window,
        oldest=oldest,
    )
