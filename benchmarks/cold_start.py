"""Cold start, before/after in one run: spawn to the first answer, and what is imported on the way.

The target of issue 17: spawn → the first answered ``bridge:hello`` (a client connects to
the ready line's URL with its token and calls it; ``--secret-backend file``) against the
``websockets`` echo server's spawn → its first echo, started the same way. Spawn → the
ready line is reported beside it.

Extracts ``--base`` (any git revision) into a temporary directory with ``git archive`` and
starts, round by round in a rotated order, the ``websockets`` echo floor
(``echo_server.py``), ``bridge serve`` from that tree (``before``) and ``bridge serve``
from this checkout (``after``), each ``--secret-backend file --port 0`` on its own data
directory (created by one unmeasured start first), stderr to a pipe (so logs are JSON
lines, as for a sidecar), the server pinned to CPU 0. Reports the median (min–max) of the
spawn-to-first-answer and spawn-to-ready-line times and each bridge's ratio to the echo
server (median of the per-round ratios); then, once per bridge, ``python -X importtime`` up to the ready line:
the total import time and the biggest top-level imports.

With ``--installed`` (the setting of issue 17's target) each bridge runs from a fresh
virtual environment holding its built wheel (``python -m build --no-isolation``, not
editable) and only the wheel's declared dependencies, linked from this environment (no
network; no dev tools such as rich, no uvloop, no editable-install finder), and the echo
server from the checkout's environment of that kind; all are started as ``python -m``.

``--frozen EXE`` adds the frozen sidecar built by ``make sidecar`` (the one-folder
build's executable, ``dist/sidecar/bridge-<triple>/bridge-<triple>``) as a fourth server,
started with the same flags. ``--keyring`` adds ``after`` started with ``--secret-backend
auto`` (the default: the OS keyring is probed, and the file used where there is none),
so the keyring probe's extra cost shows beside ``--secret-backend file``.

Run: ``.venv/bin/python benchmarks/cold_start.py --base <rev> [--runs 7] [--loop auto]
[--installed] [--frozen EXE] [--keyring]``.
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
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from websockets.sync.client import connect

HELLO = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "bridge:hello"})

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_CPU = 0


def pin(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CPU), *cmd] if os.cpu_count() and os.cpu_count() > 1 else cmd  # type: ignore[operator]


def serve_args(data_dir: Path, loop: str, backend: str = "file") -> list[str]:
    """The ``bridge serve`` arguments every measured bridge gets."""
    return ["serve", "--data-dir", str(data_dir), "--secret-backend", backend, "--port", "0", "--loop", loop]


def bridge_cmd(
    tree: Path,
    data_dir: Path,
    loop: str,
    *,
    importtime: bool = False,
    python: Path | None = None,
    backend: str = "file",
) -> list[str]:
    """``bridge serve`` importing the package from ``tree`` (ahead of any installed one).

    With ``python`` (an environment holding the wheel): ``python -m bridge serve``.
    """
    flags = ["-X", "importtime"] if importtime else []
    serve = serve_args(data_dir, loop, backend)
    if python is not None:
        return [str(python), *flags, "-m", "bridge", *serve]
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from bridge.cli import main; sys.exit(main())"
    return [sys.executable, *flags, "-c", code, *serve]


def _closure(requirements: list[str]) -> list[metadata.Distribution]:
    """This environment's distributions that ``requirements`` need (no extras), transitively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in seen:
            seen[name] = dist = metadata.distribution(name)
            todo.extend(dist.requires or [])
    return list(seen.values())


def installed_python(tree: Path, into: Path) -> Path:
    """Build ``tree``'s wheel, install it (no deps) into a fresh venv, link its dependencies; its python."""
    out = into / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), str(tree)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    env_dir = into / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True)
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist") or []
    deps = into / "deps"
    deps.mkdir()
    for dist in _closure(requires):
        for top in {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")} - {
            "__pycache__"
        }:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (deps / top).exists():
                (deps / top).symlink_to(source)
    # Single-file modules (typing_extensions.py) keep their bytecode beside the link, not in
    # the target's __pycache__: compile them once, as an installer would, or every start pays it.
    singles = [str(path) for path in deps.glob("*.py")]
    if singles:
        subprocess.run([str(python), "-m", "py_compile", *singles], check=True, env=CHILD_ENV)
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run([python, "-c", query], check=True, capture_output=True, text=True).stdout.strip()
    )
    (site / "zz_deps.pth").write_text(f"{deps}\n")
    return python


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) the process has used so far, in ms (``/proc/PID/stat``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def first_answer(ready: dict[str, str]) -> None:
    """Connect to the ready line's URL and wait for one answer: ``bridge:hello``, or its echo."""
    token = ready.get("token")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with connect(ready["url"], additional_headers=headers, compression=None, open_timeout=20) as ws:
        ws.send(HELLO)
        answer = json.loads(ws.recv(timeout=20))
    if token and "result" not in answer:
        raise RuntimeError(f"bridge:hello failed: {answer}")


# Every server may write and read its bytecode cache: PYTHONDONTWRITEBYTECODE (set in some
# environments) would have a tree without __pycache__ (a git archive) compile each module
# at every start, which no installed application does.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def to_ready(cmd: list[str], *, answer: bool = False) -> tuple[float, float, float, str]:
    """Seconds from spawn to the ready line and (``answer``) to the first answer, CPU ms used by then, stderr.

    Stops the process.
    """
    t0 = time.perf_counter()
    process = subprocess.Popen(pin(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CHILD_ENV)
    assert process.stdout is not None
    line = process.stdout.readline()
    ready_s = time.perf_counter() - t0
    ready = json.loads(line) if line else {}
    answered_s = 0.0
    if answer and ready.get("event") == "ready":
        first_answer(ready)
        answered_s = time.perf_counter() - t0
    # taskset execs the server in place: the pid is the server's.
    cpu = cpu_ms(process.pid) if line else 0.0
    process.terminate()
    _, err = process.communicate(timeout=20)
    if ready.get("event") != "ready":
        raise RuntimeError(f"{cmd[-10:]}: {line!r} {err.decode()[-2000:]}")
    return ready_s, answered_s, cpu, err.decode()


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


def environments(installed: bool, before: Path, base: Path) -> dict[str, Path | None]:
    """The python of each bridge: a venv holding its wheel with ``installed``, else None (this one)."""
    if not installed:
        return {"before": None, "after": None}
    return {
        "before": installed_python(before, base / "env-before"),
        "after": installed_python(ROOT, base / "env-after"),
    }


def rounds(
    commands: dict[str, list[str]], runs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Start every command once per round, rotating the order: ready-line ms, first-answer ms, CPU ms."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    answers: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for round_no in range(runs):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            ready_s, answered_s, cpu, _ = to_ready(commands[name], answer=True)
            times[name].append(ready_s * 1e3)
            answers[name].append(answered_s * 1e3)
            cpus[name].append(cpu)
    return times, answers, cpus


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def measured_commands(
    args: argparse.Namespace, base: Path, before: Path, pythons: dict[str, Path | None]
) -> dict[str, list[str]]:
    """The command of every measured server, by name: echo first, then each bridge."""
    echo_python = pythons["after"] or Path(sys.executable)
    commands = {
        "echo": [str(echo_python), str(HERE / "echo_server.py"), "--loop", "asyncio"],
        "before": bridge_cmd(before, base / "data-before", args.loop, python=pythons["before"]),
        "after": bridge_cmd(ROOT, base / "data-after", args.loop, python=pythons["after"]),
    }
    if args.keyring:
        commands["keyring"] = bridge_cmd(
            ROOT, base / "data-keyring", args.loop, python=pythons["after"], backend="auto"
        )
    if args.frozen:
        # The frozen build carries no uvloop choice of its own: the same --loop as the others.
        commands["frozen"] = [str(args.frozen.resolve()), *serve_args(base / "data-frozen", args.loop)]
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="git revision of the 'before' bridge")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument(
        "--installed", action="store_true", help="run each bridge from a venv holding its wheel"
    )
    parser.add_argument("--frozen", type=Path, help="the frozen sidecar's executable (make sidecar)")
    parser.add_argument(
        "--keyring", action="store_true", help="also 'after' with --secret-backend auto (keyring probe)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridge-cold-") as tmp:
        base = Path(tmp)
        before = base / "before"
        extract(args.base, before)
        pythons = environments(args.installed, before, base)
        commands = measured_commands(args, base, before, pythons)
        for tree in (before, ROOT):
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", str(tree / "bridge")], check=True, env=CHILD_ENV
            )
        for cmd in commands.values():
            to_ready(cmd, answer=True)  # creates the data directory, warms the page cache
        times, answers, cpus = rounds(commands, args.runs)
        names = list(commands)
        where = "installed wheels" if args.installed else "this environment"
        print(f"median (min–max) of {args.runs}; loop {args.loop}; base {args.base}; {where}")
        print("  server   spawn → first answer ms  spawn → ready line ms  CPU ms by the answer")
        for name in names:
            print(f"  {name:7s}  {fmt(answers[name]):23s}  {fmt(times[name]):21s}  {fmt(cpus[name])}")
        for label, series in (("first answer", answers), ("ready line", times)):
            for name in names[1:]:
                ratios = [b / e for b, e in zip(series[name], series["echo"], strict=True)]
                spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
                print(f"  {name} / echo ({label}, wall): {statistics.median(ratios):.2f}× ({spread})")
        profiles: dict[str, list[tuple[float, list[tuple[str, float]]]]] = {"before": [], "after": []}
        for _ in range(5):
            for name, tree in (("before", before), ("after", ROOT)):
                cmd = bridge_cmd(
                    tree, base / f"data-{name}", args.loop, importtime=True, python=pythons[name]
                )
                _, _, _, err = to_ready(cmd)
                profiles[name].append(import_profile(err, 8))
        for name, runs in profiles.items():
            runs.sort(key=lambda run: run[0])
            total, tops = runs[len(runs) // 2]
            print(f"  -X importtime {name}: {total:.0f} ms in top-level imports (median of 5); biggest:")
            for module, ms in tops:
                print(f"    {module:40s} {ms:6.1f} ms")


if __name__ == "__main__":
    main()
