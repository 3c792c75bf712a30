"""``rpc.discover`` works from an installed wheel, not only from a source checkout (DESIGN §5).

Builds the wheel (``pip wheel --no-deps``), installs it into a fresh virtual environment
(its dependencies come from this environment through a ``.pth`` path entry: no network
beyond the build backend), starts ``bridge serve`` from that environment in a directory
outside the checkout, and compares the discovered document with the committed file.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from bridge import schemas

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20


@pytest.fixture
def wheel_python(tmp_path: Path) -> Path:
    """Python of a fresh virtual environment holding the built wheel of this checkout."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", str(ROOT), "-w", str(wheels)], check=True, env=env)
    (wheel,) = wheels.glob("bridge-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run([python, "-c", query], check=True, capture_output=True, text=True).stdout.strip()
    )
    subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)], check=True, env=env
    )
    # Dependencies only: a plain path line does not run this environment's editable-install hook.
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = subprocess.run(
        [python, "-c", "import bridge; print(bridge.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site), where
    return python


@pytest.mark.slow
async def test_rpc_discover_from_an_installed_wheel_equals_the_committed_document(
    wheel_python: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    process = await asyncio.create_subprocess_exec(
        wheel_python,
        *("-m", "bridge", "serve", "--data-dir", str(tmp_path / "data"), "--secret-backend", "file"),
        cwd=outside,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "BRIDGE_TOKEN"}},
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), TIMEOUT))
        assert ready["event"] == "ready", ready
        headers = {"Authorization": f"Bearer {ready['token']}"}
        async with connect(ready["url"], additional_headers=headers, compression=None) as ws:
            await ws.send('{"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}')
            document = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["result"]
            await ws.send('{"jsonrpc": "2.0", "id": 2, "method": "bridge:hello"}')
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["result"]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), TIMEOUT)

    committed = (ROOT / "schemas" / "openrpc.json").read_bytes()
    assert schemas.canonical_bytes(document) == committed
    assert hello["schemaHash"] == schemas.schema_hash(json.loads(committed))
    assert hello["serverVersion"] != "0+unknown"
