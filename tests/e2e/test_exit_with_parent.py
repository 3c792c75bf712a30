"""``--exit-with-parent`` also follows the parent process, not only stdin (DESIGN §7).

A PyInstaller one-file build runs as a bootloader and a Python child; the child inherited
the app's stdin, so killing only the bootloader (Tauri's ``child.kill()``) closes no pipe
(tauri#11686). Here a small intermediate process plays the bootloader: it starts ``bridge
serve --exit-with-parent`` with the stdin and stdout it inherited from the test, and is
then SIGKILLed while the test keeps stdin open. bridge must notice and shut down
gracefully (its connection file removed), through ``PR_SET_PDEATHSIG`` on Linux and, with
that disabled, through the portable parent-pid poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMEOUT = 15
BOOTLOADER = "import signal, subprocess, sys; subprocess.Popen(sys.argv[1:]); signal.pause()"
WITHOUT_PDEATHSIG = (
    "import sys; import bridge.sidecar as s; s._PARENT_DEATH_SIGNAL = None; "
    "from bridge.cli import main; sys.exit(main(sys.argv[1:]))"
)


def read_until_eof(fd: int, timeout_s: float) -> bytes:
    """Everything written to the pipe ``fd`` until every writer closed it; fails after ``timeout_s``."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            pytest.fail(f"the pipe stayed open for {timeout_s} s: bridge outlived its parent")
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("mechanism", ["pdeathsig", "poll"])
def test_killing_only_the_parent_stops_bridge_gracefully(tmp_path: Path, mechanism: str) -> None:
    data_dir = tmp_path / "data"
    serve = [
        "serve",
        "--data-dir",
        str(data_dir),
        "--secret-backend",
        "file",
        "--port",
        "0",
        "--exit-with-parent",
    ]
    bridge = [sys.executable, "-m", "bridge", *serve]
    if mechanism == "poll":
        bridge = [sys.executable, "-c", WITHOUT_PDEATHSIG, *serve]
    stdin_r, stdin_w = os.pipe()  # the test keeps the write end: stdin never reaches EOF
    out_r, out_w = os.pipe()
    with (tmp_path / "bridge.log").open("wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-c", BOOTLOADER, *bridge], stdin=stdin_r, stdout=out_w, stderr=log
        )
    os.close(stdin_r)
    os.close(out_w)
    pid = None
    try:
        line = b""
        while not line.endswith(b"\n"):
            select.select([out_r], [], [], TIMEOUT)
            chunk = os.read(out_r, 1)
            assert chunk, "bridge exited before its ready line"
            line += chunk
        ready = json.loads(line)
        assert ready["event"] == "ready"
        pid = ready["pid"]
        assert pid != parent.pid
        assert (data_dir / "connection.json").exists()

        parent.kill()  # SIGKILL: the bootloader goes, stdin stays open
        parent.wait(TIMEOUT)
        read_until_eof(out_r, TIMEOUT)  # bridge's stdout closes when it exits
        assert not (data_dir / "connection.json").exists()  # removed: a graceful shutdown
        assert b"shutdown_started" in (tmp_path / "bridge.log").read_bytes()
    finally:
        os.close(stdin_w)
        os.close(out_r)
        if parent.poll() is None:
            parent.kill()
            parent.wait(TIMEOUT)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):  # expected: it exited on its own
                os.kill(pid, signal.SIGKILL)
