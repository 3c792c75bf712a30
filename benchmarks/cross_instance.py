"""Cross-instance notification latency: two ``bridge serve`` processes on one PostgreSQL.

A client of instance A updates a config; a client of instance B waits for the
``llm-config:changed`` notification of that revision. Measured per write, in
milliseconds (``time.perf_counter``):

- ``remote``: from just before A's client sends the update to B's client receiving
  the event — the whole path: WebSocket → A → commit + NOTIFY → B's listener →
  ``changes_since`` → B's cache → WebSocket → B's client;
- ``local``: the same write's event at A's own client (the single-instance path), for
  comparison;
- ``remote − local``: what crossing instances adds.

Writes are sequential (one in flight), so the figures are latencies, not throughput.
The loop is bounded (``--writes``, default 300; each wait bounded by 10 s).

Run: ``.venv/bin/python benchmarks/cross_instance.py [--writes N] [--dsn postgresql://…]``.
Without ``--dsn`` a private PostgreSQL cluster is started (as the tests do, but with
PostgreSQL's durable defaults: fsync and synchronous commit on) and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bridge.client import BridgeClient
from bridge.keystore import generate_data_key_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the private cluster helper of the tests
from tests.pgcluster import PgCluster

KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0" * 2
WAIT_S = 10.0


def start_instance(workdir: Path, name: str, dsn: str, key_file: Path) -> tuple[subprocess.Popen[bytes], Any]:
    data_dir = workdir / name
    data_dir.mkdir()
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--store",
            dsn,
            "--data-key-file",
            str(key_file),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready["event"] == "ready", ready
    return proc, ready


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(dsn: str, writes: int, workdir: Path) -> dict[str, list[float]]:
    key_file = workdir / "shared.key"
    key_file.write_text(generate_data_key_text(), encoding="ascii")
    key_file.chmod(0o600)  # a secret: bridge refuses one others can read
    procs = [start_instance(workdir, name, dsn, key_file) for name in ("a", "b")]
    try:
        (_, ready_a), (_, ready_b) = procs
        async with (
            BridgeClient(ready_a["url"], ready_a["token"]) as client_a,
            BridgeClient(ready_b["url"], ready_b["token"]) as client_b,
        ):
            arrivals: dict[str, dict[int, float]] = {"a": {}, "b": {}}
            signals: dict[str, asyncio.Event] = {"a": asyncio.Event(), "b": asyncio.Event()}

            def recorder(side: str) -> Any:
                def record(event: dict[str, Any]) -> None:
                    arrivals[side][event["revision"]] = time.perf_counter()
                    signals[side].set()

                return record

            client_a.on("llm-config:changed", recorder("a"))
            client_b.on("llm-config:changed", recorder("b"))
            view = await client_a.create_config({"customName": "Bench", "provider": "openai", "apiKey": KEY})

            async def arrived(side: str, revision: int) -> None:
                while revision not in arrivals[side]:
                    signals[side].clear()
                    await signals[side].wait()

            await asyncio.wait_for(arrived("b", 1), WAIT_S)
            remote: list[float] = []
            local: list[float] = []
            for i in range(writes):
                sent = time.perf_counter()
                await client_a.update_config(view.id, {"customName": f"Bench {i}"})
                revision = i + 2
                await asyncio.wait_for(arrived("b", revision), WAIT_S)
                await asyncio.wait_for(arrived("a", revision), WAIT_S)
                remote.append((arrivals["b"][revision] - sent) * 1000)
                local.append((arrivals["a"][revision] - sent) * 1000)
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=15)
            if proc.stdout is not None:
                proc.stdout.close()
    return {"remote": remote, "local": local, "added": [r - lo for r, lo in zip(remote, local, strict=True)]}


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--writes", type=int, default=300, help="sequential updates to time (default 300)")
    parser.add_argument("--dsn", help="an existing database (default: a private cluster)")
    args = parser.parse_args()
    cluster: PgCluster | None = None
    dsn = args.dsn
    if dsn is None:
        cluster = PgCluster(durable=True)
        cluster.start()
        dsn = cluster.dsn()
    try:
        with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
            figures = asyncio.run(measure(dsn, args.writes, Path(tmp)))
        version = asyncio.run(server_version(dsn))
    finally:
        if cluster is not None:
            cluster.destroy()
    print(f"Python {platform.python_version()}, PostgreSQL {version}, {args.writes} sequential writes")
    print(f"{'path':<16}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'mean ms':>10}")
    for name, label in (("remote", "A write → B"), ("local", "A write → A"), ("added", "B − A")):
        values = figures[name]
        print(
            f"{label:<16}{percentile(values, 0.5):>10.2f}{percentile(values, 0.99):>10.2f}"
            f"{max(values):>10.2f}{statistics.fmean(values):>10.2f}"
        )


if __name__ == "__main__":
    main()
