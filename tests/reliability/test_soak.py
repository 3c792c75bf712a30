"""Soak: 32 clients × mixed operations for a bounded time (issue 7, item 6).

Against a ``bridge serve`` subprocess: no unexpected error (the deliberate duplicate
names and stale ``expectedVersion`` answer exactly 4009 and 4012), resident memory
bounded (median RSS of the last quarter vs the first), and with every client gone the
server holds as many file descriptors as before. Against an in-process server: no task
survives its connection. 30 s in CI, 600 s with ``BRIDGE_RELIABILITY=long``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from bridge.client import BridgeClient
from bridge.errors import BridgeError, DuplicateConfigNameError, VersionConflictError
from tests.conftest import start_bridge_process
from tests.e2e.wire import running_bridge
from tests.reliability.helpers import RUN_TIMEOUT_S, SEED, SOAK_S, config_input, random_key, record

pytestmark = pytest.mark.reliability

CLIENTS = 32
MAX_OPS_PER_CLIENT = 1_000_000  # the deadline ends the loop; this only bounds it
RSS_SLACK_BYTES = 16 * 1024 * 1024


async def worker(  # noqa: C901, PLR0912, PLR0915 - one flat table of weighted operations
    client: BridgeClient, tag: str, index: int, deadline: float, counts: Counter[str]
) -> None:
    rng = random.Random(SEED + index)
    mine: dict[str, int] = {}  # id → version
    providers: dict[str, str] = {}
    names: dict[str, str] = {}
    serial = 0
    for _ in range(MAX_OPS_PER_CLIENT):
        if time.monotonic() >= deadline:
            return
        roll = rng.random()
        try:
            if not mine or (roll < 0.2 and len(mine) < 6):
                serial += 1
                view = await client.create_config(config_input(rng, f"soak-{tag}-{index}-{serial}"))
                mine[view.id] = view.version
                names[view.id] = view.custom_name
                providers[view.id] = view.provider.value
                counts["create"] += 1
            elif roll < 0.35:
                cid = rng.choice(list(mine))
                view = await client.update_config(
                    cid,
                    {"apiKey": random_key(rng, providers[cid]), "useAuthHeader": rng.random() < 0.5},
                    mine[cid],
                )
                mine[cid] = view.version
                counts["update"] += 1
            elif roll < 0.42:
                cid = rng.choice(list(mine))
                assert await client.delete_config(cid, mine.pop(cid)) is True
                counts["delete"] += 1
            elif roll < 0.45:
                taken = names[rng.choice(list(mine))].upper()  # same name_key as one of mine
                try:
                    await client.create_config(config_input(rng, taken))
                    raise AssertionError("a duplicate name was accepted")
                except DuplicateConfigNameError:
                    counts["expected-4009"] += 1
            elif roll < 0.48:
                cid = rng.choice(list(mine))
                try:
                    await client.update_config(cid, {"customName": f"x-{index}-{serial}"}, mine[cid] + 5)
                    raise AssertionError("a stale expectedVersion was accepted")
                except VersionConflictError:
                    counts["expected-4012"] += 1
            elif roll < 0.75:
                view_or_none = await client.read_config(rng.choice(list(mine)))
                assert view_or_none is not None
                counts["read"] += 1
            elif roll < 0.95:
                await client.list_configs()
                counts["list"] += 1
            else:
                await client.snapshot()
                counts["snapshot"] += 1
        except BridgeError as exc:
            counts[f"unexpected-{exc.code}"] += 1
            raise


async def run_clients(
    url: str, token: str, seconds: float, tag: str, schema_hash: str | None = None
) -> Counter[str]:
    counts: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    clients = [BridgeClient(url, token, schema_hash=schema_hash) for _ in range(CLIENTS)]
    for client in clients:
        await client.connect()
        client.on("llm-config:changed", lambda _: notes.update(["n"]))
    deadline = time.monotonic() + seconds
    try:
        await asyncio.gather(*(worker(c, tag, i, deadline, counts) for i, c in enumerate(clients)))
    finally:
        for client in clients:
            await client.close()
    counts["notifications"] = notes["n"]
    return counts


def fd_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def settle(measure: object, target: int, timeout_s: float = 10.0) -> int:
    """Poll ``measure()`` until it is ≤ ``target`` (connections wind down asynchronously)."""
    assert callable(measure)
    value = int(measure())
    async with asyncio.timeout(timeout_s):
        while value > target:
            await asyncio.sleep(0.05)
            value = int(measure())
    return value


@pytest.mark.timeout(RUN_TIMEOUT_S)
async def test_soak_32_clients_no_unexpected_error_bounded_rss_and_no_leaked_fds(tmp_path: Path) -> None:
    served = start_bridge_process(tmp_path / "data")
    try:
        process = psutil.Process(served.process.pid)
        await run_clients(served.url, served.token, 1.0, "warm")  # warm-up: lazy imports, caches
        fds_before = await settle(lambda: fd_count(process.pid), 10**6)
        samples: list[int] = []

        async def sample() -> None:
            while True:
                samples.append(process.memory_info().rss)
                await asyncio.sleep(max(SOAK_S / 200, 0.1))

        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        counts = await run_clients(served.url, served.token, SOAK_S, "main")
        elapsed = time.monotonic() - started
        sampler.cancel()
        assert not [k for k in counts if k.startswith("unexpected")], counts
        assert counts["expected-4009"] + counts["expected-4012"] > 0
        quarter = max(len(samples) // 4, 1)
        first, last = statistics.median(samples[:quarter]), statistics.median(samples[-quarter:])
        assert last - first < max(RSS_SLACK_BYTES, first * 0.25), (first, last)
        # ≤, not ==: the baseline may still hold a warm-up socket that was closing.
        fds_after = await settle(lambda: fd_count(process.pid), fds_before)
        assert fds_after <= fds_before
        ops = sum(v for k, v in counts.items() if k != "notifications")
        record(
            "soak",
            clients=CLIENTS,
            seconds=round(elapsed, 1),
            operations=ops,
            ops_per_s=round(ops / elapsed),
            counts=dict(counts),
            rss_first_quarter_mib=round(first / 2**20, 1),
            rss_last_quarter_mib=round(last / 2**20, 1),
            fds_before=fds_before,
            fds_after=fds_after,
        )
    finally:
        assert served.stop() == 0


@pytest.mark.timeout(RUN_TIMEOUT_S)
async def test_in_process_soak_leaves_no_task_behind(tmp_path: Path) -> None:
    async with running_bridge(tmp_path / "data") as bridge:
        schema_hash = bridge.schema_hash()  # the test channels are part of the contract here
        await run_clients(bridge.url, bridge.token, 0.5, "warm", schema_hash)  # warm-up
        await settle(lambda: bridge.server.connection_count, 0)
        before = asyncio.all_tasks()
        counts = await run_clients(
            bridge.url, bridge.token, min(max(SOAK_S / 6, 5.0), 60.0), "main", schema_hash
        )
        assert not [k for k in counts if k.startswith("unexpected")], counts
        await settle(lambda: bridge.server.connection_count, 0)
        await settle(lambda: len(asyncio.all_tasks() - before), 0)
        assert asyncio.all_tasks() - before == set()
        report = await bridge.service.validate_cache()
        assert report["consistent"] is True, report
        record(
            "soak-tasks", tasks_before=len(before), tasks_after=len(asyncio.all_tasks()), counts=dict(counts)
        )
