"""Embedding: what start-up opened is closed on every way out (a failure, a cancellation, ``close``).

An application that embeds bridge may cancel ``start_bridge`` (its own start-up timed out)
or see a step of ``Bridge.close`` raise; either way no store may stay open behind it (a
SQLite connection holds its file, its WAL and a thread) and no follower may keep running.
The faults are injected; the stores, files and sockets are real.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

import bridge
from bridge.collection.sqlite import SqliteCollectionStore
from bridge.storage import SqliteConfigStore
from tests.helpers.templates import load_example, open_paths, options

WATCHERS = ("store-watcher", "collection-watcher")


def watchers() -> list[str]:
    """The names of the stores' follower tasks still running in this loop."""
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(WATCHERS)]


async def test_a_start_up_cancelled_during_the_first_load_leaves_no_store_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    loading = asyncio.Event()
    real_load = SqliteConfigStore.load

    async def slow_load(self: SqliteConfigStore) -> object:
        loading.set()
        await asyncio.Event().wait()  # until cancelled
        return await real_load(self)

    monkeypatch.setattr(SqliteConfigStore, "load", slow_load)
    starting = asyncio.ensure_future(bridge.start_bridge(options(data), load_example().build_registry()))
    await asyncio.wait_for(loading.wait(), 10)
    # Both stores are open now: bridge.db and collections.db.
    assert {Path(p).name for p in open_paths(data)} >= {"bridge.db", "collections.db"}
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert open_paths(data) == []
    assert watchers() == []


async def test_close_closes_every_store_when_the_shutdown_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    served = await bridge.start_bridge(options(data), load_example().build_registry())
    assert watchers() != []
    real_shutdown = served.server.shutdown

    async def failing_shutdown() -> None:
        await real_shutdown()
        raise RuntimeError("injected")

    monkeypatch.setattr(served.server, "shutdown", failing_shutdown)
    with pytest.raises(RuntimeError, match="injected"):
        await served.close()
    assert open_paths(data) == []
    assert watchers() == []
    with pytest.raises(bridge.ServiceUnavailableError):
        await served.service.list()


@pytest.mark.parametrize("store", [SqliteConfigStore, SqliteCollectionStore])
async def test_a_start_up_cancelled_while_a_database_opens_leaves_it_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: type[SqliteConfigStore | SqliteCollectionStore]
) -> None:
    data = tmp_path / "data"
    loop = asyncio.get_running_loop()
    opening = asyncio.Event()
    proceed = threading.Event()
    real_open = store._open_sync

    def slow_open(self: SqliteConfigStore | SqliteCollectionStore) -> sqlite3.Connection:
        # On the store's thread: the caller is cancelled while this open is under way.
        loop.call_soon_threadsafe(opening.set)
        proceed.wait(10)
        return real_open(self)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_open_sync", slow_open)
    starting = asyncio.ensure_future(bridge.start_bridge(options(data), load_example().build_registry()))
    await asyncio.wait_for(opening.wait(), 10)
    starting.cancel()
    await asyncio.sleep(0)  # the cancellation reaches the open before the thread finishes it
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert open_paths(data) == []
    assert watchers() == []


async def test_a_start_up_cancelled_while_it_starts_listening_leaves_no_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncio's start of serving awaits once: a cancellation there must not lose a bound socket.
    data = tmp_path / "data"
    bound: list[asyncio.Server] = []
    real_start_serving = asyncio.Server.start_serving

    async def start_serving(self: asyncio.Server) -> None:
        bound.append(self)
        await real_start_serving(self)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    monkeypatch.setattr(asyncio.Server, "start_serving", start_serving)
    starting = asyncio.ensure_future(bridge.start_bridge(options(data), load_example().build_registry()))
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert bound != []
    assert not any(server.is_serving() for server in bound)
    assert open_paths(data) == []
    assert watchers() == []
