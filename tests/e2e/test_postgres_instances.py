"""Several ``bridge serve`` processes on one PostgreSQL database (DESIGN §3, issue 9).

Real subprocesses with ``--store postgresql://…`` and one shared data key; a real
server started by the session's ``pg_cluster`` fixture. Faults are real too: the
listener connection is killed with ``pg_terminate_backend`` and the server restarted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bridge.client import BridgeClient
from bridge.errors import BridgeError, VersionConflictError
from bridge.keystore import generate_data_key_text
from tests.conftest import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    ServedBridge,
    drain_until,
    openai_config,
    race_same_name_creates,
    start_bridge_process,
    subscribe,
)
from tests.pgcluster import PgCluster

TIMEOUT_S = 15.0

Launcher = Callable[[int], list[ServedBridge]]


@pytest.fixture
def launch(tmp_path: Path, pg_dsn: str, data_key_file: Path, pg_cluster: PgCluster) -> Iterator[Launcher]:
    """Start ``n`` instances on one database and one data key; checks their logs at the end."""
    started: list[ServedBridge] = []

    def start(n: int) -> list[ServedBridge]:
        batch = [
            start_bridge_process(
                tmp_path / f"data-{len(started) + i}",
                "--store",
                pg_dsn,
                "--data-key-file",
                str(data_key_file),
                "--log-level",
                "debug",
            )
            for i in range(n)
        ]
        started.extend(batch)
        return batch

    try:
        yield start
    finally:
        codes = [served.stop() for served in started]
        assert codes == [0] * len(started)
        for served in started:
            text = served.log_text()
            for line in text.splitlines():
                json.loads(line)
            assert OPENAI_KEY not in text
            assert ANTHROPIC_KEY not in text
            assert pg_cluster.password not in text  # the DSN is logged redacted


async def test_write_through_one_instance_reaches_clients_of_the_two_others(launch: Launcher) -> None:
    a, b, c = launch(3)
    async with (
        BridgeClient(a.url, a.token) as client_a,
        BridgeClient(b.url, b.token) as client_b,
        BridgeClient(c.url, c.token) as client_c,
    ):
        events = [subscribe(client) for client in (client_a, client_b, client_c)]
        view = await client_a.create_config(openai_config("Shared"))
        expected = {"type": "created", "id": view.id, "revision": 1, "config": view.model_dump(mode="json")}
        for queue in events:
            assert await asyncio.wait_for(queue.get(), TIMEOUT_S) == expected
        assert await client_c.read_config(view.id) == view

        updated = await client_b.update_config(view.id, {"apiKey": ANTHROPIC_KEY, "provider": "anthropic"})
        for queue in events:
            event = await asyncio.wait_for(queue.get(), TIMEOUT_S)
            assert event == {
                "type": "updated",
                "id": view.id,
                "revision": 2,
                "config": updated.model_dump(mode="json"),
            }

        assert await client_c.delete_config(view.id) is True
        for queue in events:
            assert await asyncio.wait_for(queue.get(), TIMEOUT_S) == {
                "type": "deleted",
                "id": view.id,
                "revision": 3,
            }
        for client in (client_a, client_b, client_c):
            assert await client.list_configs() == []


async def test_same_name_creates_on_different_instances_let_exactly_one_win(launch: Launcher) -> None:
    a, b = launch(2)
    async with BridgeClient(a.url, a.token) as client_a, BridgeClient(b.url, b.token) as client_b:
        winner = await race_same_name_creates((client_a, client_b), rounds=8)
        for client in (client_a, client_b):
            snapshot = await client.snapshot()
            assert [v.id for v in snapshot.configs] == [winner.id]


async def test_same_expected_version_on_different_instances_lets_exactly_one_update_win(
    launch: Launcher,
) -> None:
    a, b = launch(2)
    async with BridgeClient(a.url, a.token) as client_a, BridgeClient(b.url, b.token) as client_b:
        view = await client_a.create_config(openai_config("Target"))
        calls = [
            client.update_config(view.id, {"customName": f"Target {i}"}, expected_version=1)
            for i in range(6)
            for client in (client_a, client_b)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert winners[0].version == 2
        assert all(isinstance(r, VersionConflictError) for r in results if isinstance(r, BaseException))


async def test_concurrent_writers_on_three_instances_lose_no_update_and_revisions_increase(
    launch: Launcher,
) -> None:
    instances = launch(3)
    clients = [BridgeClient(s.url, s.token) for s in instances]
    for client in clients:
        await client.connect()
    try:
        events = [subscribe(client) for client in clients]
        shared = await clients[0].create_config(openai_config("Counter"))
        per_client = 6

        async def writer(index: int, client: BridgeClient) -> None:
            for i in range(per_client):
                await client.update_config(shared.id, {"customName": f"Counter {index}-{i}"})

        await asyncio.gather(*(writer(i, client) for i, client in enumerate(clients)))
        total = 1 + per_client * len(clients)
        for queue in events:
            revisions = [e["revision"] for e in await drain_until(queue, total, TIMEOUT_S)]
            assert revisions == list(range(1, total + 1)), revisions
        for client in clients:
            final = await client.read_config(shared.id)
            assert final is not None
            assert final.version == 1 + per_client * len(clients)  # no lost update
        snapshots = [await client.snapshot() for client in clients]
        assert snapshots[0] == snapshots[1] == snapshots[2]
        assert snapshots[0].revision == total
    finally:
        for client in clients:
            await client.close()


async def listener_pid(pg_dsn: str, served: ServedBridge) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            f"bridge-listener-{served.ready['pid']}",
        )
    finally:
        await conn.close()
    assert isinstance(pid, int), "the instance's listener connection was not found"
    return pid


async def test_killed_listener_connection_recovers_and_delivers_every_change_of_the_gap(
    launch: Launcher, pg_dsn: str
) -> None:
    a, b = launch(2)
    async with BridgeClient(a.url, a.token) as client_a, BridgeClient(b.url, b.token) as client_b:
        events_b = subscribe(client_b)
        first = await client_a.create_config(openai_config("Before"))
        assert (await asyncio.wait_for(events_b.get(), TIMEOUT_S))["id"] == first.id

        old_pid = await listener_pid(pg_dsn, b)
        admin = await asyncpg.connect(pg_dsn)
        try:
            writes = asyncio.ensure_future(
                asyncio.gather(*(client_a.create_config(openai_config(f"Gap {i}")) for i in range(10)))
            )
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid) is True
            created = await writes
        finally:
            await admin.close()
        seen = await drain_until(events_b, 11, TIMEOUT_S)
        assert [e["revision"] for e in seen] == list(range(2, 12))
        assert {e["id"] for e in seen} == {v.id for v in created}
        assert await listener_pid(pg_dsn, b) != old_pid  # a new listener is in place

        # And it listens again: a later write still reaches B.
        late = await client_a.create_config(openai_config("After"))
        assert (await asyncio.wait_for(events_b.get(), TIMEOUT_S))["id"] == late.id
    assert "store_listener_lost" in b.log_text()


async def test_postgres_restart_under_load_instances_recover_and_converge(
    launch: Launcher, pg_cluster: PgCluster, pg_dsn: str
) -> None:
    a, b = launch(2)
    async with BridgeClient(a.url, a.token) as client_a, BridgeClient(b.url, b.token) as client_b:
        stop = asyncio.Event()
        acknowledged: list[str] = []
        per_writer = {"a": 0, "b": 0}
        failures: list[BaseException] = []

        async def load(tag: str, client: BridgeClient) -> None:
            i = 0
            while not stop.is_set():
                try:
                    view = await client.create_config(openai_config(f"{tag}{i}"))
                except BridgeError as exc:  # writes fail while the server is down (5000)
                    failures.append(exc)
                    await asyncio.sleep(0.05)  # pace the retries of a down database
                else:
                    acknowledged.append(view.id)
                    per_writer[tag] += 1
                i += 1

        writers = [asyncio.ensure_future(load(t, c)) for t, c in (("a", client_a), ("b", client_b))]
        await until(lambda: min(per_writer.values()) >= 3)  # both write before the restart
        await asyncio.to_thread(pg_cluster.restart)
        after = dict(per_writer)
        await until(lambda: all(per_writer[t] >= after[t] + 5 for t in after))  # and both after it
        stop.set()
        await asyncio.gather(*writers)

        conn = await asyncpg.connect(pg_dsn)
        try:  # the writers have stopped: the table is final
            stored = [r["id"] for r in await conn.fetch("SELECT id FROM bridge_configs ORDER BY seq")]
            revision = await conn.fetchval("SELECT revision FROM bridge_meta")
        finally:
            await conn.close()
        # Every acknowledged write is there; a write whose commit raced the shutdown may be
        # there without an acknowledgement (in doubt).
        assert set(acknowledged) <= set(stored)

        async def converged() -> None:
            while True:
                snaps = [await client_a.snapshot(), await client_b.snapshot()]
                if all([v.id for v in s.configs] == stored and s.revision == revision for s in snaps):
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(converged(), 30)  # both caches show exactly the table
        assert failures, "the restart was expected to fail some writes"


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait (bounded) until ``predicate()`` holds, looking every 20 ms."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - a plain predicate over test state, bounded below
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout_s)


def serve_once(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run ``bridge serve`` expecting a startup refusal; returns its one JSON line."""
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--data-dir", str(tmp_path / "refused"), *args],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    line: dict[str, Any] = json.loads(proc.stdout.decode().splitlines()[0])
    return line


async def test_startup_refuses_a_data_key_whose_id_does_not_match_the_rows(
    launch: Launcher, pg_dsn: str, tmp_path: Path
) -> None:
    (a,) = launch(1)
    async with BridgeClient(a.url, a.token) as client:
        await client.create_config(openai_config("Sealed"))
    other = tmp_path / "other.key"
    other.write_text(generate_data_key_text(), encoding="ascii")
    other.chmod(0o600)  # a secret: bridge refuses one others can read
    line = await asyncio.to_thread(serve_once, tmp_path, "--store", pg_dsn, "--data-key-file", str(other))
    assert line["event"] == "error"
    assert line["error"] == "STARTUP_FAILED"
    assert "sealed with data key id" in line["message"]
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM bridge_configs") == 1  # nothing changed
        stored = await conn.fetchrow("SELECT api_key_ct, key_id FROM bridge_configs")
    finally:
        await conn.close()
    assert bytes(stored["api_key_ct"])[:8] == bytes(stored["key_id"])
    assert OPENAI_KEY.encode() not in bytes(stored["api_key_ct"])


async def test_startup_refuses_postgres_without_a_shared_key_and_an_unreachable_server(
    pg_dsn: str, pg_cluster: PgCluster, tmp_path: Path
) -> None:
    line = await asyncio.to_thread(serve_once, tmp_path, "--store", pg_dsn)
    assert "--data-key-file" in line["message"]
    key = tmp_path / "k"
    key.write_text(generate_data_key_text(), encoding="ascii")
    key.chmod(0o600)
    unreachable = pg_dsn.replace(f":{pg_cluster.port}/", ":1/")
    line = await asyncio.to_thread(serve_once, tmp_path, "--store", unreachable, "--data-key-file", str(key))
    assert line["error"] == "STARTUP_FAILED"
    assert "Cannot connect to PostgreSQL" in line["message"]
    assert pg_cluster.password not in line["message"]
    assert ":***@" in line["message"]


async def test_instances_configured_by_environment_share_the_store_and_the_key(
    launch: Launcher, pg_dsn: str, data_key_file: Path, tmp_path: Path, pg_cluster: PgCluster
) -> None:
    (a,) = launch(1)  # flags: --store, --data-key-file
    env = {"BRIDGE_STORE": pg_dsn, "BRIDGE_DATA_KEY": data_key_file.read_text().strip()}
    b = start_bridge_process(tmp_path / "env-data", env=env)
    try:
        async with BridgeClient(a.url, a.token) as client_a, BridgeClient(b.url, b.token) as client_b:
            events_a = subscribe(client_a)
            view = await client_a.create_config(openai_config("Sealed by A"))
            # B decrypts A's key to compare it (an effective update needs the old key).
            updated = await client_b.update_config(
                view.id, {"apiKey": ANTHROPIC_KEY, "provider": "anthropic"}
            )
            assert updated.version == 2
            assert [e["revision"] for e in await drain_until(events_a, 2, TIMEOUT_S)] == [1, 2]
            assert await client_a.read_config(view.id) == updated
    finally:
        assert b.stop() == 0
    assert pg_cluster.password not in b.log_text()


def test_sqlite_store_refuses_a_replaced_data_key_and_keeps_the_rows(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_bridge_process(data_dir)
    try:
        asyncio.run(_create_one(first))
    finally:
        assert first.stop() == 0
    db_before = (data_dir / "bridge.db").read_bytes()
    (data_dir / "bridge.key").write_text(generate_data_key_text() + "\n", encoding="ascii")
    line = serve_once(tmp_path, "--data-dir", str(data_dir), "--secret-backend", "file")
    assert line["error"] == "STARTUP_FAILED"
    assert "sealed with data key id" in line["message"]
    assert (data_dir / "bridge.db").read_bytes() == db_before


async def _create_one(served: ServedBridge) -> None:
    async with BridgeClient(served.url, served.token) as client:
        await client.create_config(openai_config("Sealed"))
