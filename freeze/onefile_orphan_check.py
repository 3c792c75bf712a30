"""Show that killing only a one-file sidecar's bootloader leaves no orphan (tauri#11686).

Builds the one-file sidecar (or takes ``--executable``), starts it as Tauri does — ``bridge
serve --exit-with-parent`` with stdin and stdout on pipes this script keeps open — checks
that the ready line's ``pid`` is the Python child, not the bootloader, SIGKILLs only the
bootloader (what a hard ``child.kill()`` does) and waits for the Python child to exit:
its stdout pipe reaches EOF and its connection file is gone. Exits 1 if the child is still
running after ``--timeout`` seconds (then kills it). Prints what it saw, with timings.

Run: ``python freeze/onefile_orphan_check.py [--executable PATH] [--timeout 10]``
(``make sidecar-orphan-check``). POSIX only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def alive(pid: int) -> bool:
    """True while process ``pid`` runs: it exists (signal 0 sends nothing) and is not a zombie.

    A child re-parented to an init that reaps late stays a zombie for a while after exiting.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):  # no /proc (macOS): existing counts as running
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def main() -> int:
    """Build or take the one-file sidecar, kill its bootloader, report; exit 1 on an orphan."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executable", type=Path, help="a one-file build (default: build one)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds the child may take to exit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridge-orphan-") as tmp:
        base = Path(tmp)
        executable = args.executable
        if executable is None:
            built = subprocess.run(
                [
                    *(sys.executable, str(HERE / "build_sidecar.py"), "--onefile"),
                    *("--out", str(base / "out"), "--work", str(base / "work")),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            executable = Path(built.stdout.strip().splitlines()[-1])
        data = base / "data"
        serve = [
            "serve",
            "--data-dir",
            str(data),
            "--secret-backend",
            "file",
            "--port",
            "0",
            "--exit-with-parent",
        ]
        t0 = time.monotonic()
        bootloader = subprocess.Popen(
            [str(executable), *serve],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert bootloader.stdout is not None
        ready = json.loads(bootloader.stdout.readline())
        child = int(ready["pid"])
        print(
            f"ready after {time.monotonic() - t0:.2f} s; bootloader pid {bootloader.pid}, python pid {child}"
        )
        if child == bootloader.pid:
            print("the ready line's pid is the bootloader's: not a one-file build")
            return 1
        bootloader.send_signal(signal.SIGKILL)
        bootloader.wait()
        t1 = time.monotonic()
        fd = bootloader.stdout.fileno()
        exited = False
        while (left := args.timeout - (time.monotonic() - t1)) > 0:
            readable, _, _ = select.select([fd], [], [], left)
            if readable and not os.read(fd, 4096):
                exited = True
                break
        gone_s = time.monotonic() - t1
        if not exited or alive(child):
            print(
                f"ORPHAN: python child {child} still running {args.timeout} s after the bootloader was killed"
            )
            os.kill(child, signal.SIGKILL)
            return 1
        left_file = (data / "connection.json").exists()
        print(
            f"no orphan: the python child exited {gone_s:.2f} s after its bootloader was SIGKILLed; "
            f"connection file {'left behind' if left_file else 'removed (graceful shutdown)'}"
        )
        assert bootloader.stdin is not None
        bootloader.stdin.close()
        return 1 if left_file else 0


if __name__ == "__main__":
    sys.exit(main())
