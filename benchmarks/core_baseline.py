"""Baseline figures of the core (service + SQLite store), without sockets.

Measures, on real SQLite files in a temporary directory:

- cache initialization time (one store read + cache build) with 100 / 1,000 / 10,000
  configs, in milliseconds;
- cached read latency, in microseconds: ``LlmConfigService.read`` through the RPC
  binding's ``JsonMemo`` (what the ``llm-config:read`` channel sends: the kept JSON) and
  ``read`` alone (the cached view, for in-process callers);
- durable update latency (``LlmConfigService.update``: ``BEGIN IMMEDIATE`` … ``COMMIT``
  with ``synchronous=FULL``), in milliseconds;
- cache memory per config (``tracemalloc`` delta across initialization / count), in bytes.

Every figure is the median of repeated runs, with the spread (min–max) beside it.

Run: ``.venv/bin/python benchmarks/core_baseline.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import orjson

from bridge.keystore import KeyCipher, SecretBackend, load_data_key
from bridge.models import LlmConfigPatch, LlmConfigView, api_key_preview, name_key
from bridge.service import LlmConfigService, utc_now
from bridge.service.channels import JsonMemo
from bridge.storage import SqliteConfigStore
from bridge.storage.base import COLUMNS, StoredConfig, row_values

KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0" * 2


async def seed(data_dir: Path, count: int) -> KeyCipher:
    """Create ``count`` configs in one transaction (seeding is not what is measured)."""
    store = SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    await store.close()
    cipher = KeyCipher(load_data_key(data_dir, SecretBackend.FILE, must_exist=False))
    conn = sqlite3.connect(data_dir / "bridge.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    now = utc_now()
    for i in range(count):
        cid = str(uuid.uuid4())
        name = f"Config {i:05d}"
        row = StoredConfig(
            cid,
            name,
            name_key(name),
            "openai",
            cipher.encrypt(KEY, cid),
            api_key_preview(KEY),
            None,
            True,
            now,
            now,
            1,
            i + 1,
        )
        conn.execute(
            f"INSERT INTO configs ({', '.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})",
            row_values(row),
        )
    conn.execute("UPDATE meta SET revision = ?", (count,))
    conn.execute("COMMIT")
    conn.close()
    return cipher


async def init_once(data_dir: Path, cipher: KeyCipher, *, trace: bool) -> tuple[float, int]:
    """Return (init seconds, traced bytes retained by the cache)."""
    store = SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    service = LlmConfigService(store, cipher, watch=False)
    gc.collect()
    if trace:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    await service.initialize()
    elapsed = time.perf_counter() - start
    retained = 0
    if trace:
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    await service.close()
    await store.close()
    return elapsed, retained


def spread(values: list[float], scale: float, unit: str) -> str:
    return (
        f"{statistics.median(values) * scale:.3g} {unit} "
        f"(min {min(values) * scale:.3g}, max {max(values) * scale:.3g}, n={len(values)})"
    )


async def main(repeats: int) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import os

    print(
        f"machine: nproc={os.cpu_count()}, cpu={cpu}, python={platform.python_version()}, "
        f"sqlite={sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for count in (100, 1_000, 10_000):
            data_dir = Path(tmp) / f"n{count}"
            data_dir.mkdir()
            cipher = await seed(data_dir, count)
            times = [(await init_once(data_dir, cipher, trace=False))[0] for _ in range(repeats)]
            print(f"init {count:>6} configs: {spread(times, 1e3, 'ms')}")
            if count == 10_000:
                per = [(await init_once(data_dir, cipher, trace=True))[1] / count for _ in range(3)]
                print(
                    f"cache memory per config: {statistics.median(per):.0f} B "
                    f"(min {min(per):.0f}, max {max(per):.0f}, n={len(per)})"
                )

        data_dir = Path(tmp) / "n1000"
        store = SqliteConfigStore(data_dir / "bridge.db")
        await store.open()
        service = LlmConfigService(
            store, KeyCipher(load_data_key(data_dir, SecretBackend.FILE, must_exist=True)), watch=False
        )
        views = await service.list()
        ids = [v.id for v in views]
        memo = JsonMemo(LlmConfigView)  # what the llm-config:read binding keeps

        async def read_wire(config_id: str) -> orjson.Fragment:
            return memo.one(await service.read(config_id))

        for label, read in (("read (wire JSON)", read_wire), ("read", service.read)):
            reads: list[float] = []
            for _ in range(repeats):
                start = time.perf_counter()
                for cid in ids:
                    await read(cid)
                reads.append((time.perf_counter() - start) / len(ids))
            print(f"cached {label}: {spread(reads, 1e6, 'µs')} per call (median of per-run means)")
        updates: list[float] = []
        for i in range(200):
            start = time.perf_counter()
            await service.update(ids[i % len(ids)], LlmConfigPatch(custom_name=f"Renamed {i:04d}"))
            updates.append(time.perf_counter() - start)
        updates.sort()
        print(
            f"durable update: p50 {statistics.median(updates) * 1e3:.3g} ms, "
            f"p90 {updates[int(len(updates) * 0.9)] * 1e3:.3g} ms "
            f"(min {updates[0] * 1e3:.3g}, max {updates[-1] * 1e3:.3g}, n={len(updates)})"
        )
        await service.close()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure (default 7)")
    asyncio.run(main(parser.parse_args().repeats))
