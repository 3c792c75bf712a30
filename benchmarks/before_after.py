"""Before/after in one run: bridge at an earlier commit against the working tree.

Checks out ``--base`` (any git revision) into a temporary worktree and starts, on both
event loops, the ``websockets`` echo floor, ``bridge serve`` from that worktree
(``before``) and ``bridge serve`` from this checkout (``after``), each pinned to CPU 0
like ``run.py``. Each round visits every server in a rotated order and measures
sequential read, list (50) and update round trips and pipelined reads on 1 and 8 connections
(16 in flight each) with the Node load generator pinned to CPU 1, and for the bridges the
fan-out of one change to 1,000 receivers (as ``run.py`` measures it). Prints the median of
each figure and, per pair, the median of the per-round ratios (with min–max); writes
``benchmarks/results/before-after-<UTC stamp>.json``.

Run: ``.venv/bin/python benchmarks/before_after.py --base <rev> [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from run import (
    HERE,
    ROOT,
    TOKEN,
    Server,
    base_spec,
    bridge_cmd,
    loadgen,
    machine,
    measure_fanout,
    start_bridge,
    start_echo,
)
from run import _start as start_process

FIGURES = (
    "read_p50_us",
    "read_cpu_us",
    "list_p50_us",
    "list_cpu_us",
    "write_p50_us",
    "write_cpu_us",
    "pipe1_msgs_s",
    "pipe1_cpu_us",
    "pipe8_msgs_s",
    "pipe8_cpu_us",
    "fanout1000_ms",
    "fanout1000_cpu_ms",
)
FANOUT_UPDATES = 5
WRITES = 1000
"""Sequential ``llm-config:update`` round trips per round (each commits with ``synchronous=FULL``);
200 gave per-round CPU ratios spread over 0.7–1.3 (3 Dec), 1,000 take about 1.5 s a server."""


def seeded_before(worktree: Path, base: Path, name: str, count: int) -> tuple[Path, list[str]]:
    """A data directory seeded by the code of ``worktree`` (its own storage format).

    The working tree may have moved the on-disk format on (a newer schema version, which
    the earlier bridge refuses): each side serves a directory its own code wrote.
    """
    data_dir = base / name
    data_dir.mkdir(parents=True)
    code = (
        f"import sys; sys.path[:0] = [{str(worktree)!r}, {str(worktree / 'benchmarks')!r}]; "
        "import asyncio; from pathlib import Path; from core_baseline import seed; "
        f"asyncio.run(seed(Path({str(data_dir)!r}), {count}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    with sqlite3.connect(data_dir / "bridge.db") as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM configs ORDER BY seq")]
    return data_dir, ids


def start_before(worktree: Path, base: Path, loop: str) -> Server:
    """``bridge serve`` importing the package from ``worktree`` (ahead of the installed one)."""
    data_dir, ids = seeded_before(worktree, base, f"before-{loop}", 50)
    serve_args = bridge_cmd(data_dir, loop, 1100)[3:]  # drop "python -m bridge"
    code = f"import sys; sys.path.insert(0, {str(worktree)!r}); from bridge.cli import main; sys.exit(main())"
    process, ready, _ = start_process(
        [sys.executable, "-c", code, *serve_args], f"before-{loop}", env={"BRIDGE_TOKEN": TOKEN}
    )
    return Server(f"before-{loop}", process, ready["url"], ids, {"Authorization": f"Bearer {TOKEN}"})


def measure(server: Server) -> dict[str, float]:
    read = base_spec(server, "llm-config:read", {"id": server.ids[len(server.ids) // 2]})
    out: dict[str, float] = {}
    seq = loadgen({**read, "mode": "seq", "count": 3000, "warmup": 300})
    out["read_p50_us"], out["read_cpu_us"] = seq["p50_us"], seq["server_cpu_us_per_req"]
    if server.rpc:
        lst = base_spec(server, "llm-config:list", {})
        seq = loadgen({**lst, "mode": "seq", "count": 1500, "warmup": 300})
        out["list_p50_us"], out["list_cpu_us"] = seq["p50_us"], seq["server_cpu_us_per_req"]
        # Sequential writes: each update renames the config (a real change, one revision).
        upd = base_spec(server, "llm-config:update", {"id": server.ids[0]})
        seq = loadgen({**upd, "mode": "seq", "count": WRITES, "warmup": 10, "varyName": True})
        out["write_p50_us"], out["write_cpu_us"] = seq["p50_us"], seq["server_cpu_us_per_req"]
    for conns in (1, 8):
        pipe = loadgen({**read, "mode": "pipe", "conns": conns, "depth": 16, "count": 20000 // conns})
        out[f"pipe{conns}_msgs_s"], out[f"pipe{conns}_cpu_us"] = (
            pipe["msgs_per_s"],
            pipe["server_cpu_us_per_req"],
        )
    if server.rpc and not server.name.startswith("rpcws"):
        # One change to 1,000 renderers: p50 over the updates of the time to the last one.
        fan = measure_fanout(server, 1000, FANOUT_UPDATES)
        out["fanout1000_ms"], out["fanout1000_cpu_ms"] = fan["all_p50_ms"], fan["server_cpu_ms_p50"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="git revision measured as 'before'")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base_rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    head_rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), base_rev], check=True
        )
        servers: list[Server] = []
        try:
            for loop in ("asyncio", "uvloop"):
                servers += [
                    start_echo(loop),
                    start_before(worktree, Path(tmp), loop),
                    start_bridge(Path(tmp), loop),
                ]
            for r in range(args.rounds):
                order = servers[r % len(servers) :] + servers[: r % len(servers)]
                rounds.append({s.name: measure(s) for s in order})
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for s in servers:
                s.stop()
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False
            )
    names = [s.name for s in servers]
    load = os.getloadavg()
    print(f"before = {base_rev}, after = {head_rev} (working tree), {args.rounds} rounds, load {load}")
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for figure in FIGURES:
        cells = [
            f"{statistics.median(r[n][figure] for r in rounds):,.3g}" if figure in rounds[0][n] else "—"
            for n in names
        ]
        print(f"| {figure} | " + " | ".join(cells) + " |")
    ratios: dict[str, dict[str, list[float]]] = {}
    for loop in ("asyncio", "uvloop"):
        for top, bottom in (
            (f"bridge-{loop}", f"before-{loop}"),
            (f"before-{loop}", f"echo-{loop}"),
            (f"bridge-{loop}", f"echo-{loop}"),
        ):
            pair = ratios.setdefault(f"{top}/{bottom}", {})
            for figure in FIGURES:
                if figure in rounds[0][top] and figure in rounds[0][bottom]:
                    pair[figure] = [r[top][figure] / r[bottom][figure] for r in rounds]
    print("\n| ratio (per round, then median) | " + " | ".join(FIGURES) + " |")
    print("|---|" + "---|" * len(FIGURES))
    for label, values in ratios.items():
        cells = [
            f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})" if (v := values.get(f)) else "—"
            for f in FIGURES
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: dict[str, Any] = {"base": base_rev, "head": head_rev, "machine": machine(), "rounds": rounds}
    path = HERE / "results" / f"before-after-{stamp}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
