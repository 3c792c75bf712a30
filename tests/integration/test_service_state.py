"""State management of LlmConfigService over a real SQLite file (DESIGN §3–§4).

Mocks appear only for fault injection: a store wrapper that fails ``load``, and a
connection proxy that fails the N-th SQL statement of a write.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.errors import (
    ConfigNotFoundError,
    ConfigOperationFailedError,
    DuplicateConfigNameError,
    ServiceUnavailableError,
    ValidationError,
    VersionConflictError,
)
from bridge.keystore import KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigChanged, LlmConfigInput, LlmConfigPatch, LlmConfigView
from bridge.service import LlmConfigService
from bridge.service.channels import JsonMemo
from bridge.storage import SqliteConfigStore, StoreState
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, openai_config

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


class CountingStore(SqliteConfigStore):
    """A real store that counts loads and can fail the next ``fail_loads`` of them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.loads = 0
        self.fail_loads = 0
        self.load_started = asyncio.Event()
        self.release_load: asyncio.Event | None = None

    async def load(self) -> StoreState:
        self.loads += 1
        self.load_started.set()
        if self.release_load is not None:
            await self.release_load.wait()
        if self.fail_loads:
            self.fail_loads -= 1
            raise sqlite3.OperationalError("injected load failure")
        return await super().load()


class FailingConnection:
    """Proxy of a ``sqlite3.Connection`` whose ``fail_at``-th ``execute`` raises."""

    def __init__(self, conn: sqlite3.Connection, fail_at: int) -> None:
        self.conn = conn
        self.fail_at = fail_at
        self.calls = 0

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise sqlite3.OperationalError("injected: disk I/O error")
        return self.conn.execute(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction


async def open_service(
    data_dir: Path, store: SqliteConfigStore | None = None
) -> tuple[LlmConfigService, SqliteConfigStore]:
    store = store or SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    key = load_data_key(data_dir, SecretBackend.FILE, must_exist=await store.has_ciphertexts())
    return LlmConfigService(store, KeyCipher(key), watch=False), store


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LlmConfigService]:
    svc, store = await open_service(tmp_path)
    yield svc
    await svc.close()
    await store.close()


def make(name: str = "My OpenAI", **extra: Any) -> LlmConfigInput:
    return LlmConfigInput.model_validate(openai_config(name, **extra))


def recorder(svc: LlmConfigService) -> list[LlmConfigChanged]:
    events: list[LlmConfigChanged] = []
    svc.events.subscribe(events.append)
    return events


async def assert_cache_equals_store(svc: LlmConfigService) -> None:
    report = await svc.validate_cache()
    assert report["consistent"] is True, report


# ---- initialization --------------------------------------------------------------------


async def test_initialize_with_existing_configs_loads_them_in_creation_order(tmp_path: Path) -> None:
    first, store = await open_service(tmp_path)
    views = [await first.create(make(f"C{i}")) for i in range(3)]
    await first.close()
    await store.close()

    again, store2 = await open_service(tmp_path)
    try:
        assert await again.initialize() == 3
        assert await again.list() == views
        assert again.cache_info().revision == 3
    finally:
        await again.close()
        await store2.close()


async def test_initialize_with_empty_storage_gives_an_empty_cache(service: LlmConfigService) -> None:
    assert await service.initialize() == 0
    assert await service.list() == []
    info = service.cache_info()
    assert (info.count, info.revision, info.loaded, info.load_failed) == (0, 0, True, False)


async def test_concurrent_first_calls_share_one_load(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "bridge.db")
    store.release_load = asyncio.Event()
    svc, _ = await open_service(tmp_path, store)
    try:
        calls: list[asyncio.Future[Any]] = [asyncio.ensure_future(svc.list()) for _ in range(10)]
        calls.append(asyncio.ensure_future(svc.initialize()))
        await asyncio.wait_for(store.load_started.wait(), 5)
        store.release_load.set()
        await asyncio.wait_for(asyncio.gather(*calls), 5)
        assert store.loads == 1
    finally:
        await svc.close()
        await store.close()


async def test_failed_load_logs_starts_empty_and_refresh_retries(tmp_path: Path) -> None:
    seed, seed_store = await open_service(tmp_path)
    created = await seed.create(make())
    await seed.close()
    await seed_store.close()

    store = CountingStore(tmp_path / "bridge.db")
    store.fail_loads = 1
    svc, _ = await open_service(tmp_path, store)
    events = recorder(svc)
    try:
        with capture_logs() as logs:
            assert await svc.initialize() == 0
        assert [entry["event"] for entry in logs] == ["cache_load_failed"]
        assert svc.cache_info().load_failed is True
        assert await svc.list() == []

        assert await svc.refresh() == (1, 1)
        assert await svc.list() == [created]
        assert svc.cache_info().load_failed is False
        assert [(e.type.value, e.id, e.revision) for e in events] == [("created", created.id, 1)]
    finally:
        await svc.close()
        await store.close()


# ---- reads come from the cache -------------------------------------------------------------


async def test_reads_and_list_come_from_the_cache_without_store_access(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "bridge.db")
    svc, _ = await open_service(tmp_path, store)
    try:
        view = await svc.create(make())
        loads = store.loads
        store._conn = None  # any store access now raises
        assert await svc.read(view.id) == view
        assert await svc.read(UNKNOWN_ID) is None
        assert await svc.list() == [view]
        assert (await svc.snapshot())[1] == [view]
        assert store.loads == loads
    finally:
        await svc.close()
        store._executor.shutdown()


async def test_cache_holds_no_plaintext_key_and_get_api_key_decrypts(service: LlmConfigService) -> None:
    view = await service.create(make())
    assert view.api_key_preview == f"sk-...{OPENAI_KEY[-3:]}"
    memo = JsonMemo(LlmConfigView)  # the read channel's memo of the wire JSON
    memo.one(await service.read(view.id))  # builds the entry's cached view and its JSON
    for entry in service._cache.values():
        assert OPENAI_KEY not in repr(entry)
        assert OPENAI_KEY not in repr(entry.row)
        assert OPENAI_KEY not in repr(entry.view)
        assert OPENAI_KEY.encode() not in memo.json(entry.view)
        assert OPENAI_KEY.encode() not in entry.row.api_key_ct
    assert await service.get_api_key(view.id) == OPENAI_KEY
    assert await service.get_api_key(UNKNOWN_ID) is None


# ---- writes ---------------------------------------------------------------------------------


async def test_create_update_delete_keep_cache_and_store_in_sync(service: LlmConfigService) -> None:
    events = recorder(service)
    view = await service.create(make())
    assert view.created_at == view.updated_at
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", view.created_at)
    await assert_cache_equals_store(service)
    new_key = OPENAI_KEY[:-1] + "Z"
    updated = await service.update(view.id, LlmConfigPatch(custom_name="Renamed", api_key=new_key))
    assert (updated.version, updated.custom_name, updated.created_at) == (2, "Renamed", view.created_at)
    assert await service.get_api_key(view.id) == new_key
    await assert_cache_equals_store(service)
    assert await service.delete(view.id, expected_version=2) is True
    await assert_cache_equals_store(service)
    assert await service.list() == []
    assert [(e.type.value, e.revision) for e in events] == [("created", 1), ("updated", 2), ("deleted", 3)]


async def test_update_that_changes_nothing_emits_nothing_and_keeps_version(service: LlmConfigService) -> None:
    view = await service.create(make(baseUrl="https://api.example.com"))
    events = recorder(service)
    same = await service.update(
        view.id,
        LlmConfigPatch.model_validate(
            {"customName": " My OpenAI ", "apiKey": f" {OPENAI_KEY} ", "baseUrl": "https://api.example.com"}
        ),
    )
    assert same == view
    assert events == []
    assert service.cache_info().revision == 1


async def test_base_url_null_clears_it(service: LlmConfigService) -> None:
    view = await service.create(make(baseUrl="https://api.example.com"))
    cleared = await service.update(
        view.id, LlmConfigPatch.model_validate({"baseUrl": None, "apiKey": OPENAI_KEY})
    )
    assert (cleared.base_url, cleared.version) == (None, 2)


async def test_delete_unknown_id_returns_false_without_event(service: LlmConfigService) -> None:
    events = recorder(service)
    assert await service.delete(UNKNOWN_ID) is False
    assert await service.delete(UNKNOWN_ID, expected_version=7) is False
    assert events == []
    assert service.cache_info().revision == 0


async def test_delete_with_wrong_expected_version_conflicts(service: LlmConfigService) -> None:
    view = await service.create(make())
    with pytest.raises(VersionConflictError) as caught:
        await service.delete(view.id, expected_version=2)
    assert caught.value.context == {"id": view.id, "expectedVersion": 2, "actualVersion": 1}
    assert await service.read(view.id) == view


@pytest.mark.parametrize(
    "names", [["Same"], ["Same", "SAME", " same ", "sAmE"], ["Straße", "STRASSE", "strasse"]]
)
async def test_fifty_concurrent_same_name_creates_exactly_one_succeeds(
    service: LlmConfigService, names: list[str]
) -> None:
    results = await asyncio.gather(
        *(service.create(make(names[i % len(names)])) for i in range(50)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, DuplicateConfigNameError) for r in results if isinstance(r, BaseException))
    assert service.cache_info().count == 1
    await assert_cache_equals_store(service)


async def test_fifty_concurrent_updates_of_one_config_reach_version_51(service: LlmConfigService) -> None:
    view = await service.create(make())
    events = recorder(service)
    await asyncio.gather(
        *(service.update(view.id, LlmConfigPatch(custom_name=f"Name {i}")) for i in range(50))
    )
    final = await service.read(view.id)
    assert final is not None
    assert final.version == 51
    assert [e.revision for e in events] == list(range(2, 52))
    await assert_cache_equals_store(service)


# ---- error precedence (DESIGN §4) -----------------------------------------------------------


async def test_update_precedence_existence_before_version_before_rules_before_name(
    service: LlmConfigService,
) -> None:
    view = await service.create(make("A"))
    await service.create(make("Taken"))
    bad_and_dup = LlmConfigPatch(
        custom_name="taken", provider="anthropic", api_key=OPENAI_KEY
    )  # key does not fit
    with pytest.raises(ConfigNotFoundError):
        await service.update(UNKNOWN_ID, bad_and_dup, expected_version=9)
    with pytest.raises(VersionConflictError):
        await service.update(view.id, bad_and_dup, expected_version=9)
    with pytest.raises(ValidationError) as caught:
        await service.update(view.id, bad_and_dup, expected_version=1)
    assert [(e.field, e.code) for e in caught.value.errors] == [("updates.apiKey", "API_KEY_FORMAT")]
    with pytest.raises(DuplicateConfigNameError):
        await service.update(view.id, LlmConfigPatch(custom_name="TAKEN"), expected_version=1)
    fixed = await service.update(
        view.id, LlmConfigPatch(provider="anthropic", api_key=ANTHROPIC_KEY), expected_version=1
    )
    assert fixed.version == 2


async def test_merged_result_rules_report_every_failure_under_updates(service: LlmConfigService) -> None:
    view = await service.create(make())
    with pytest.raises(ValidationError) as caught:
        await service.update(view.id, LlmConfigPatch.model_validate({"provider": "custom", "apiKey": "k"}))
    assert [(e.field, e.code) for e in caught.value.errors] == [("updates.baseUrl", "PROVIDER_SPECIFIC")]
    custom = await service.create(
        LlmConfigInput.model_validate(
            {"customName": "L", "provider": "custom", "apiKey": "k", "baseUrl": "http://127.0.0.1:1"}
        )
    )
    with pytest.raises(ValidationError) as caught:
        await service.update(custom.id, LlmConfigPatch.model_validate({"baseUrl": None, "apiKey": "k"}))
    assert [(e.field, e.code) for e in caught.value.errors] == [("updates.baseUrl", "PROVIDER_SPECIFIC")]


# ---- store failure at each write step ----------------------------------------------------


async def count_statements(store: SqliteConfigStore, write: Callable[[], Awaitable[object]]) -> int:
    real = store._conn
    assert real is not None
    proxy = FailingConnection(real, fail_at=0)
    store._conn = proxy  # type: ignore[assignment]
    try:
        await write()
    finally:
        store._conn = real
    return proxy.calls


@pytest.mark.parametrize("operation", ["create", "update", "delete"])
async def test_store_failure_at_each_write_step_leaves_cache_equal_to_store(
    tmp_path: Path, operation: str
) -> None:
    svc, store = await open_service(tmp_path)
    try:
        keep = await svc.create(make("Keep"))
        writes: dict[str, Callable[[], Awaitable[object]]] = {
            "create": lambda: svc.create(make("New")),
            "update": lambda: svc.update(keep.id, LlmConfigPatch(custom_name="Changed")),
            "delete": lambda: svc.delete(keep.id),
        }
        # Count the statements of one successful write on a copy of the data.
        probe_dir = tmp_path / "probe"
        probe_dir.mkdir()
        probe_svc, probe_store = await open_service(probe_dir)
        probe_keep = await probe_svc.create(make("Keep"))
        probe_writes: dict[str, Callable[[], Awaitable[object]]] = {
            "create": lambda: probe_svc.create(make("New")),
            "update": lambda: probe_svc.update(probe_keep.id, LlmConfigPatch(custom_name="Changed")),
            "delete": lambda: probe_svc.delete(probe_keep.id),
        }
        steps = await count_statements(probe_store, probe_writes[operation])
        await probe_svc.close()
        await probe_store.close()
        assert steps >= 5  # BEGIN, read revision, write, bump, log, feed..., COMMIT

        events = recorder(svc)
        before = await svc.list()
        real = store._conn
        assert real is not None
        for step in range(1, steps + 1):
            store._conn = FailingConnection(real, fail_at=step)  # type: ignore[assignment]
            try:
                with capture_logs(), pytest.raises(ConfigOperationFailedError) as caught:
                    await writes[operation]()
            finally:
                store._conn = real
            assert caught.value.rpc_code == 5000
            assert not real.in_transaction, f"step {step} left a transaction open"
            assert await svc.list() == before, f"cache changed at step {step}"
            await assert_cache_equals_store(svc)
        assert events == []
        assert svc.cache_info().revision == 1
        await writes[operation]()  # the store works again once the fault is gone
        await assert_cache_equals_store(svc)
    finally:
        await svc.close()
        await store.close()


def swap_ciphertexts(conn: sqlite3.Connection, a: str, b: str) -> None:
    """Swap two rows' ciphertexts behind the service's back."""
    ct = dict(conn.execute("SELECT id, api_key_ct FROM configs WHERE id IN (?, ?)", (a, b)).fetchall())
    conn.execute("UPDATE configs SET api_key_ct = ? WHERE id = ?", (ct[b], a))
    conn.execute("UPDATE configs SET api_key_ct = ? WHERE id = ?", (ct[a], b))


async def test_undecryptable_key_quarantines_the_rows_and_changes_nothing(service: LlmConfigService) -> None:
    # Issue 16: a ciphertext copied from another row is a security event: both rows are
    # quarantined (never served), and an update must bring a new key to restore one.
    view = await service.create(make())
    other = await service.create(make("Other"))
    store = service._store
    assert isinstance(store, SqliteConfigStore)
    assert store._conn is not None
    swap_ciphertexts(store._conn, view.id, other.id)
    with capture_logs() as logs:
        await service.refresh()
    assert {(q.id, q.reason) for q in service.quarantined()} == {
        (view.id, "CIPHERTEXT_AUTH_FAILED"),
        (other.id, "CIPHERTEXT_AUTH_FAILED"),
    }
    assert sum(e["event"] == "security_event" for e in logs) == 2
    assert await service.get_api_key(view.id) is None
    with capture_logs(), pytest.raises(ValidationError):
        await service.update(view.id, LlmConfigPatch(custom_name="x"))
    await assert_cache_equals_store(service)


# ---- refresh and shutdown --------------------------------------------------------------------


async def test_refresh_emits_every_difference_with_increasing_revisions(tmp_path: Path) -> None:
    svc, store = await open_service(tmp_path)
    other, other_store = await open_service(tmp_path)
    try:
        gone = await svc.create(make("Gone"))
        changed = await svc.create(make("Changed"))
        await svc.create(make("Same"))
        await other.initialize()
        events = recorder(svc)
        await other.delete(gone.id)  # revision 4
        added = await other.create(make("Added"))  # revision 5
        await other.update(changed.id, LlmConfigPatch(custom_name="Changed 2"))  # revision 6
        await other.create(make("Added 2"))  # revision 7

        assert await svc.refresh() == (4, 7)
        got = [(e.type.value, e.id, e.revision) for e in events]
        # Each change keeps its own revision: a refresh that beats the poll reads the feed.
        assert got == [
            ("deleted", gone.id, 4),
            ("created", added.id, 5),
            ("updated", changed.id, 6),
            ("created", got[3][1], 7),
        ]
        assert [v.custom_name for v in await svc.list()] == ["Changed 2", "Same", "Added", "Added 2"]
        await assert_cache_equals_store(svc)
        events.clear()
        assert await svc.refresh() == (4, 7)
        assert events == []
    finally:
        for s in (svc, other):
            await s.close()
        await store.close()
        await other_store.close()


async def test_peek_is_reads_cache_hit_and_none_whenever_read_has_more_to_do(tmp_path: Path) -> None:
    first, store = await open_service(tmp_path)
    view = await first.create(make())
    await first.close()
    await store.close()

    svc, store = await open_service(tmp_path)
    try:
        assert svc.peek(view.id) is None  # not loaded yet: read() loads
        read = await svc.read(view.id)
        assert read == view
        assert svc.peek(view.id) is read  # the same cached view object
        assert svc.peek(UNKNOWN_ID) is None
        updated = await svc.update(view.id, LlmConfigPatch.model_validate({"customName": "Renamed"}), 1)
        assert svc.peek(view.id) is await svc.read(view.id)
        assert svc.peek(view.id) == updated
        await svc.delete(view.id)
        assert svc.peek(view.id) is None
    finally:
        await svc.close()
        await store.close()
    assert svc.peek(view.id) is None  # closed: read() raises 5003


async def test_close_clears_the_cache_and_later_calls_raise_5003(tmp_path: Path) -> None:
    svc, store = await open_service(tmp_path)
    await svc.create(make())
    await svc.close()
    assert svc.cache_info().count == 0
    with pytest.raises(ServiceUnavailableError):
        await svc.list()
    with pytest.raises(ServiceUnavailableError):
        await svc.refresh()
    await store.close()


# ---- a key's destination never moves without it (issue 15) -------------------------------


async def test_moving_baseurl_or_provider_without_the_key_is_refused_and_changes_nothing(
    service: LlmConfigService,
) -> None:
    view = await service.create(make(baseUrl="https://api.openai.com/v1"))
    events = recorder(service)
    required = [("updates.apiKey", "REQUIRED")]
    for changes in (
        {"baseUrl": "https://attacker.example/v1"},
        {"baseUrl": None},  # clearing it sends the key to the provider's default host
        {"provider": "custom"},
        {"provider": "anthropic", "customName": "Renamed"},
    ):
        with pytest.raises(ValidationError) as caught:
            await service.update(view.id, LlmConfigPatch.model_validate(changes), expected_version=1)
        assert [(e.field, e.code) for e in caught.value.errors] == required, changes
        assert "attacker" not in str(caught.value.to_data())
    assert events == []
    assert await service.read(view.id) == view
    assert await service.get_api_key(view.id) == OPENAI_KEY


async def test_moving_the_destination_with_the_key_or_keeping_it_without_the_key_is_accepted(
    service: LlmConfigService,
) -> None:
    view = await service.create(make(baseUrl="https://api.openai.com/v1"))
    same = await service.update(
        view.id, LlmConfigPatch.model_validate({"baseUrl": " https://api.openai.com/v1 ", "customName": "B"})
    )
    assert (same.base_url, same.custom_name, same.version) == ("https://api.openai.com/v1", "B", 2)
    same_provider = await service.update(view.id, LlmConfigPatch.model_validate({"provider": "openai"}))
    assert same_provider.version == 2  # nothing changed, no key needed
    moved = await service.update(
        view.id, LlmConfigPatch.model_validate({"baseUrl": "https://proxy.example/v1", "apiKey": OPENAI_KEY})
    )
    assert (moved.base_url, moved.version) == ("https://proxy.example/v1", 3)
    switched = await service.update(
        view.id, LlmConfigPatch.model_validate({"provider": "anthropic", "apiKey": ANTHROPIC_KEY})
    )
    assert (switched.provider, switched.version) == ("anthropic", 4)
    assert await service.get_api_key(view.id) == ANTHROPIC_KEY


async def test_key_rule_sits_with_the_merged_rules_in_design_precedence_and_field_order(
    service: LlmConfigService,
) -> None:
    view = await service.create(make("A"))
    await service.create(make("Taken"))
    moved = LlmConfigPatch.model_validate({"customName": "taken", "baseUrl": "https://attacker.example"})
    with pytest.raises(ConfigNotFoundError):
        await service.update(UNKNOWN_ID, moved, expected_version=9)
    with pytest.raises(VersionConflictError):
        await service.update(view.id, moved, expected_version=9)
    with pytest.raises(ValidationError) as caught:  # before the unique name (4009)
        await service.update(view.id, moved, expected_version=1)
    assert [(e.field, e.code) for e in caught.value.errors] == [("updates.apiKey", "REQUIRED")]
    with pytest.raises(ValidationError) as caught:  # every merged failure, in field order
        await service.update(view.id, LlmConfigPatch.model_validate({"provider": "custom", "baseUrl": None}))
    assert [(e.field, e.code) for e in caught.value.errors] == [
        ("updates.apiKey", "REQUIRED"),
        ("updates.baseUrl", "PROVIDER_SPECIFIC"),
    ]
