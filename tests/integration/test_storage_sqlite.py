"""SqliteConfigStore on real files: corruption, keys on disk, lost data key, migration (DESIGN §3)."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.errors import SchemaTooNewError, VersionConflictError
from bridge.keystore import KEY_FILE_NAME, KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigInput, LlmConfigPatch
from bridge.service import LlmConfigService
from bridge.service import llm_config as llm_config_module
from bridge.storage import SqliteConfigStore
from bridge.storage.sqlite import SCHEMA_VERSION
from tests.conftest import ANTHROPIC_KEY, CUSTOM_KEY, GOOGLE_KEY, OPENAI_KEY


async def seed(data_dir: Path, count: int = 2) -> None:
    store = SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    svc = LlmConfigService(store, KeyCipher(load_data_key(data_dir, SecretBackend.FILE, must_exist=False)))
    for i in range(count):
        await svc.create(
            LlmConfigInput.model_validate({"customName": f"C{i}", "provider": "openai", "apiKey": OPENAI_KEY})
        )
    await svc.close()
    await store.close()


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def zero_fill(path: Path) -> None:
    path.write_bytes(b"\0" * path.stat().st_size)


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 300)


def smash_page_two(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate_half, zero_fill, garbage, smash_page_two])
async def test_corrupt_database_is_quarantined_with_original_bytes_and_store_starts_empty(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    await seed(tmp_path, count=40)
    db = tmp_path / "bridge.db"
    damage(db)
    original = db.read_bytes()
    wal = tmp_path / "bridge.db-wal"
    wal.write_bytes(b"wal bytes")

    store = SqliteConfigStore(db)
    with capture_logs() as logs:
        await store.open()
    try:
        assert store.recovered_from is not None
        moved = Path(store.recovered_from)
        assert moved.parent == tmp_path
        assert moved.name.startswith("bridge.db.corrupt-")
        assert moved.name.endswith("Z")
        assert moved.read_bytes() == original
        assert Path(f"{moved}-wal").read_bytes() == b"wal bytes"
        assert [e["event"] for e in logs] == ["store_quarantined"]
        state = await store.load()
        assert (state.revision, state.configs) == (0, [])
    finally:
        await store.close()


async def test_healthy_database_is_not_quarantined(tmp_path: Path) -> None:
    await seed(tmp_path)
    store = SqliteConfigStore(tmp_path / "bridge.db")
    await store.open()
    try:
        assert store.recovered_from is None
        assert len((await store.load()).configs) == 2
        assert not list(tmp_path.glob("*.corrupt-*"))
    finally:
        await store.close()


async def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = db.read_bytes()
    store = SqliteConfigStore(db)
    with pytest.raises(SchemaTooNewError, match="schema version 99"):
        await store.open()
    store._executor.shutdown()
    assert db.read_bytes() == before
    assert not list(tmp_path.glob("*.corrupt-*"))


async def test_schema_1_database_is_migrated_with_row_revisions_from_the_log(tmp_path: Path) -> None:
    await seed(tmp_path, count=3)
    db = tmp_path / "bridge.db"
    with sqlite3.connect(db, isolation_level=None) as conn:
        # Rebuild the schema-1 shape: no configs.revision column (and no triggers).
        for trigger in ("insert", "update", "delete", "counters"):
            conn.execute(f"DROP TRIGGER bridge_configs_{trigger}")
        conn.execute("ALTER TABLE configs DROP COLUMN revision")
        conn.execute("ALTER TABLE changes DROP COLUMN row")
        conn.execute("DELETE FROM changes WHERE revision = 1")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    store = SqliteConfigStore(db)
    with capture_logs() as logs:
        await store.open()
    try:
        assert [c.revision for c in (await store.load()).configs] == [0, 2, 3]
        assert [e["event"] for e in logs] == ["store_migrated"]
    finally:
        await store.close()
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    check.close()


# ---- API keys on disk ---------------------------------------------------------------------


async def test_plaintext_keys_of_every_provider_are_absent_from_db_wal_and_shm(tmp_path: Path) -> None:
    store = SqliteConfigStore(tmp_path / "bridge.db")
    await store.open()
    svc = LlmConfigService(store, KeyCipher(load_data_key(tmp_path, SecretBackend.FILE, must_exist=False)))
    configs = [
        {"customName": "o", "provider": "openai", "apiKey": OPENAI_KEY},
        {"customName": "a", "provider": "anthropic", "apiKey": ANTHROPIC_KEY},
        {"customName": "g", "provider": "google", "apiKey": GOOGLE_KEY},
        {"customName": "c", "provider": "custom", "apiKey": CUSTOM_KEY, "baseUrl": "http://127.0.0.1:1"},
    ]
    try:
        for config in configs:
            view = await svc.create(LlmConfigInput.model_validate(config))
            assert await svc.get_api_key(view.id) == config["apiKey"]
        files = [p for p in tmp_path.iterdir() if p.name.startswith("bridge.db")]
        assert {p.name for p in files} >= {"bridge.db", "bridge.db-wal", "bridge.db-shm"}
        for path in files:
            data = path.read_bytes()
            for key in (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, CUSTOM_KEY):
                assert key.encode() not in data, (path.name, key[:3])
    finally:
        await svc.close()
        await store.close()
    data = (tmp_path / "bridge.db").read_bytes()  # after the checkpoint on close
    assert all(key.encode() not in data for key in (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, CUSTOM_KEY))


def run_serve(data_dir: Path) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--data-dir", str(data_dir), "--secret-backend", "file"],
        capture_output=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    first = proc.stdout.decode().splitlines()[0]
    return proc.returncode, json.loads(first)


@pytest.mark.parametrize("fault", ["missing", "corrupt"])
async def test_lost_data_key_refuses_to_start_and_changes_nothing(tmp_path: Path, fault: str) -> None:
    await seed(tmp_path)
    key_file = tmp_path / KEY_FILE_NAME
    if fault == "missing":
        key_file.unlink()
    else:
        key_file.write_text("garbage!\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    code, line = run_serve(tmp_path)

    assert code == 2
    assert line["event"] == "error"
    assert line["error"] == "STARTUP_FAILED"
    assert fault in str(line["message"])
    assert "bridge.key" in str(line["message"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


async def test_a_new_data_dir_and_its_files_are_private_to_the_user(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    await seed(data_dir)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in data_dir.iterdir())
    assert {"bridge.db", KEY_FILE_NAME} <= set(files)
    for name in files:
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name


async def test_delete_with_expected_version_of_a_row_with_a_text_version_is_a_version_conflict(
    tmp_path: Path,
) -> None:
    # Another program wrote version 'abc': the delete answers 4012 (not an internal error),
    # and without expectedVersion it still removes the row.
    db = tmp_path / "bridge.db"
    store = SqliteConfigStore(db)
    await store.open()
    row_id = "00000000-0000-4000-8000-000000000001"
    try:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute(
            "INSERT INTO configs (id, custom_name, name_key, provider, api_key_ct, api_key_preview, "
            "base_url, use_auth_header, created_at, updated_at, version) VALUES (?, 'x', 'x', 'openai', "
            "x'00', 'p', NULL, 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 'abc')",
            (row_id,),
        )
        other.close()
        with pytest.raises(VersionConflictError) as caught:
            await store.delete(row_id, 1, 0)
        assert caught.value.rpc_code == 4012
        assert caught.value.actual is None
        await store.delete(row_id, None, 0)
    finally:
        await store.close()
    check = sqlite3.connect(db)
    assert check.execute("SELECT COUNT(*) FROM configs").fetchone() == (0,)
    check.close()


_OPENAI = {"customName": "o", "provider": "openai", "apiKey": OPENAI_KEY}


async def test_an_update_stamps_updated_at_inside_its_write_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # BEGIN IMMEDIATE may wait (up to the busy timeout) for another writer: a time read
    # before it would be stale. The clock is a spy (it returns the real time) that checks,
    # when read, that the store holds the write lock: another writer cannot begin.
    db = tmp_path / "bridge.db"
    store = SqliteConfigStore(db)
    await store.open()
    svc = LlmConfigService(store, KeyCipher(load_data_key(tmp_path, SecretBackend.FILE, must_exist=False)))
    real = llm_config_module.utc_now
    reads: list[tuple[bool, str]] = []

    def clock() -> str:
        probe = sqlite3.connect(db, isolation_level=None, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            locked = False
        except sqlite3.OperationalError:
            locked = True
        finally:
            probe.close()
        reads.append((locked, real()))
        return reads[-1][1]

    try:
        view = await svc.create(LlmConfigInput.model_validate({**_OPENAI, "customName": "before"}))
        monkeypatch.setattr(llm_config_module, "utc_now", clock)
        updated = await svc.update(view.id, LlmConfigPatch.model_validate({"customName": "after"}))
    finally:
        await svc.close()
        await store.close()
    assert [locked for locked, _ in reads] == [True]
    assert updated.updated_at == reads[0][1]


_RELOAD_WITH_A_NEW_FIELD = """
import importlib, json
from bridge.storage import base, postgres, protocol, sqlite
def recorded():
    return [list(sqlite._MIGRATE_TO_4), list(postgres._MIGRATIONS[2])]
before = recorded()
# A later release: one more field, other log figures; the storage modules rebuilt on them.
base.COLUMNS = protocol.LOG_FIELDS = (*base.COLUMNS[:2], "added_later", *base.COLUMNS[2:])
protocol.KEY_ID_BYTES, protocol.TRIM_EVERY, protocol.CHANGE_LOG_KEEP = 4, 7, 50
importlib.reload(sqlite)
importlib.reload(postgres)
print(json.dumps({"same": recorded() == before, "live": "added_later" in sqlite._LOG_OBJECT}))
"""


def test_recorded_migrations_do_not_change_with_later_fields_or_constants() -> None:
    # SQLite's schema-4 rewrite of schema 3's positional arrays and PostgreSQL's step 2
    # trigger are history: a field added later must not shift what they do. Run in a
    # child process, which rebuilds the storage modules on changed constants.
    done = subprocess.run(
        [sys.executable, "-c", _RELOAD_WITH_A_NEW_FIELD],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == {"same": True, "live": True}
