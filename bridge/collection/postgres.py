"""``PostgresCollectionStore``: every collection's items on a PostgreSQL database shared by instances.

The same contract and the same write protocol (:mod:`bridge.collection.protocol`) as
:class:`~bridge.collection.sqlite.SqliteCollectionStore`, on ``asyncpg``; only the SQL
differs:

- Every write first takes the collection's next revision with ``INSERT … ON CONFLICT DO
  UPDATE SET revision = revision + 1 RETURNING revision``: the counter row stays locked
  until commit, so the writers of one collection, in every instance, take turns there
  and revisions are gap-free and in commit order. The checks of
  :func:`~bridge.collection.protocol.check_write` then run on the row, and a refused
  write rolls the revision back with everything else.
- Unique keys are the primary key of ``bridge_item_keys``.
- Each write logs its row in ``bridge_collection_changes`` and sends ``NOTIFY
  bridge_collections`` (delivered at commit). :meth:`data_version` moves on each one, and
  reads -1 (look now) while the listener connection is down; it is re-established with
  capped exponential backoff and full jitter.
- The schema version is a row of ``bridge_collection_schema``; a database with a higher
  one is refused, never touched. Migrations run in one transaction under an advisory
  lock (stop every instance, start one upgraded instance, then the others).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg
import structlog

from bridge.backoff import backoff_delays
from bridge.collection import protocol
from bridge.collection.protocol import Change, Feed, StoredItem
from bridge.keystore import KEY_ID_BYTES
from bridge.models import ChangeType
from bridge.storage import changelog
from bridge.storage.postgres import CONNECT_TIMEOUT_S, OP_TIMEOUT_S, create_pool, listen, migrate

log = structlog.get_logger(__name__)

SCHEMA_VERSION: Final = 1
"""Row of ``bridge_collection_schema``."""
CHANNEL: Final = "bridge_collections"
"""The ``LISTEN/NOTIFY`` channel (payload: the collection's name)."""
_MIGRATION_LOCK: Final = 0x6272_6964_636F  # one advisory lock id for the collections' migrations

_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE bridge_items (
            seq bigserial PRIMARY KEY,
            collection text NOT NULL,
            id text NOT NULL,
            data text NOT NULL,
            created_at text NOT NULL,
            updated_at text NOT NULL,
            version integer NOT NULL CHECK (version >= 1),
            revision bigint NOT NULL,
            UNIQUE (collection, id)
        )""",
        """CREATE TABLE bridge_item_keys (
            collection text NOT NULL,
            field text NOT NULL,
            key text NOT NULL,
            id text NOT NULL,
            PRIMARY KEY (collection, field, key)
        )""",
        "CREATE INDEX bridge_item_keys_by_id ON bridge_item_keys (collection, id)",
        """CREATE TABLE bridge_collection_revisions (
            collection text PRIMARY KEY,
            revision bigint NOT NULL
        )""",
        """CREATE TABLE bridge_collection_changes (
            collection text NOT NULL,
            revision bigint NOT NULL,
            id text NOT NULL,
            type text NOT NULL,
            row text,
            PRIMARY KEY (collection, revision)
        )""",
    ),
}
_SELECT: Final = f"SELECT {', '.join(protocol.ITEM_COLUMNS)} FROM bridge_items"  # noqa: S608 - fixed column names
_RESEAL_SELECT: Final = (
    f"SELECT collection, {', '.join(protocol.ITEM_COLUMNS)} FROM bridge_items ORDER BY seq FOR UPDATE"  # noqa: S608 - fixed column names
)
_BUMP: Final = (
    "UPDATE bridge_collection_revisions SET revision = revision + 1 WHERE collection = $1 RETURNING revision"
)
_RESTART: Final = (
    # The counter row is lost: it restarts at $2 (protocol.recovered_revision + 1); two
    # writers restarting at once meet in ON CONFLICT, and the second takes the next one.
    "INSERT INTO bridge_collection_revisions (collection, revision) VALUES ($1, $2) "
    "ON CONFLICT (collection) DO UPDATE SET revision = bridge_collection_revisions.revision + 1 "
    "RETURNING revision"
)


class _UnknownItemError(Exception):
    """Raised inside a delete's transaction when there is no row (rolls the revision back)."""


class PostgresCollectionStore(protocol.CollectionStore):
    """Items of every collection on one PostgreSQL database, shared by every instance.

    Args:
        dsn: a libpq connection URI; its password never reaches the log.
        poll_interval_s: how often a follower polls :meth:`data_version`, in seconds.
        pool_size: most connections for reads and writes (one more listens).
    """

    def __init__(self, dsn: str, *, poll_interval_s: float = 0.2, pool_size: int = 4) -> None:
        """Configure the store; nothing connects until :meth:`open`."""
        self.dsn = dsn
        self.poll_interval_s = poll_interval_s
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._relistening: asyncio.Task[None] | None = None
        self._generation = 0
        self._closed = False

    # ---- lifecycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, and start listening.

        Raises:
            SchemaTooNewError: the collections' schema was migrated by a newer bridge.
            StartupError: the server cannot be reached or refuses the login.
        """
        self._pool = await create_pool(
            self.dsn,
            size=self.pool_size,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            op_timeout_s=OP_TIMEOUT_S,
            name="bridge-collections",
            where="for the collections",
        )
        try:
            await self._migrate()
            await self._listen()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self._pool_or_fail().acquire() as conn, conn.transaction():
            await migrate(
                conn,
                lock=_MIGRATION_LOCK,
                table="bridge_collection_schema",
                migrations=_MIGRATIONS,
                newest=SCHEMA_VERSION,
                where="the PostgreSQL collections schema",
                migrated=lambda target: log.info(
                    "collections_migrated", backend="postgresql", to_version=target
                ),
            )

    async def close(self) -> None:
        """Close the listener and the pool; idempotent."""
        self._closed = True
        if self._relistening is not None:
            self._relistening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relistening
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _pool_or_fail(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # ---- change notifications -----------------------------------------------------------

    async def _listen(self) -> None:
        conn = await listen(
            self.dsn,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            name="bridge-collections-listener",
            channel=CHANNEL,
            on_notify=self._on_notify,
            on_lost=self._on_lost,
        )
        self._listener = conn
        self._generation += 1  # whatever was committed while nobody listened: look

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: str) -> None:
        self._generation += 1

    def _on_lost(self, _conn: object) -> None:
        if self._closed or self._relistening is not None:
            return
        self._listener = None
        self._relistening = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        log.warning("collections_listener_lost")
        delay = backoff_delays(base_s=0.1, cap_s=5.0)
        try:
            while not self._closed:
                try:
                    await self._listen()
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await asyncio.sleep(delay())
                else:
                    log.info("collections_listener_restored")
                    return
        finally:
            self._relistening = None

    def data_version(self) -> int:
        """A number that moves with every commit of any instance; -1 while not listening (look now)."""
        listener = self._listener
        if listener is None or listener.is_closed():
            if listener is not None:
                self._on_lost(listener)
            return -1
        return self._generation

    # ---- reads ----------------------------------------------------------------------

    async def load(self, collection: str) -> tuple[int, list[StoredItem]]:
        """Return the collection's revision and every item in creation order (one snapshot)."""
        async with (
            self._pool_or_fail().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            revision = await _revision(conn, collection)
            rows = await conn.fetch(f"{_SELECT} WHERE collection = $1 ORDER BY seq", collection)
        return revision, [protocol.make_item(tuple(r)) for r in rows]

    async def changes_since(self, collection: str, since: int) -> Feed[StoredItem]:
        """Return the changes after revision ``since`` (``changes`` None: the log does not reach it)."""
        async with (
            self._pool_or_fail().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await _feed(conn, collection, since, await _revision(conn, collection), None)

    async def has_ciphertexts(self) -> bool:
        """True when any item holds a secret (the data key that sealed it must not be lost)."""
        return bool(await self.key_ids())

    async def key_ids(self) -> set[bytes]:
        """The ids of the data keys naming any stored secret, in every collection."""
        found: set[bytes] = set()
        async with self._pool_or_fail().acquire() as conn:
            for record in await conn.fetch("SELECT data FROM bridge_items WHERE data LIKE '%$sealed%'"):
                found |= protocol.key_ids_of(protocol.decode_data(record["data"]), KEY_ID_BYTES)
        return found

    async def reseal(self, seal: protocol.Resealer) -> int:
        """Seal every secret again with ``seal``, in one transaction; return the items rewritten.

        Each rewritten item is a write (its collection's next revision, ``version + 1``,
        logged, notified): running instances publish it as ``updated``.
        """
        count = 0
        async with self._pool_or_fail().acquire() as conn, conn.transaction():
            rows = await conn.fetch(_RESEAL_SELECT)
            for record in rows:
                collection, *values = tuple(record)
                item = protocol.make_item(tuple(values))
                data = protocol.reseal_data(collection, item, seal)
                if data is None:
                    continue
                again = protocol.rewritten(item, data, await _bump(conn, collection))
                await conn.execute(
                    "UPDATE bridge_items SET data = $1, version = $2, revision = $3 "
                    "WHERE collection = $4 AND id = $5",
                    protocol.encode_data(data),
                    again.version,
                    again.revision,
                    collection,
                    item.id,
                )
                await _log(conn, collection, Change(again.revision, item.id, ChangeType.UPDATED, again))
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, collection)
                count += 1
        return count

    # ---- writes -------------------------------------------------------------------

    async def _insert(self, op: protocol.ItemWrite) -> Feed[StoredItem]:
        collection, item_id, now = op.collection, op.item_id, op.now

        async def write(conn: asyncpg.Connection, revision: int) -> StoredItem:
            await _insert_keys(conn, collection, item_id, op.keys)
            seq = await conn.fetchval(
                "INSERT INTO bridge_items (collection, id, data, created_at, updated_at, version, revision) "
                "VALUES ($1, $2, $3, $4, $4, 1, $5) RETURNING seq",
                collection,
                item_id,
                protocol.encode_data(op.data),
                now,
                revision,
            )
            return protocol.created_item(item_id, int(seq), op.data, now, revision)

        return await self._write(collection, op.since, ChangeType.CREATED, write)

    async def _update(self, op: protocol.ItemWrite) -> Feed[StoredItem]:
        collection, item_id = op.collection, op.item_id

        async def write(conn: asyncpg.Connection, revision: int) -> StoredItem:
            found = await conn.fetchrow(
                f"{_SELECT} WHERE collection = $1 AND id = $2 FOR UPDATE", collection, item_id
            )
            stored = None if found is None else found["version"]
            protocol.check_write(item_id, stored, op.expected_version, op.base_version)
            item = protocol.rewritten(protocol.make_item(tuple(found)), op.data, revision, op.now)
            await conn.execute(
                "DELETE FROM bridge_item_keys WHERE collection = $1 AND id = $2", collection, item_id
            )
            await _insert_keys(conn, collection, item_id, op.keys)
            await conn.execute(
                "UPDATE bridge_items SET data = $1, updated_at = $2, version = $3, revision = $4 "
                "WHERE collection = $5 AND id = $6",
                protocol.encode_data(op.data),
                op.now,
                item.version,
                item.revision,
                collection,
                item_id,
            )
            return item

        return await self._write(collection, op.since, ChangeType.UPDATED, write)

    async def _delete(self, op: protocol.ItemDelete) -> Feed[StoredItem] | None:
        collection, item_id = op.collection, op.item_id

        async def write(conn: asyncpg.Connection, revision: int) -> StoredItem:
            found = await conn.fetchrow(
                f"{_SELECT} WHERE collection = $1 AND id = $2 FOR UPDATE", collection, item_id
            )
            protocol.check_write(
                item_id, None if found is None else found["version"], op.expected_version, None
            )
            if found is None:
                raise _UnknownItemError
            await conn.execute(
                "DELETE FROM bridge_item_keys WHERE collection = $1 AND id = $2", collection, item_id
            )
            await conn.execute(
                "DELETE FROM bridge_items WHERE collection = $1 AND id = $2", collection, item_id
            )
            return StoredItem(item_id, 0, None, "", "", 0, revision)

        try:
            return await self._write(collection, op.since, ChangeType.DELETED, write)
        except _UnknownItemError:
            return None

    async def _write(
        self,
        collection: str,
        since: int,
        kind: ChangeType,
        write: Callable[[asyncpg.Connection, int], Awaitable[StoredItem]],
    ) -> Feed[StoredItem]:
        async with self._pool_or_fail().acquire() as conn, conn.transaction():
            revision = await _bump(conn, collection)
            item = await write(conn, revision)
            own = Change(revision, item.id, kind, None if kind is ChangeType.DELETED else item)
            await _log(conn, collection, own)
            feed = await _feed(conn, collection, since, revision, own)
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, collection)
        return feed


async def _revision(conn: asyncpg.Connection, collection: str) -> int:
    """The collection's revision: its counter row, else (row lost) :func:`~protocol.recovered_revision`."""
    found = await conn.fetchval(
        "SELECT revision FROM bridge_collection_revisions WHERE collection = $1", collection
    )
    if found is not None:
        return int(found)
    logged, stored = await conn.fetchrow(
        "SELECT (SELECT max(revision) FROM bridge_collection_changes WHERE collection = $1), "
        "(SELECT max(revision) FROM bridge_items WHERE collection = $1)",
        collection,
    )
    return protocol.recovered_revision(logged, stored)


async def _bump(conn: asyncpg.Connection, collection: str) -> int:
    """Take the collection's next revision (gap-free: the counter row stays locked until commit)."""
    bumped = await conn.fetchval(_BUMP, collection)
    if bumped is None:
        bumped = await conn.fetchval(_RESTART, collection, await _revision(conn, collection) + 1)
    return int(bumped)


async def _insert_keys(
    conn: asyncpg.Connection, collection: str, item_id: str, keys: list[tuple[str, str]]
) -> None:
    for field, key in keys:
        try:
            # A savepoint: the refused key leaves the transaction usable for the rollback path.
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO bridge_item_keys (collection, field, key, id) VALUES ($1, $2, $3, $4)",
                    collection,
                    field,
                    key,
                    item_id,
                )
        except asyncpg.UniqueViolationError:
            raise protocol.duplicate_key(collection, field) from None


async def _log(conn: asyncpg.Connection, collection: str, own: Change[StoredItem]) -> None:
    """Log ``own`` (the writer's change) and trim the log (:func:`trim_below`)."""
    await conn.execute(
        "INSERT INTO bridge_collection_changes (collection, revision, id, type, row) "
        "VALUES ($1, $2, $3, $4, $5)",
        collection,
        own.revision,
        own.id,
        own.kind.value,
        protocol.logged_row(own),
    )
    below = protocol.trim_below(own.revision)
    if below is not None:
        await conn.execute(
            "DELETE FROM bridge_collection_changes WHERE collection = $1 AND revision <= $2",
            collection,
            below,
        )


async def _feed(
    conn: asyncpg.Connection,
    collection: str,
    since: int,
    revision: int,
    own: Change[StoredItem] | None,
) -> Feed[StoredItem]:
    """Changes after ``since``: the log's window, and the table's items of the ids it names.

    What it means is :func:`bridge.storage.changelog.build_feed`'s (the change log's rules).
    """
    window = changelog.log_window(since, revision, own)
    if window is None:
        return changelog.build_feed(protocol.ITEM_LOG, [], {}, revision=revision, own=own)
    oldest = await conn.fetchval(
        "SELECT min(revision) FROM bridge_collection_changes WHERE collection = $1", collection
    )
    rows = await conn.fetch(
        "SELECT revision, type, id, row FROM bridge_collection_changes "
        "WHERE collection = $1 AND revision > $2 AND revision <= $3 ORDER BY revision",
        collection,
        *window,
    )
    # The table's item of each id the entries name, in the same transaction: the cross-check.
    present: dict[str, StoredItem] = {}
    if ids := list({r["id"] for r in rows}):
        found = await conn.fetch(f"{_SELECT} WHERE collection = $1 AND id = ANY($2::text[])", collection, ids)
        present = {r["id"]: protocol.make_item(tuple(r)) for r in found}
    return changelog.build_feed(
        protocol.ITEM_LOG,
        [tuple(r) for r in rows],
        present,
        revision=revision,
        own=own,
        window=window,
        oldest=oldest,
    )
