"""Shared fixtures: fake keys of valid shapes, a served bridge subprocess, helpers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import asyncpg
import pytest

from bridge.client import BridgeClient
from bridge.errors import DuplicateConfigNameError
from bridge.keystore import generate_data_key_text
from bridge.models import LlmConfigView
from tests.pgcluster import PgCluster

OPENAI_KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0" * 2  # 43 chars
ANTHROPIC_KEY = "sk-ant-" + "Z9y8X7w6V5u4T3s2R1q0" * 3  # 67 chars
GOOGLE_KEY = "AIzaSy" + "Gq1Wm2Xn3Yo4Zp5Ar6Bs7Ct8Du9Ev0Fw1"  # 6+33 = 39 chars
CUSTOM_KEY = "local-llm-secret-42"


def openai_config(name: str = "My OpenAI", **extra: Any) -> dict[str, Any]:
    """A valid ``LlmConfigInput`` wire dict for OpenAI."""
    return {"customName": name, "provider": "openai", "apiKey": OPENAI_KEY, **extra}


@dataclass
class ServedBridge:
    """A running ``bridge serve`` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    token: str
    port: int
    data_dir: Path
    ready: dict[str, Any]
    log_path: Path
    extra: tuple[str, ...] = ()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the process (SIGTERM) when the ``with`` block ends, however it ends."""
        self.stop()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()


def serve_command(data_dir: Path, *flags: str, module: str = "bridge") -> list[str]:
    """``python -m bridge serve`` on ``data_dir`` with the file secret backend and ``flags``.

    ``module`` runs another module with the same command line (an application's own
    sidecar, e.g. ``tests.helpers.templates``).
    """
    return [
        sys.executable,
        "-m",
        module,
        "serve",
        "--data-dir",
        str(data_dir),
        "--secret-backend",
        "file",
        *flags,
    ]


def start_bridge_process(
    data_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    wrapper: tuple[str, ...] = (),
    module: str = "bridge",
) -> ServedBridge:
    """Start ``python -m bridge serve --port 0`` and wait for its ready line.

    ``wrapper`` runs the command (e.g. ``prlimit --nofile=128:128 --``); ``module`` is the
    module run with ``serve`` (see :func:`serve_command`).
    """
    cmd = [*wrapper, *serve_command(data_dir, *extra, module=module)]
    if "--port" not in extra:
        cmd += ["--port", "0"]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{len(list(data_dir.parent.glob('server-*.log')))}.log"
    with log_path.open("wb") as log_file:
        # stderr goes to a file: a pipe nobody reads would block a chatty server.
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, env={**os.environ, **(env or {})}
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        raise AssertionError(f"bridge serve exited before ready: {log_path.read_text()}")
    ready = json.loads(line)
    assert ready["event"] == "ready", ready
    tail = ready["url"].rsplit(":", 1)[1]
    port = int(tail) if tail.isdigit() else 0  # 0: served on a Unix socket (--uds)
    return ServedBridge(process, ready["url"], ready["token"], port, data_dir, ready, log_path, extra)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedBridge]:
    """A fresh ``bridge serve`` on 127.0.0.1 port 0 with its own data directory."""
    with start_bridge_process(tmp_path / "data") as bridge:
        yield bridge


# ---- PostgreSQL ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL server for the whole session (fails loudly if not installed)."""
    cluster = PgCluster()
    try:
        cluster.start()
    except subprocess.CalledProcessError as exc:
        log = cluster.log_path.read_text() if cluster.log_path.exists() else ""
        cluster.destroy()
        pytest.fail(f"cannot start PostgreSQL: {exc.stderr}\n{log}")
    try:
        yield cluster
    finally:
        cluster.destroy()


async def create_database(cluster: PgCluster) -> str:
    """Create a fresh database on ``cluster``; returns its DSN."""
    name = cluster.new_database_name()
    conn = await asyncpg.connect(cluster.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return cluster.dsn(name)


async def drop_database(cluster: PgCluster, dsn: str) -> None:
    conn = await asyncpg.connect(cluster.dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_dsn(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """A DSN (with password) of a fresh, empty database on the session's server."""
    dsn = await create_database(pg_cluster)
    yield dsn
    await drop_database(pg_cluster, dsn)


@pytest.fixture
def data_key_file(tmp_path: Path) -> Path:
    """A shared data key file (0600), as every instance on one database is given."""
    return write_data_key(tmp_path / "shared.key")


def write_data_key(path: Path) -> Path:
    """Write a fresh data key to ``path`` with mode 0600 (bridge refuses a secret others can read)."""
    path.write_text(generate_data_key_text() + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Which store a parametrized service/e2e test runs on."""
    return str(request.param)


@pytest.fixture
async def backend_args(
    store_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[list[str]]:
    """``bridge serve`` arguments selecting the store of :func:`store_backend`."""
    if store_backend == "sqlite":
        yield []
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    dsn = await create_database(cluster)
    key = write_data_key(tmp_path / "shared.key")
    yield ["--store", dsn, "--data-key-file", str(key)]
    await drop_database(cluster, dsn)


@pytest.fixture
def served_on_backend(tmp_path: Path, backend_args: list[str]) -> Iterator[ServedBridge]:
    """Like :func:`served`, on the store of the parametrized :func:`store_backend`."""
    with start_bridge_process(tmp_path / "data", *backend_args) as bridge:
        yield bridge


def subscribe(client: BridgeClient) -> asyncio.Queue[dict[str, Any]]:
    """Queue every ``llm-config:changed`` payload ``client`` receives."""
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on("llm-config:changed", events.put_nowait)
    return events


async def drain_until(
    events: asyncio.Queue[dict[str, Any]], revision: int, timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    """Collect events until one reaches ``revision``; each wait bounded by ``timeout_s``."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["revision"] < revision:
        seen.append(await asyncio.wait_for(events.get(), timeout_s))
    return seen


async def race_same_name_creates(clients: tuple[BridgeClient, ...], rounds: int) -> LlmConfigView:
    """Fire ``rounds`` creates per client of one name in four case/space variants at once.

    Asserts that exactly one succeeds and every other gets DuplicateConfigNameError
    (4009); returns the winner's view.
    """
    names = ["Race", "RACE", " race ", "rAcE"]
    calls = [
        client.create_config(openai_config(names[i % len(names)]))
        for i in range(rounds)
        for client in clients
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    losers = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, DuplicateConfigNameError) for r in losers), losers
    winner = winners[0]
    assert isinstance(winner, LlmConfigView)
    return winner
