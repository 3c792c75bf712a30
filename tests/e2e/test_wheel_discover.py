"""The distribution: ``python -m build`` makes ``bridge-ipc``, and its wheel works installed (DESIGN §5, §8).

Builds the sdist and, from it, the wheel (``python -m build --no-isolation``: the build
backend comes from this environment, no network), installs the wheel — not editable —
into a fresh virtual environment, and runs the installed ``bridge`` command from a
directory outside the checkout. The environment sees only the wheel's declared
dependencies (and theirs), linked from this environment: a module imported at run time
but missing from ``Requires-Dist`` fails here.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from websockets.asyncio.client import connect

import bridge
from bridge import schemas
from tests.conftest import OPENAI_KEY

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20
DIST = "bridge-ipc"


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel of this checkout, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        env=env,
        capture_output=True,
    )
    return out


def _closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions that ``requirements`` need (no extras), transitively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen[name] = dist = metadata.distribution(name)
        todo.extend(dist.requires or [])
    return list(seen.values())


def _link_dependencies(wheel: Path, into: Path) -> None:
    """Link the top-level files of the wheel's dependency closure from this environment into ``into``."""
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist") or []
    into.mkdir()
    for dist in _closure(requires):
        tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)


@pytest.fixture(scope="module")
def wheel_env(dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the built wheel (not editable); returns its ``bin``."""
    (wheel,) = dist_dir.glob("*.whl")
    env_dir = tmp_path_factory.mktemp("wheel-env") / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True, env=env)
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run([python, "-c", query], check=True, capture_output=True, text=True).stdout.strip()
    )
    deps = env_dir.parent / "deps"
    _link_dependencies(wheel, deps)
    # A plain path line: the linked dependencies only, none of this environment's own hooks.
    (site / "zz_deps.pth").write_text(f"{deps}\n")

    where = subprocess.run(
        [python, "-c", "import bridge; print(bridge.__file__)"],
        cwd=env_dir.parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site), where
    assert sysconfig.get_paths()["purelib"] not in where
    # Only declared dependencies are there: a dev-only package of this environment is not.
    absent = subprocess.run([python, "-c", "import pytest"], capture_output=True, check=False)
    assert absent.returncode != 0
    return env_dir / "bin"


@pytest.fixture
def wheel_python(wheel_env: Path) -> Path:
    """Python of the fresh virtual environment holding the built wheel of this checkout."""
    return wheel_env / "python"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "BRIDGE_TOKEN"}}


def test_build_makes_a_bridge_ipc_wheel_and_sdist_with_spdx_license_metadata(dist_dir: Path) -> None:
    version = bridge.__version__
    wheel = dist_dir / f"bridge_ipc-{version}-py3-none-any.whl"
    sdist = dist_dir / f"bridge_ipc-{version}.tar.gz"
    assert sorted(p.name for p in dist_dir.iterdir()) == sorted([wheel.name, sdist.name])

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = Parser().parsestr(archive.read(f"bridge_ipc-{version}.dist-info/METADATA").decode())
        scripts = archive.read(f"bridge_ipc-{version}.dist-info/entry_points.txt").decode()
    assert info["Name"] == DIST
    assert info["Version"] == version
    assert info["License-Expression"] == "MIT"
    assert info.get_all("License-File") == ["LICENSE"]
    assert "License" not in info  # the SPDX expression replaces the legacy field
    assert f"bridge_ipc-{version}.dist-info/licenses/LICENSE" in names
    assert {"bridge/__init__.py", "bridge/py.typed", "bridge/cli.py", "bridge/app.py"} <= names
    assert not any(n.startswith(("tests/", "examples/", "benchmarks/")) for n in names)
    assert "bridge = bridge.cli:main" in scripts

    with tarfile.open(sdist) as archive:
        members = set(archive.getnames())
    root = f"bridge_ipc-{version}"
    assert {f"{root}/LICENSE", f"{root}/pyproject.toml", f"{root}/bridge/__init__.py"} <= members


def bridge_call(bin_dir: Path, connection_file: Path, channel: str, params: Any = None) -> Any:
    """``bridge call`` from the installed environment; returns its ``result`` (fails the test on error)."""
    args = [str(bin_dir / "bridge"), "call", channel, "--connection-file", str(connection_file)]
    if params is not None:
        args.insert(3, json.dumps(params))
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=clean_env(), cwd=bin_dir
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout)["result"]


@pytest.mark.slow
async def test_the_installed_bridge_command_serves_calls_and_discovers(
    wheel_env: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = tmp_path / "data"
    process = await asyncio.create_subprocess_exec(
        wheel_env / "bridge",
        *("serve", "--data-dir", str(data), "--secret-backend", "file"),
        cwd=outside,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), TIMEOUT))
        assert ready["event"] == "ready", ready
        connection_file = data / "connection.json"
        config = {"customName": "From the wheel", "provider": "openai", "apiKey": OPENAI_KEY}
        created = await asyncio.to_thread(
            bridge_call, wheel_env, connection_file, "llm-config:create", {"config": config}
        )
        listed = await asyncio.to_thread(bridge_call, wheel_env, connection_file, "llm-config:list")
        document = await asyncio.to_thread(bridge_call, wheel_env, connection_file, "rpc.discover")
        hello = await asyncio.to_thread(bridge_call, wheel_env, connection_file, "bridge:hello")
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0

    assert created["customName"] == "From the wheel"
    assert "apiKey" not in created
    assert listed == [created]
    committed = (ROOT / "schemas" / "openrpc.json").read_bytes()
    assert schemas.canonical_bytes(document) == committed
    assert hello["serverVersion"] == bridge.__version__
    assert hello["schemaHash"] == schemas.schema_hash(json.loads(committed))


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
