"""Corrupt databases through ``bridge serve`` (issue 7, item 3).

A damaged ``bridge.db`` (truncated, zeroed, random garbage — after a clean stop, or
with the equally damaged ``-wal`` of a killed server beside it) is moved aside with its original bytes, the
server starts empty, reports ``recoveredFrom`` in ``bridge:hello`` and serves writes.
(The store-level variants live in ``tests/integration/test_storage_sqlite.py``; the lost
or corrupt key file through ``bridge serve`` in the same file, and is not repeated here.)
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.client import BridgeClient
from tests.conftest import start_bridge_process
from tests.reliability.helpers import SEED, config_input

pytestmark = pytest.mark.reliability


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def zero(path: Path) -> None:
    path.write_bytes(b"\0" * path.stat().st_size)


def garbage(path: Path) -> None:
    path.write_bytes(random.Random(SEED).randbytes(max(path.stat().st_size, 8192)))


async def seed(data_dir: Path, sig: int) -> None:
    served = start_bridge_process(data_dir)
    try:
        async with BridgeClient(served.url, served.token) as client:
            rng = random.Random(SEED)
            for i in range(30):
                await client.create_config(config_input(rng, f"Seed {i}"))
    finally:
        served.stop(sig)


@pytest.mark.parametrize(
    ("damage", "sig"),
    [
        (truncate, signal.SIGTERM),
        (zero, signal.SIGTERM),
        (garbage, signal.SIGTERM),
        # A truncated WAL is only a shorter log (SQLite keeps its valid prefix): not damage.
        (zero, signal.SIGKILL),
        (garbage, signal.SIGKILL),
    ],
    ids=["truncated", "zeroed", "garbage", "zeroed-with-wal", "garbage-with-wal"],
)
async def test_corrupt_database_is_quarantined_reported_in_hello_and_server_serves(
    tmp_path: Path, damage: Callable[[Path], None], sig: int
) -> None:
    data_dir = tmp_path / "data"
    await seed(data_dir, sig)
    db = data_dir / "bridge.db"
    damage(db)
    if sig == signal.SIGKILL:
        # The killed server's WAL still holds every page: damage it the same way, or SQLite
        # rightly heals the main file from it (see the test below).
        wal = Path(f"{db}-wal")
        assert wal.stat().st_size > 0
        damage(wal)
    original = {
        suffix: Path(f"{db}{suffix}").read_bytes()
        for suffix in ("", "-wal", "-shm")
        if Path(f"{db}{suffix}").exists()
    }

    served = start_bridge_process(data_dir)
    try:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.hello()
            assert hello.recovered_from is not None
            moved = Path(hello.recovered_from)
            assert moved.parent == data_dir
            assert moved.name.startswith("bridge.db.corrupt-")
            kept = {
                suffix: Path(f"{moved}{suffix}").read_bytes()
                for suffix in ("", "-wal", "-shm")
                if Path(f"{moved}{suffix}").exists()
            }
            # Original bytes, never deleted or rewritten. Probing the damaged file may leave
            # a fresh empty -wal and an -shm index beside it; they are moved along too.
            # The -shm is SQLite's rebuildable WAL index, rewritten by the probe: not compared.
            assert kept.keys() >= original.keys()
            assert {k: kept[k] for k in ("", "-wal") if k in original} == {
                k: original[k] for k in ("", "-wal") if k in original
            }
            assert all(kept[k] == b"" for k in kept.keys() - original.keys() if k == "-wal")
            assert await client.list_configs() == []
            created = await client.create_config(config_input(random.Random(SEED), "After recovery"))
            assert [v.id for v in await client.list_configs()] == [created.id]
        assert "store_quarantined" in served.log_text()
    finally:
        assert served.stop() == 0


async def test_killed_server_wal_heals_a_damaged_main_file_and_nothing_is_lost(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await seed(data_dir, signal.SIGKILL)
    zero(data_dir / "bridge.db")  # every page is still in the -wal of the killed server
    served = start_bridge_process(data_dir)
    try:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.hello()
            assert hello.recovered_from is None
            assert [v.custom_name for v in await client.list_configs()] == [f"Seed {i}" for i in range(30)]
    finally:
        assert served.stop() == 0
