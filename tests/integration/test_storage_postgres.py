"""``PostgresConfigStore`` on a real PostgreSQL server (DESIGN §3, issue 9)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from bridge.errors import DuplicateConfigNameError, SchemaTooNewError, StartupError, VersionConflictError
from bridge.keystore import DataKey, KeyCipher
from bridge.models import ChangeType
from bridge.storage import StoredConfig
from bridge.storage.base import backoff_delays
from bridge.storage.postgres import SCHEMA_VERSION, PostgresConfigStore, redact_dsn
from tests.conftest import OPENAI_KEY

CIPHER = KeyCipher(DataKey(b"k" * 32, "file"))
TIMEOUT_S = 10.0


def row(name: str) -> StoredConfig:
    config_id = str(uuid.uuid4())
    return StoredConfig(
        id=config_id,
        custom_name=name,
        name_key=name.casefold(),
        provider="openai",
        api_key_ct=CIPHER.encrypt(OPENAI_KEY, config_id),
        api_key_preview="sk-...890",
        base_url=None,
        use_auth_header=True,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        version=1,
    )


@pytest.fixture
async def store(pg_dsn: str) -> AsyncIterator[PostgresConfigStore]:
    s = PostgresConfigStore(pg_dsn, check_interval_s=30)
    await s.open()
    yield s
    await s.close()


async def test_open_creates_schema_once_and_concurrent_opens_agree(pg_dsn: str) -> None:
    stores = [PostgresConfigStore(pg_dsn) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        await s.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        # One row per migration, each applied once.
        assert await conn.fetch("SELECT version FROM bridge_schema ORDER BY version") == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
    finally:
        await conn.close()


async def test_newer_schema_is_refused_and_left_untouched(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE bridge_schema (version integer NOT NULL)")
        await conn.execute("INSERT INTO bridge_schema VALUES (99)")
        with pytest.raises(SchemaTooNewError) as caught:
            await PostgresConfigStore(pg_dsn).open()
        assert caught.value.found == 99
        assert "***" in caught.value.message or "@" not in caught.value.message
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bridge_%'")
        assert tables == 1
    finally:
        await conn.close()


async def test_writes_take_gap_free_revisions_and_log_one_change_with_its_row_each(
    store: PostgresConfigStore,
) -> None:
    first = row("One")
    created = await store.insert(first, 0)
    assert (created.revision, created.written) == (1, True)

    def rename(current: StoredConfig) -> StoredConfig:
        return replace(current, custom_name="Two", name_key="two", version=current.version + 1)

    updated = await store.update(first.id, rename, 1, 1)
    assert updated.current is not None
    assert (updated.revision, updated.current.version, updated.current.revision) == (2, 2, 2)
    noop = await store.update(first.id, lambda _: None, None, 2)
    assert (noop.revision, noop.written, noop.changes) == (2, False, [])
    deleted = await store.delete(first.id, 2, 2)
    assert (deleted.revision, deleted.written) == (3, True)
    assert (await store.delete(first.id, None, 3)).written is False

    feed = await store.changes_since(0)
    assert feed.changes is not None
    assert [(c.revision, c.type) for c in feed.changes] == [
        (1, ChangeType.CREATED),
        (2, ChangeType.UPDATED),
        (3, ChangeType.DELETED),
    ]
    assert feed.changes[0].config == replace(first, revision=1)  # the row as of revision 1
    assert feed.changes[1].config is not None
    assert feed.changes[1].config.custom_name == "Two"


async def test_key_id_is_recorded_in_its_own_column(store: PostgresConfigStore, pg_dsn: str) -> None:
    await store.insert(row("Keyed"), 0)
    assert await store.key_ids() == {CIPHER.encrypt("x", "y")[:8]}
    conn = await asyncpg.connect(pg_dsn)
    try:
        ct, key_id = await conn.fetchrow("SELECT api_key_ct, key_id FROM bridge_configs")
    finally:
        await conn.close()
    assert bytes(ct)[:8] == bytes(key_id)
    assert OPENAI_KEY.encode() not in bytes(ct)


async def test_two_stores_race_same_name_and_same_expected_version(pg_dsn: str) -> None:
    a, b = PostgresConfigStore(pg_dsn), PostgresConfigStore(pg_dsn)
    await a.open()
    await b.open()
    try:
        results = await asyncio.gather(
            *(s.insert(row("Same"), 0) for s in (a, b) for _ in range(5)), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, DuplicateConfigNameError) for r in results if isinstance(r, BaseException))
        (winner,) = (await a.load()).configs

        def bump(current: StoredConfig) -> StoredConfig:
            return replace(current, updated_at="x", version=current.version + 1)

        results = await asyncio.gather(
            *(s.update(winner.id, bump, 1, 0) for s in (a, b) for _ in range(5)), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, VersionConflictError) for r in results if isinstance(r, BaseException))
        state = await b.load()
        assert (state.revision, state.configs[0].version) == (2, 2)
    finally:
        await a.close()
        await b.close()


async def test_wait_for_change_wakes_on_another_store_not_on_its_own(pg_dsn: str) -> None:
    a = PostgresConfigStore(pg_dsn, check_interval_s=60)
    b = PostgresConfigStore(pg_dsn, check_interval_s=60)
    await a.open()
    await b.open()
    try:
        waiter = asyncio.ensure_future(a.wait_for_change())
        await a.insert(row("Own"), 0)  # its own write: no wake-up
        await b.changes_since(0)  # b has seen revision 1: b's own next write is what counts
        done, _ = await asyncio.wait({waiter}, timeout=0.5)
        assert not done
        await b.insert(row("Other"), 1)
        await asyncio.wait_for(waiter, TIMEOUT_S)
        feed = await a.changes_since(1)
        assert feed.changes is not None
        assert [c.revision for c in feed.changes] == [2]
    finally:
        await a.close()
        await b.close()


async def test_terminated_listener_is_replaced_and_wait_for_change_returns(
    store: PostgresConfigStore, pg_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'bridge-listener-%' "
            "AND datname = current_database()"
        )
        waiter = asyncio.ensure_future(store.wait_for_change())
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        await asyncio.wait_for(waiter, TIMEOUT_S)  # returns so the caller reloads the gap
        new_pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'bridge-listener-%' "
            "AND datname = current_database()"
        )
    finally:
        await conn.close()
    assert new_pid not in {None, pid}


async def test_unreachable_server_fails_with_a_redacted_startup_error() -> None:
    dsn = "postgresql://bridge:hunter2-secret@127.0.0.1:1/nowhere"
    with pytest.raises(StartupError) as caught:
        await PostgresConfigStore(dsn, connect_timeout_s=2).open()
    assert "hunter2-secret" not in caught.value.message
    assert "postgresql://bridge:***@127.0.0.1:1/nowhere" in caught.value.message


def test_redact_dsn_hides_passwords_in_both_forms() -> None:
    assert (
        redact_dsn("postgresql://u:p%40ss@h:5/db?sslmode=require")
        == "postgresql://u:***@h:5/db?sslmode=require"
    )
    assert redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_dsn("postgresql://h/db?password=s3cret&x=1") == "postgresql://h/db?password=***&x=1"


def test_backoff_delays_grow_exponentially_up_to_the_cap_with_jitter() -> None:
    delay = backoff_delays(base_s=0.1, cap_s=1.0)
    delays = [delay() for _ in range(50)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert all(d <= 0.1 * 2**i for i, d in enumerate(delays[:4]))
    assert len(set(delays)) > 40  # jittered, not a fixed schedule


class SilentConnection:
    """Fault injection: a listener whose peer vanished without a reset (open, never answers)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def is_closed(self) -> bool:
        return False

    async def fetchval(self, *_: object) -> object:
        await asyncio.Event().wait()
        return None

    def terminate(self) -> None:
        self.conn.terminate()


async def test_silently_dead_listener_is_detected_by_the_ping_and_replaced(pg_dsn: str) -> None:
    store = PostgresConfigStore(pg_dsn, check_interval_s=0.2, connect_timeout_s=0.5)
    await store.open()
    try:
        real = store._listener
        assert real is not None
        dead = SilentConnection(real)
        store._listener = dead
        await asyncio.wait_for(store.wait_for_change(), TIMEOUT_S)
        assert store._listener is not None
        assert store._listener is not dead
    finally:
        await store.close()


async def test_missed_notification_is_caught_by_the_counter_check(pg_dsn: str) -> None:
    a = PostgresConfigStore(pg_dsn, check_interval_s=0.2)
    b = PostgresConfigStore(pg_dsn)
    await a.open()
    await b.open()
    try:
        assert a._listener is not None
        await a._listener.execute("UNLISTEN bridge_changes")  # fault injection: deaf, still open
        waiter = asyncio.ensure_future(a.wait_for_change())
        await b.insert(row("Unheard"), 0)
        await asyncio.wait_for(waiter, TIMEOUT_S)
        feed = await a.changes_since(0)
        assert feed.changes is not None
        assert [c.revision for c in feed.changes] == [1]
    finally:
        await a.close()
        await b.close()


# ---- a connection lost at COMMIT (fault injection: asyncpg's Transaction.__aexit__) -------

_REAL_EXIT = asyncpg.transaction.Transaction.__aexit__


def _lose_connection_at_commit(
    monkeypatch: pytest.MonkeyPatch,
    *,
    after_commit: bool,
    meanwhile: Callable[[], Awaitable[object]] | None = None,
) -> list[str]:
    """The next top-level COMMIT fails with a lost connection, after or instead of committing.

    ``meanwhile`` runs between the two (another instance writing, say).
    """
    fired: list[str] = []

    async def exit_with_loss(self: Any, extype: Any, ex: Any, tb: Any) -> Any:
        if fired or extype is not None or self._nested:
            return await _REAL_EXIT(self, extype, ex, tb)
        lost = asyncpg.ConnectionDoesNotExistError("injected: connection lost at COMMIT")
        fired.append("after" if after_commit else "before")
        if after_commit:
            await _REAL_EXIT(self, None, None, None)  # COMMIT reaches the server...
        else:
            await _REAL_EXIT(self, type(lost), lost, None)  # ...or the transaction rolls back
        if meanwhile is not None:
            await meanwhile()
        raise lost  # ...and either way the client only sees the connection go

    monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", exit_with_loss)
    return fired


async def _stored_names(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [
            r["custom_name"] for r in await conn.fetch("SELECT custom_name FROM bridge_configs ORDER BY seq")
        ]
    finally:
        await conn.close()


async def test_a_write_that_committed_before_the_connection_was_lost_is_reported_done(
    store: PostgresConfigStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await store.insert(row("Before"), 0)
    fired = _lose_connection_at_commit(monkeypatch, after_commit=True)
    committed = row("Committed")
    outcome = await store.insert(committed, before.revision)
    assert fired == ["after"]
    assert outcome.written is True
    assert outcome.revision == before.revision + 1
    assert outcome.current == replace(committed, revision=outcome.revision)
    assert await _stored_names(pg_dsn) == ["Before", "Committed"]
    # The store keeps working, and the change feed holds the write once.
    feed = await store.changes_since(before.revision)
    assert feed.changes is not None
    assert [(c.revision, c.id) for c in feed.changes] == [(outcome.revision, committed.id)]


async def test_a_write_rolled_back_when_the_connection_was_lost_still_fails(
    store: PostgresConfigStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await store.insert(row("Before"), 0)
    fired = _lose_connection_at_commit(monkeypatch, after_commit=False)
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await store.insert(row("Rolled back"), before.revision)
    assert fired == ["before"]
    assert await _stored_names(pg_dsn) == ["Before"]
    assert (await store.changes_since(0)).revision == before.revision
    # The next write takes the revision the failed one did not.
    after = await store.insert(row("After"), before.revision)
    assert after.revision == before.revision + 1


async def test_a_rolled_back_delete_is_not_confirmed_by_another_instances_change_at_its_revision(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = PostgresConfigStore(pg_dsn, check_interval_s=30)
    b = PostgresConfigStore(pg_dsn, check_interval_s=30)
    await a.open()
    await b.open()
    try:
        config = row("Kept")
        first = await a.insert(config, 0)
        conn = await asyncpg.connect(pg_dsn)
        try:  # a's next write finds the log trimmed past its revision: no feed to compare with
            await conn.execute("DELETE FROM bridge_changes")
        finally:
            await conn.close()

        def rename(current: StoredConfig) -> StoredConfig:
            return replace(current, custom_name="Renamed", name_key="renamed", version=current.version + 1)

        async def b_takes_the_revision() -> None:
            taken = await b.update(config.id, rename, None, first.revision)
            assert taken.revision == first.revision + 1

        fired = _lose_connection_at_commit(monkeypatch, after_commit=False, meanwhile=b_takes_the_revision)
        with pytest.raises(asyncpg.ConnectionDoesNotExistError):
            await a.delete(config.id, None, 0)
        assert fired == ["before"]
        assert await _stored_names(pg_dsn) == ["Renamed"]
    finally:
        await a.close()
        await b.close()


async def test_a_write_cancelled_while_its_commit_is_checked_is_forgotten(
    store: PostgresConfigStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await store.insert(row("One"), 0)
    checking = asyncio.Event()

    async def slow_check(*_: object) -> bool:
        checking.set()
        await asyncio.sleep(30)
        return False

    _lose_connection_at_commit(monkeypatch, after_commit=False)
    monkeypatch.setattr(PostgresConfigStore, "_committed", slow_check)
    task = asyncio.create_task(store.insert(row("Two"), first.revision))
    await asyncio.wait_for(checking.wait(), TIMEOUT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The rolled-back revision is not remembered as ours: another instance's commit at
    # that revision will wake this one.
    assert store._seen_revision == first.revision
