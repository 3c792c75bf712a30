"""Collections on the shared state core: cancelled writers, and a follower that fails and recovers.

A collection write whose caller is cancelled mid-write leaves cache and store equal and
its event is sent (as for ``llm-config``, DESIGN §4: :func:`bridge.state.write_through`).
A follower whose feed read fails retries with a full reload (:func:`bridge.state.follow`).
Real SQLite files; faults (a store write that commits, then stalls while its caller is
cancelled; a failing feed read) are injected by wrapping one store method.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.collection.service import CollectionService
from bridge.collection.sqlite import SqliteCollectionStore
from bridge.keystore import DataKey, KeyCipher
from tests.helpers.templates import load_example

CIPHER = KeyCipher(DataKey(b"k" * 32, "file"))
TIMEOUT_S = 15.0
NAME = "prompt-template"


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[CollectionService, SqliteCollectionStore]]:
    """The example's prompt-template service on a fresh file, not following it (nothing else writes)."""
    store = SqliteCollectionStore(tmp_path / "collections.db")
    await store.open()
    service = CollectionService(load_example().PROMPT_TEMPLATES.rules, store, CIPHER, watch=False)
    await service.start()
    try:
        yield service, store
    finally:
        await service.close()
        await store.close()


def stall_after_commit(
    store: SqliteCollectionStore, method: str
) -> tuple[asyncio.Event, asyncio.Event, Callable[[], None]]:
    """Make ``store.<method>`` commit, then wait: return (committed, release, undo)."""
    committed, release = asyncio.Event(), asyncio.Event()
    real: Callable[..., Awaitable[Any]] = getattr(store, method)

    async def commit_then_stall(*args: Any, **kwargs: Any) -> Any:
        feed = await real(*args, **kwargs)
        committed.set()
        await release.wait()  # the caller is cancelled here, after the commit
        return feed

    setattr(store, method, commit_then_stall)
    return committed, release, lambda: setattr(store, method, real)


async def cancel_mid_write(
    service: CollectionService, store: SqliteCollectionStore, method: str, write: Awaitable[Any]
) -> list[Any]:
    """Run ``write``, cancel its caller after the store committed; return the events sent since."""
    sent: asyncio.Queue[Any] = asyncio.Queue()
    service.events.subscribe(sent.put_nowait)
    committed, release, undo = stall_after_commit(store, method)
    caller = asyncio.ensure_future(write)
    try:
        await asyncio.wait_for(committed.wait(), TIMEOUT_S)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        release.set()
        events = [await asyncio.wait_for(sent.get(), TIMEOUT_S)]
    finally:
        undo()
    while not sent.empty():
        events.append(sent.get_nowait())
    return events


async def assert_cache_equals_store(service: CollectionService, store: SqliteCollectionStore) -> None:
    revision, items = await store.load(NAME)
    assert [(v.id, v.version) for v in service.list()] == [(i.id, i.version) for i in items]
    assert service.revision == revision


async def test_a_create_whose_caller_is_cancelled_is_cached_and_sent_once(
    opened: tuple[CollectionService, SqliteCollectionStore],
) -> None:
    service, store = opened
    template = load_example().PromptTemplate(name="Groceries", template="t")
    events = await cancel_mid_write(service, store, "insert", service.create(template))
    assert [(e.type.value, e.item.name) for e in events] == [("created", "Groceries")]
    assert service.read(events[0].id) is events[0].item
    await assert_cache_equals_store(service, store)
    # The next write applies the feed since the cache's revision: nothing of the first is left to send.
    later: list[Any] = []
    service.events.subscribe(later.append)
    await service.create(load_example().PromptTemplate(name="Other", template="t"))
    assert [(e.type.value, e.item.name) for e in later] == [("created", "Other")]
    await assert_cache_equals_store(service, store)


async def test_an_update_whose_caller_is_cancelled_is_cached_and_sent_once(
    opened: tuple[CollectionService, SqliteCollectionStore],
) -> None:
    service, store = opened
    example = load_example()
    made = await service.create(example.PromptTemplate(name="Before", template="t"))
    updates = service.rules.types.patch.model_validate({"name": "After"})
    events = await cancel_mid_write(service, store, "update", service.update(made.id, updates))
    assert [(e.type.value, e.item.name, e.item.version) for e in events] == [("updated", "After", 2)]
    assert service.read(made.id).name == "After"
    await assert_cache_equals_store(service, store)


async def test_a_delete_whose_caller_is_cancelled_leaves_the_cache_and_is_sent_once(
    opened: tuple[CollectionService, SqliteCollectionStore],
) -> None:
    service, store = opened
    made = await service.create(load_example().PromptTemplate(name="Gone", template="t"))
    events = await cancel_mid_write(service, store, "delete", service.delete(made.id))
    assert [(e.type.value, e.id) for e in events] == [("deleted", made.id)]
    assert service.read(made.id) is None
    await assert_cache_equals_store(service, store)


async def test_a_follower_failure_is_retried_with_a_full_reload_that_publishes_what_it_missed(
    tmp_path: Path,
) -> None:
    # The follower the collections now share with llm-config (bridge.state.follow): the
    # feed read fails once; the retry reloads the table and publishes the other process's item.
    path = tmp_path / "collections.db"
    mine, theirs = SqliteCollectionStore(path, poll_interval_s=0.02), SqliteCollectionStore(path)
    await mine.open()
    await theirs.open()
    rules = load_example().PROMPT_TEMPLATES.rules
    follower = CollectionService(rules, mine, CIPHER)
    writer = CollectionService(rules, theirs, CIPHER, watch=False)
    real = mine.changes_since
    failures = 0

    async def fails_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise OSError("feed unreadable")
        return await real(*args, **kwargs)

    sent: asyncio.Queue[Any] = asyncio.Queue()
    try:
        await follower.start()
        await writer.start()
        follower.events.subscribe(sent.put_nowait)
        mine.changes_since = fails_once  # type: ignore[method-assign]
        with capture_logs() as logs:
            made = await writer.create(load_example().PromptTemplate(name="Elsewhere", template="t"))
            # The follower publishes, then logs its recovery, without yielding in between.
            event = await asyncio.wait_for(sent.get(), TIMEOUT_S)
    finally:
        await follower.close()
        await writer.close()
        await mine.close()
        await theirs.close()
    assert (event.type.value, event.id) == ("created", made.id)
    assert failures == 1
    events = [e["event"] for e in logs if e["event"].startswith("collection_")]
    assert events == ["collection_follow_failed", "collection_reloaded", "collection_follow_recovered"]
    assert sent.empty()
