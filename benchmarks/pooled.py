"""Pool the per-round ratios of several ``run.py`` results: bridge against its floors and peer.

Each round of each run gives one ratio per figure (bridge on a loop ÷ a reference server
measured in that round); this prints, per reference, loop and figure, the median and
interquartile range over every round of every run given, and each run's own median, so
one noisy run can be told from a real change. The references: websockets' asyncio echo
on the same loop (``echo-*``), the echo on websockets' sans-I/O layer on the same loop
(``sansio-*``, the floor of issue 13) and the ``rpc-websockets`` Node peer
(``rpcws-node``).

Given ``before_after.py`` results (``before-after-<stamp>.json``), it pools instead the
working tree against the earlier commit on each loop (``bridge-<loop>`` ÷ ``before-<loop>``)
for each of that script's figures.

Run: ``.venv/bin/python benchmarks/pooled.py benchmarks/results/<stamp>.json ...``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIGURES: dict[str, Callable[[dict[str, Any]], float]] = {
    "read RTT p50": lambda s: s["read"]["p50_us"],
    "CPU per read (sequential)": lambda s: s["read"]["server_cpu_us_per_req"],
    "CPU per read (pipelined, 1 conn)": lambda s: s["pipe1"]["server_cpu_us_per_req"],
    "CPU per read (pipelined, 8 conns)": lambda s: s["pipe8"]["server_cpu_us_per_req"],
    "pipelined reads/s, 1 conn": lambda s: s["pipe1"]["msgs_per_s"],
    "pipelined reads/s, 8 conns": lambda s: s["pipe8"]["msgs_per_s"],
}

REFERENCES: dict[str, Callable[[str], str]] = {
    "websockets' asyncio echo, same loop": lambda loop: f"echo-{loop}",
    "sans-I/O echo, same loop": lambda loop: f"sansio-{loop}",
    "rpc-websockets (Node)": lambda _loop: "rpcws-node",
}
"""Each reference server's result key in a round, by bridge's loop."""

BEFORE_AFTER: dict[str, str] = {
    "read RTT p50": "read_p50_us",
    "CPU per read": "read_cpu_us",
    "list (50) RTT p50": "list_p50_us",
    "CPU per list": "list_cpu_us",
    "write RTT p50": "write_p50_us",
    "CPU per write": "write_cpu_us",
    "pipelined reads/s, 1 conn": "pipe1_msgs_s",
    "pipelined reads/s, 8 conns": "pipe8_msgs_s",
    "fan-out to 1,000, time to the last": "fanout1000_ms",
    "fan-out to 1,000, CPU": "fanout1000_cpu_ms",
}
"""``before_after.py``'s figures, by label."""


def row(label: str, loop: str, per_run: list[list[float]]) -> str:
    """One table row: the pooled median (IQR) of every round's ratio, then each run's median."""
    pooled = [ratio for run in per_run for ratio in run]
    low, _, high = statistics.quantiles(pooled, n=4)
    each = ", ".join(f"{statistics.median(run):.2f}" for run in per_run)
    return f"| {label} | {loop} | {statistics.median(pooled):.2f} ({low:.2f}–{high:.2f}) | {each} |"


def before_after(runs: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Print the working tree ÷ the earlier commit, pooled, per loop and figure."""
    print("| after ÷ before | loop | pooled median (IQR) | each run's median |")
    print("|---|---|---|---|")
    for label, key in BEFORE_AFTER.items():
        for loop in ("asyncio", "uvloop"):
            per_run = [
                [r[f"bridge-{loop}"][key] / r[f"before-{loop}"][key] for r in run_rounds]
                for _, run_rounds in runs
            ]
            print(row(label, loop, per_run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("results", nargs="+", type=Path, help="run.py or before_after.py result files (JSON)")
    args = parser.parse_args()
    docs = [(path.stem, json.loads(path.read_text())) for path in args.results]
    runs = [(name, doc["rounds"]) for name, doc in docs]
    rounds = sum(len(r) for _, r in runs)
    print(f"{len(runs)} runs, {rounds} rounds: {', '.join(name for name, _ in runs)}\n")
    if all("base" in doc for _, doc in docs):
        before_after(runs)
        return
    for heading, reference in REFERENCES.items():
        print(f"| bridge ÷ {heading} | loop | pooled median (IQR) | each run's median |")
        print("|---|---|---|---|")
        for label, value in FIGURES.items():
            for loop in ("asyncio", "uvloop"):
                per_run = [
                    [value(r[f"bridge-{loop}"]) / value(r[reference(loop)]) for r in run_rounds]
                    for _, run_rounds in runs
                ]
                print(row(label, loop, per_run))
        print()


if __name__ == "__main__":
    main()
