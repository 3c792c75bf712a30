"""Where a sequential read's server CPU goes: bridge against the echo floors, one client.

Issue 13's uvloop lead: one client doing sequential ``llm-config:read`` round trips (the
Node load generator pinned to CPU 1, every server pinned to CPU 0, as in ``run.py``),
servers visited round by round in a rotated order. Per server and round: the read RTT
p50, the server's CPU per read from ``/proc/PID/task/*/schedstat`` (the load
generator's figure) and its split into user and system time from ``/proc/PID/stat``
(``utime``/``stime``, clock ticks, over the measured reads and the warm-up). Then, per
round, bridge's ratios to the sans-I/O echo and to websockets' asyncio echo on the same
loop (and to the ``rpc-websockets`` peer with ``--peer``; to bridge at ``--base`` when
given, started from a temporary git worktree like ``before_after.py``); the printed
figure is the median of the per-round ratios with min–max.

Run: ``.venv/bin/python benchmarks/seq_cost.py [--rounds 7] [--count 10000]
[--loops uvloop,asyncio] [--base REV] [--peer]``; writes
``benchmarks/results/seq-cost-<UTC stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from before_after import start_before
from run import HERE, ROOT, Server, base_spec, loadgen, machine, start_bridge, start_echo, start_rpcws

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """``utime`` and ``stime`` of the whole process (every thread), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def measure(server: Server, count: int, warmup: int) -> dict[str, float]:
    """One sequential run: RTT p50 (µs), CPU per read (µs: schedstat; user and system)."""
    spec = base_spec(server, "llm-config:read", {"id": server.ids[len(server.ids) // 2]})
    user0, sys0 = cpu_ticks(server.pid)
    out = loadgen({**spec, "mode": "seq", "count": count, "warmup": warmup})
    user1, sys1 = cpu_ticks(server.pid)
    reads = count + warmup
    return {
        "p50_us": out["p50_us"],
        "cpu_us": out["server_cpu_us_per_req"],
        "user_us": (user1 - user0) * TICK_S * 1e6 / reads,
        "sys_us": (sys1 - sys0) * TICK_S * 1e6 / reads,
    }


def ratio_rows(rounds: list[dict[str, dict[str, float]]], pairs: list[tuple[str, str]]) -> list[str]:
    lines = [
        "| ratio (median of per-round, min–max) | RTT p50 | CPU per read | user | system |",
        "|---|---|---|---|---|",
    ]
    for num, den in pairs:
        cells = []
        for key in ("p50_us", "cpu_us", "user_us", "sys_us"):
            values = [r[num][key] / r[den][key] for r in rounds if r[den][key] > 0]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
        lines.append(f"| {num} ÷ {den} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--loops", default="uvloop,asyncio")
    parser.add_argument("--base", help="git revision started as 'before-<loop>' beside this tree")
    parser.add_argument("--peer", action="store_true", help="also the rpc-websockets peer")
    args = parser.parse_args()
    loops = args.loops.split(",")
    rounds: list[dict[str, dict[str, float]]] = []
    pairs: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "before"
        if args.base:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.base],
                check=True,
                capture_output=True,
            )
        servers: list[Server] = []
        try:
            for loop in loops:
                servers += [start_echo(loop, "sansio"), start_echo(loop), start_bridge(Path(tmp), loop)]
                pairs += [(f"bridge-{loop}", f"sansio-{loop}"), (f"bridge-{loop}", f"echo-{loop}")]
                if args.base:
                    servers.append(start_before(worktree, Path(tmp), loop))
                    pairs += [(f"before-{loop}", f"sansio-{loop}"), (f"bridge-{loop}", f"before-{loop}")]
            if args.peer:
                servers.append(start_rpcws())
                pairs += [(f"bridge-{loop}", "rpcws-node") for loop in loops]
            for r in range(args.rounds):
                order = servers[r % len(servers) :] + servers[: r % len(servers)]
                rounds.append({s.name: measure(s, args.count, args.warmup) for s in order})
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for s in servers:
                s.stop()
            if args.base:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                    check=False,
                    capture_output=True,
                )
    names = [s.name for s in servers]
    lines = [
        f"{args.rounds} rounds of {args.count} sequential reads, load average {os.getloadavg()}",
        "| server | RTT p50, µs | CPU per read, µs | user, µs | system, µs |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        cells = [
            f"{statistics.median(r[name][k] for r in rounds):.1f}"
            for k in ("p50_us", "cpu_us", "user_us", "sys_us")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", *ratio_rows(rounds, pairs)]
    print("\n".join(lines))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results" / f"seq-cost-{stamp}.json"
    out.write_text(
        json.dumps({"machine": machine(), "args": vars(args), "rounds": rounds, "table": lines}, indent=1)
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
