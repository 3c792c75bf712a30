"""The frozen sidecar (``make sidecar``: PyInstaller, one folder) keeps the sidecar contract (DESIGN §7).

Builds ``bridge-<target-triple>`` with ``freeze/build_sidecar.py`` once for the module,
then runs the executable as a desktop app would: ready line on a pipe, CRUD and a
notification through real clients, ``bridge:shutdown`` in sidecar mode, SIGTERM → exit 0,
and ``--exit-with-parent`` when only its parent dies while stdin stays open.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.client import BridgeClient
from tests.conftest import openai_config

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-folder build's executable."""
    base = tmp_path_factory.mktemp("sidecar")
    built = subprocess.run(
        [
            sys.executable,
            str(ROOT / "freeze" / "build_sidecar.py"),
            "--out",
            str(base / "out"),
            "--work",
            str(base / "work"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    executable = Path(built.stdout.strip().splitlines()[-1])
    assert executable.name.startswith("bridge-")
    assert executable.parent.name == executable.name  # one folder: <out>/<name>/<name>
    assert (executable.parent / "_internal" / "bridge" / "openrpc.json").is_file()
    return executable


def serve_args(data_dir: Path, *flags: str) -> list[str]:
    return ["serve", "--data-dir", str(data_dir), "--secret-backend", "file", "--port", "0", *flags]


async def test_the_frozen_sidecar_serves_crud_notifications_and_stops(frozen: Path, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        frozen,
        *serve_args(tmp_path / "data", "--exit-with-parent"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), TIMEOUT))
        assert ready["event"] == "ready"
        assert ready["pid"] == process.pid  # one folder: no bootloader in between
        events: asyncio.Queue[Any] = asyncio.Queue()
        async with (
            BridgeClient(ready["url"], ready["token"]) as watcher,
            BridgeClient(ready["url"], ready["token"]) as client,
        ):
            watcher.on("llm-config:changed", events.put_nowait)
            hello = await client.hello()
            assert "bridge:shutdown" in hello.channels
            created = await client.create_config(openai_config("Frozen"))
            assert (await asyncio.wait_for(events.get(), TIMEOUT))["type"] == "created"
            assert (await client.read_config(created.id)) == created
            updated = await client.update_config(created.id, {"customName": "Thawed"})
            assert updated.version == 2
            assert (await asyncio.wait_for(events.get(), TIMEOUT))["config"]["customName"] == "Thawed"
            assert await client.delete_config(created.id) is True
            assert (await asyncio.wait_for(events.get(), TIMEOUT))["type"] == "deleted"
            document = await client.invoke("rpc.discover")
            assert (ROOT / "schemas" / "openrpc.json").read_bytes() == (
                json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
            ).encode()
            assert await client.invoke("bridge:shutdown") == {"shuttingDown": True}
        _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert not (tmp_path / "data" / "connection.json").exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_sigterm_stops_the_frozen_sidecar_with_exit_0(frozen: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [frozen, *serve_args(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["event"] == "ready"
        process.terminate()
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
    assert not (tmp_path / "data" / "connection.json").exists()


def test_the_frozen_sidecar_exits_with_its_parent_while_stdin_stays_open(
    frozen: Path, tmp_path: Path
) -> None:
    bootloader = "import signal, subprocess, sys; subprocess.Popen(sys.argv[1:]); signal.pause()"
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    parent = subprocess.Popen(
        [sys.executable, "-c", bootloader, str(frozen), *serve_args(tmp_path / "data", "--exit-with-parent")],
        stdin=stdin_r,
        stdout=out_w,
        stderr=subprocess.DEVNULL,
    )
    os.close(stdin_r)
    os.close(out_w)
    try:
        with os.fdopen(out_r, "rb", closefd=False) as out:
            assert json.loads(out.readline())["event"] == "ready"
        parent.kill()
        parent.wait(TIMEOUT)
        readable, _, _ = select.select([out_r], [], [], TIMEOUT)
        assert readable, "the frozen sidecar outlived its parent"
        assert os.read(out_r, 1) == b""  # EOF: it exited
        assert not (tmp_path / "data" / "connection.json").exists()
    finally:
        os.close(stdin_w)
        os.close(out_r)
        if parent.poll() is None:
            parent.kill()
            parent.wait(TIMEOUT)
