"""Cold start, before/after in one run: spawn to the ready line, and what is imported on the way.

Extracts ``--base`` (any git revision) into a temporary directory with ``git archive`` and
starts, round by round in a rotated order, the ``websockets`` echo floor
(``echo_server.py``), ``bridge serve`` from that tree (``before``) and ``bridge serve``
from this checkout (``after``), each ``--secret-backend file --port 0`` on its own data
directory (created by one unmeasured start first), stderr to a pipe (so logs are JSON
lines, as for a sidecar), the server pinned to CPU 0. Reports the median (min–max) of the
spawn-to-ready-line times and each bridge's ratio to the echo server (median of the
per-round ratios); then, once per bridge, ``python -X importtime`` up to the ready line:
the total import time and the biggest top-level imports.

Run: ``.venv/bin/python benchmarks/cold_start.py --base <rev> [--runs 7] [--loop auto]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_CPU = 0


def pin(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CPU), *cmd] if os.cpu_count() and os.cpu_count() > 1 else cmd  # type: ignore[operator]


def bridge_cmd(tree: Path, data_dir: Path, loop: str, *, importtime: bool = False) -> list[str]:
    """``bridge serve`` importing the package from ``tree`` (ahead of any installed one)."""
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from bridge.cli import main; sys.exit(main())"
    flags = ["-X", "importtime"] if importtime else []
    serve = ["serve", "--data-dir", str(data_dir), "--secret-backend", "file", "--port", "0", "--loop", loop]
    return [sys.executable, *flags, "-c", code, *serve]


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) the process has used so far, in ms (``/proc/PID/stat``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def to_ready(cmd: list[str]) -> tuple[float, float, str]:
    """Seconds from spawn to the ready line, CPU ms used by then, and stderr. Stops the process."""
    t0 = time.perf_counter()
    process = subprocess.Popen(pin(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - t0
    # taskset execs the server in place: the pid is the server's.
    cpu = cpu_ms(process.pid) if line else 0.0
    process.terminate()
    _, err = process.communicate(timeout=20)
    ready = json.loads(line) if line else {}
    if ready.get("event") != "ready":
        raise RuntimeError(f"{cmd[-10:]}: {line!r} {err.decode()[-2000:]}")
    return elapsed, cpu, err.decode()


def extract(rev: str, into: Path) -> None:
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def import_profile(stderr: str, top: int) -> tuple[float, list[tuple[str, float]]]:
    """Total import time (ms) and the ``top`` biggest top-level imports, from ``-X importtime`` output."""
    total = 0.0
    tops: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # depth 0: one space after the bar
            ms = int(cumulative) / 1000
            total += ms
            tops.append((name.strip(), ms))
    return total, sorted(tops, key=lambda item: -item[1])[:top]


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="git revision of the 'before' bridge")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridge-cold-") as tmp:
        base = Path(tmp)
        before = base / "before"
        extract(args.base, before)
        commands = {
            "echo": [sys.executable, str(HERE / "echo_server.py"), "--loop", "asyncio"],
            "before": bridge_cmd(before, base / "data-before", args.loop),
            "after": bridge_cmd(ROOT, base / "data-after", args.loop),
        }
        for cmd in commands.values():
            to_ready(cmd)  # creates the data directory, warms the page cache
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for round_no in range(args.runs):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                elapsed, cpu, _ = to_ready(commands[name])
                times[name].append(elapsed * 1e3)
                cpus[name].append(cpu)
        print(f"spawn → ready line, median (min–max) of {args.runs}; loop {args.loop}; base {args.base}")
        print("  server   wall ms          CPU ms by the ready line")
        for name in names:
            print(f"  {name:7s}  {fmt(times[name]):15s}  {fmt(cpus[name])}")
        for name in ("before", "after"):
            ratios = [b / e for b, e in zip(times[name], times["echo"], strict=True)]
            spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
            print(f"  {name} / echo (wall): {statistics.median(ratios):.2f}× ({spread})")
        profiles: dict[str, list[tuple[float, list[tuple[str, float]]]]] = {"before": [], "after": []}
        for _ in range(5):
            for name, tree in (("before", before), ("after", ROOT)):
                _, _, err = to_ready(bridge_cmd(tree, base / f"data-{name}", args.loop, importtime=True))
                profiles[name].append(import_profile(err, 8))
        for name, runs in profiles.items():
            runs.sort(key=lambda run: run[0])
            total, tops = runs[len(runs) // 2]
            print(f"  -X importtime {name}: {total:.0f} ms in top-level imports (median of 5); biggest:")
            for module, ms in tops:
                print(f"    {module:40s} {ms:6.1f} ms")


if __name__ == "__main__":
    main()
