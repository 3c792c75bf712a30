"""``bridge rotate-key`` with two instances, and ``bridge doctor`` (issue 16, items 8–9).

Real processes: ``bridge serve`` instances on one PostgreSQL database (and one SQLite
data directory), the ``bridge rotate-key`` and ``bridge doctor`` commands as an operator
runs them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bridge.client import BridgeClient
from bridge.keystore import key_id_of, load_shared_data_key
from tests.conftest import (
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    ServedBridge,
    openai_config,
    start_bridge_process,
    subscribe,
)
from tests.e2e.store_edits import OtherProgram

TIMEOUT_S = 15.0


def bridge_command(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``python -m bridge ARGS``; returns the exit code and its one JSON stdout line."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, timeout=60, check=False
    )
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0])


def key_ids(path: Path) -> list[str]:
    key = load_shared_data_key(path, None)
    assert key is not None
    return [key_id_of(k).hex() for k in key.secrets()]


async def seed_three(served: ServedBridge) -> list[str]:
    async with BridgeClient(served.url, served.token) as client:
        return [
            (await client.create_config(openai_config("O"))).id,
            (
                await client.create_config(
                    {"customName": "A", "provider": "anthropic", "apiKey": ANTHROPIC_KEY}
                )
            ).id,
            (await client.create_config({"customName": "G", "provider": "google", "apiKey": GOOGLE_KEY})).id,
        ]


async def wait_updates(events: asyncio.Queue[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while {e["id"] for e in seen if e["type"] == "updated"} != set(ids):
        seen.append(await asyncio.wait_for(events.get(), TIMEOUT_S))
    return seen


async def test_rotate_key_with_two_instances_on_postgresql(
    tmp_path: Path, pg_dsn: str, data_key_file: Path
) -> None:
    args = ("--store", pg_dsn, "--data-key-file", str(data_key_file))
    old_id = key_ids(data_key_file)
    instances = [start_bridge_process(tmp_path / f"d{i}", *args) for i in range(2)]
    try:
        ids = await seed_three(instances[0])
        # 1. Stage: the key file now holds the old key and the new one (which seals).
        code, staged = bridge_command("rotate-key", "--stage", *args)
        assert code == 0
        assert staged["event"] == "staged"
        assert key_ids(data_key_file) == [*old_id, staged["sealingKeyId"]]
        # 2. Give every instance the new key set: restart them.
        for served in instances:
            served.stop()
        instances = [start_bridge_process(tmp_path / f"d{i}", *args) for i in range(2)]
        clients = [BridgeClient(s.url, s.token) for s in instances]
        for client in clients:
            await client.connect()
        queues = [subscribe(client) for client in clients]
        try:
            # 3. Re-seal every row in one transaction, retire the old key.
            code, rotated = bridge_command("rotate-key", *args)
            assert code == 0
            assert rotated == {
                "event": "rotated",
                "sealingKeyId": staged["sealingKeyId"],
                "resealed": 3,
                "unopened": 0,
                "retired": old_id,
                "kept": [],
            }
            assert key_ids(data_key_file) == [staged["sealingKeyId"]]
            # Both instances see the re-sealed rows (a write each) and serve them all.
            for queue in queues:
                await wait_updates(queue, ids)
            for client in clients:
                hello = await client.invoke("bridge:hello")
                assert hello["quarantined"] == []
                assert [c["id"] for c in await client.invoke("llm-config:list")] == ids
            added = await clients[1].create_config(openai_config("After rotation"))
        finally:
            for client in clients:
                await client.close()
    finally:
        for served in instances:
            served.stop()
    program = OtherProgram(dsn=pg_dsn)
    stored = await program.fetch("SELECT DISTINCT encode(key_id, 'hex') FROM {configs}")
    assert stored == [(staged["sealingKeyId"],)]
    # Restarted with the new key alone, every row opens.
    again = start_bridge_process(tmp_path / "d0", *args)
    try:
        async with BridgeClient(again.url, again.token) as client:
            hello = await client.invoke("bridge:hello")
            assert hello["quarantined"] == []
            assert [c["id"] for c in await client.invoke("llm-config:list")] == [*ids, added.id]
    finally:
        again.stop()


async def test_rotate_key_of_a_stopped_sqlite_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    served = start_bridge_process(data)
    try:
        ids = await seed_three(served)
    finally:
        served.stop()
    before = (data / "bridge.key").read_text()
    code, rotated = bridge_command("rotate-key", "--data-dir", str(data), "--secret-backend", "file")
    assert code == 0
    assert rotated["resealed"] == 3
    assert len(rotated["retired"]) == 1
    after = (data / "bridge.key").read_text()
    assert after != before
    assert len(after.split()) == 1
    assert not any(before.strip() in line for line in after.splitlines())
    served = start_bridge_process(data)
    try:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.invoke("bridge:hello")
            assert hello["quarantined"] == []
            assert [c["id"] for c in await client.invoke("llm-config:list")] == ids
    finally:
        served.stop()


async def test_doctor_lists_quarantined_rows_and_structural_findings_without_changing_the_file(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    served = start_bridge_process(data)
    try:
        ids = await seed_three(served)
    finally:
        served.stop()
    code, clean = bridge_command("doctor", "--data-dir", str(data), "--secret-backend", "file")
    assert code == 0
    assert clean["quarantined"] == []
    assert clean["rows"] == 3
    program = OtherProgram(db=data / "bridge.db")
    await program.execute("UPDATE {configs} SET provider = 'bogus' WHERE id = ?", ids[1])
    await program.execute("DELETE FROM {meta}")
    before = (data / "bridge.db").read_bytes()
    code, report = bridge_command("doctor", "--data-dir", str(data), "--secret-backend", "file")
    assert code == 1
    assert report["quarantined"] == [{"id": ids[1], "reason": "provider.INVALID_ENUM"}]
    assert report["structure"] == ["revision row missing"]
    assert report["fatal"] is None
    assert (data / "bridge.db").read_bytes() == before
    assert not (data / "connection.json").exists()
