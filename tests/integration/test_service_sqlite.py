"""LlmConfigService over a real store: SQLite file and PostgreSQL database (DESIGN §3–§4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bridge.errors import ConfigNotFoundError, DuplicateConfigNameError, ValidationError, VersionConflictError
from bridge.keystore import KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigChanged, LlmConfigInput, LlmConfigPatch
from bridge.service import LlmConfigService
from bridge.storage import ConfigStore, SqliteConfigStore
from bridge.storage.postgres import PostgresConfigStore
from tests.conftest import OPENAI_KEY, openai_config


@pytest.fixture
def open_service(
    store_backend: str, request: pytest.FixtureRequest
) -> Callable[[Path], Awaitable[tuple[LlmConfigService, ConfigStore]]]:
    """Open a service on the parametrized backend; the same ``data_dir`` reopens the same store."""
    dsn = request.getfixturevalue("pg_dsn") if store_backend == "postgresql" else ""

    async def opener(data_dir: Path) -> tuple[LlmConfigService, ConfigStore]:
        store: ConfigStore = PostgresConfigStore(dsn) if dsn else SqliteConfigStore(data_dir / "bridge.db")
        await store.open()
        key = load_data_key(data_dir, SecretBackend.FILE, must_exist=await store.has_ciphertexts())
        return LlmConfigService(store, KeyCipher(key), watch=False), store

    return opener


@pytest.fixture
async def service(
    tmp_path: Path, open_service: Callable[[Path], Awaitable[tuple[LlmConfigService, ConfigStore]]]
) -> AsyncIterator[LlmConfigService]:
    svc, store = await open_service(tmp_path)
    yield svc
    await svc.close()
    await store.close()


def make(name: str = "My OpenAI") -> LlmConfigInput:
    return LlmConfigInput.model_validate(openai_config(name))


async def test_create_update_delete_keep_cache_and_store_equal(service: LlmConfigService) -> None:
    events: list[LlmConfigChanged] = []
    service.events.subscribe(events.append)
    view = await service.create(make())
    updated = await service.update(view.id, LlmConfigPatch(custom_name="Renamed"))
    assert updated.version == 2
    assert (await service.validate_cache())["consistent"] is True
    assert await service.delete(view.id) is True
    assert await service.delete(view.id) is False
    assert [(e.type.value, e.revision) for e in events] == [("created", 1), ("updated", 2), ("deleted", 3)]
    assert (await service.validate_cache())["consistent"] is True


async def test_update_errors_follow_design_precedence(service: LlmConfigService) -> None:
    view = await service.create(make())
    with pytest.raises(ConfigNotFoundError):
        await service.update("00000000-0000-4000-8000-000000000000", LlmConfigPatch(custom_name="x"), 9)
    with pytest.raises(VersionConflictError):
        await service.update(view.id, LlmConfigPatch(provider="anthropic"), expected_version=2)
    with pytest.raises(ValidationError) as caught:
        await service.update(
            view.id, LlmConfigPatch(provider="anthropic", api_key=OPENAI_KEY), expected_version=1
        )
    assert [(e.field, e.code) for e in caught.value.errors] == [("updates.apiKey", "API_KEY_FORMAT")]


async def test_concurrent_same_name_creates_exactly_one_wins(service: LlmConfigService) -> None:
    results = await asyncio.gather(*(service.create(make("Same")) for _ in range(50)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, DuplicateConfigNameError) for r in results if isinstance(r, BaseException))


async def test_concurrent_updates_all_apply(service: LlmConfigService) -> None:
    view = await service.create(make())
    await asyncio.gather(
        *(service.update(view.id, LlmConfigPatch(custom_name=f"Name {i}")) for i in range(50))
    )
    final = await service.read(view.id)
    assert final is not None
    assert final.version == 51


async def test_api_key_is_decrypted_on_demand_and_survives_reopen(
    tmp_path: Path, open_service: Callable[[Path], Awaitable[tuple[LlmConfigService, ConfigStore]]]
) -> None:
    svc, store = await open_service(tmp_path)
    view = await svc.create(make())
    assert await svc.get_api_key(view.id) == OPENAI_KEY
    await svc.close()
    await store.close()
    again, store2 = await open_service(tmp_path)
    try:
        assert await again.get_api_key(view.id) == OPENAI_KEY
        assert await again.read(view.id) == view
    finally:
        await again.close()
        await store2.close()
