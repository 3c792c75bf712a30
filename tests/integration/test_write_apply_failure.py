"""A committed write whose cache update fails is still served, answered and notified.

The write is done once it commits (DESIGN §4: store first, cache after commit). When
applying it to the cache fails, the state service reloads from the store at once; when
that fails too, the follower reloads without waiting for another process's commit (a
store's change notice shows other processes' commits only). Both for ``llm-config``
(``LlmConfigService``) and a collection (``CollectionService``), on real SQLite files;
the faults (a row check that raises, a store load that fails) are injected.
Also: a reference checked before a create, whose target is deleted before the create
commits, is cleared by the create (as by an update); and an item restored from quarantine
by an update drops a reference whose target was deleted while it was held.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import bridge.service.llm_config as llm_config_module
from bridge.collection.service import CollectionService
from bridge.collection.sqlite import SqliteCollectionStore
from bridge.keystore import DataKey, KeyCipher
from bridge.models import ChangeType, LlmConfigInput
from bridge.service.llm_config import LlmConfigService
from bridge.service.rules import check_row
from bridge.storage import SqliteConfigStore
from tests.conftest import openai_config
from tests.helpers.templates import load_example
from tests.helpers.templates import running as served_example

CIPHER = KeyCipher(DataKey(b"k" * 32, "file"))
TIMEOUT_S = 15.0


async def eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    """Poll ``check`` until it holds or :data:`TIMEOUT_S` passes (a bound, not a timing assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


def failing_check_row(monkeypatch: pytest.MonkeyPatch, failures: int) -> None:
    """Make llm-config's row check raise on its first ``failures`` calls (then check as usual)."""
    real = check_row  # the service calls it by its name in bridge.service.llm_config
    calls = {"n": 0}

    def check(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise RuntimeError("injected: the cache update failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(llm_config_module, "check_row", check)


@pytest.mark.parametrize("failures", [1, 2], ids=["apply-fails", "apply-and-reload-fail"])
async def test_llm_config_write_whose_apply_fails_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    store = SqliteConfigStore(tmp_path / "bridge.db", poll_interval_s=0.05)
    await store.open()
    service = LlmConfigService(store, CIPHER)
    await service.initialize()
    events: list[Any] = []
    service.events.subscribe(events.append)
    try:
        failing_check_row(monkeypatch, failures)
        with capture_logs() as logs:
            view = await service.create(LlmConfigInput.model_validate(openai_config("Kept")))
        assert view.custom_name == "Kept"
        assert any(line["event"] == "cache_apply_failed" for line in logs)

        async def served() -> bool:
            return [config.id for config in await service.list()] == [view.id]

        # Nothing else writes: only this process's own reload can bring the config in.
        assert await eventually(served)
        assert (await service.validate_cache())["consistent"] is True
        created = [event for event in events if event.type is ChangeType.CREATED]
        assert [event.id for event in created] == [view.id]
    finally:
        await service.close()
        await store.close()


async def test_collection_write_whose_apply_and_reload_fail_is_answered_then_served(tmp_path: Path) -> None:
    example = load_example()
    store = SqliteCollectionStore(tmp_path / "collections.db")
    await store.open()
    service = CollectionService(example.PROMPT_TEMPLATES.rules, store, CIPHER)
    await service.start()
    real_load = store.load

    async def failing_load(*_: Any, **__: Any) -> Any:
        raise OSError("injected: disk I/O error")

    try:
        first = await service.create(example.PromptTemplate(name="First", template="t"))
        # Another program leaves a change-log entry that does not decode: applying the next
        # write's feed needs a reload, and the reload fails.
        with sqlite3.connect(tmp_path / "collections.db") as conn:
            conn.execute("UPDATE revisions SET revision = revision + 1 WHERE collection = 'prompt-template'")
            (revision,) = conn.execute(
                "SELECT revision FROM revisions WHERE collection = 'prompt-template'"
            ).fetchone()
            conn.execute(
                "INSERT INTO changes (collection, revision, id, type, row) "
                "VALUES ('prompt-template', ?, 'x', 'updated', 'not json')",
                (revision,),
            )
        store.load = failing_load  # type: ignore[method-assign]
        with capture_logs() as logs:
            view = await service.create(example.PromptTemplate(name="Kept", template="t"))
        assert view.name == "Kept"  # committed: answered, not 5000 ("nothing changed")
        assert {"cache_apply_failed", "cache_reload_failed"} <= {line["event"] for line in logs}
        store.load = real_load  # type: ignore[method-assign]

        async def served() -> bool:
            return [item.id for item in service.list()] == [first.id, view.id]

        assert await eventually(served)
        _, stored = await store.load("prompt-template")
        assert [item.id for item in stored] == [first.id, view.id]
    finally:
        store.load = real_load  # type: ignore[method-assign]
        await service.close()
        await store.close()


async def test_create_clears_a_reference_whose_target_went_before_the_commit(tmp_path: Path) -> None:
    example = load_example()
    data_dir = tmp_path / "data"
    async with served_example(data_dir) as running:
        templates = running.collections["prompt-template"]
        config = await running.service.create(LlmConfigInput.model_validate(openai_config("Target")))
        checked, release = asyncio.Event(), asyncio.Event()
        real_write = templates._write

        async def stalled(write: Any) -> Any:
            checked.set()  # the reference was checked: the config existed
            await release.wait()
            return await real_write(write)

        templates._write = stalled  # type: ignore[method-assign]
        creating = asyncio.ensure_future(
            templates.create(example.PromptTemplate(name="T", template="t", model=config.id))
        )
        await checked.wait()
        assert await running.service.delete(config.id) is True
        release.set()
        made = await creating
        assert made.model is None
        assert templates.read(made.id).model is None


async def test_a_restored_item_drops_a_reference_whose_target_went_while_it_was_held(tmp_path: Path) -> None:
    example = load_example()
    data_dir = tmp_path / "data"
    async with served_example(data_dir) as running:
        templates = running.collections["prompt-template"]
        config = await running.service.create(LlmConfigInput.model_validate(openai_config("Target")))
        made = await templates.create(example.PromptTemplate(name="T", template="t", model=config.id))
        # Another bridge process writes the template with an empty name: held (quarantined) here.
        other = SqliteCollectionStore(data_dir / "collections.db")
        await other.open()
        try:
            revision, items = await other.load("prompt-template")
            item = next(found for found in items if found.id == made.id)
            await other.update(
                "prompt-template",
                made.id,
                {**(item.data or {}), "name": ""},
                keys=[],
                now=item.updated_at,
                base_version=item.version,
                expected_version=None,
                since=revision,
            )
        finally:
            await other.close()

        async def held() -> bool:
            return made.id in templates.quarantined()

        assert await eventually(held)
        assert await running.service.delete(config.id) is True  # while the template is held
        restored = await templates.update(made.id, templates.rules.types.patch.model_validate({"name": "T2"}))
        assert restored.name == "T2"
        assert restored.model is None
        assert templates.read(made.id).model is None
