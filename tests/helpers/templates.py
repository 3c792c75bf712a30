"""The prompt-template example (``examples/prompt_templates.py``) as tests use it.

Run as ``python -m tests.helpers.templates serve [bridge serve flags]`` (from the
checkout's root): ``bridge serve`` with the example's ``prompt-template`` collection, so
a second process can share a data directory with an in-process bridge.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import bridge
from bridge.cli import main
from bridge.keystore import SecretBackend

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "prompt_templates.py"


def load_example() -> ModuleType:
    """Import ``examples/prompt_templates.py`` (not a package) as a module, once."""
    loaded = sys.modules.get("prompt_templates_example")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("prompt_templates_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def options(data_dir: Path, **extra: Any) -> bridge.BridgeOptions:
    """Bridge options on ``data_dir`` with the file secret backend, port 0, fast polling."""
    return bridge.BridgeOptions(
        data_dir=data_dir,
        secrets=bridge.SecretOptions(backend=SecretBackend.FILE),
        store=bridge.StoreOptions(poll_interval_s=0.05),
        **extra,
    )


@contextlib.asynccontextmanager
async def running(data_dir: Path, registry: bridge.Registry | None = None) -> AsyncIterator[bridge.Bridge]:
    """An in-process bridge serving the example's registry (or ``registry``) on ``data_dir``."""
    served = await bridge.start_bridge(options(data_dir), registry or load_example().build_registry())
    try:
        yield served
    finally:
        await served.close()


def start_sidecar(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``python -m tests.helpers.templates serve`` on ``data_dir``; return it and its ready line."""
    command = [sys.executable, "-m", "tests.helpers.templates", "serve", "--port", "0"]
    command += ["--data-dir", str(data_dir), "--secret-backend", "file", "--poll-interval", "0.05"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (data_dir.parent / "sidecar.log").open("ab")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env)
    log.close()
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    assert ready["event"] == "ready", ready
    return process, ready


def stop_sidecar(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM the sidecar, wait for it and close its pipe; return its exit code."""
    process.terminate()
    try:
        return process.wait(timeout=15)
    finally:
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    sys.exit(main(registry=load_example().build_registry()))


def open_paths(directory: Path) -> list[str]:
    """The files below ``directory`` this process holds open (from ``/proc/self/fd``)."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith(str(directory)):
                held.append(target)
    return held
