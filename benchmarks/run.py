"""bridge against its transport floors and a Node peer, all measured in one run.

Servers, each a subprocess on 127.0.0.1 pinned to CPU 0 (``taskset``), while the load
generator (``loadgen.mjs``, Node + ws) runs pinned to CPU 1:

- ``echo-asyncio`` / ``echo-uvloop``: raw ``websockets`` echo, compression off (the floors);
- ``sansio-asyncio`` / ``sansio-uvloop``: an echo on websockets' public sans-I/O
  ``ServerProtocol`` in a plain ``asyncio.Protocol`` (the layer bridge is built on);
- ``bridge-asyncio`` / ``bridge-uvloop``: ``bridge serve --loop …`` over SQLite, 50 configs;
- ``rpcws-node``: an idiomatic ``rpc-websockets`` server, same read/list over a Map.

Each round visits every server in a rotated order; every figure is the median over the
rounds with its spread (min–max), and each ratio is computed within a round, then its
median taken. Then: fan-out to 100 / 1,000 receivers, start-up time and resident memory
with 100 / 1,000 / 10,000 stored configs, and the core figures (cache init, cache memory
per config by tracemalloc, durable update at 10,000 configs), and the resident memory of
an idle sidecar (``bridge serve --exit-with-parent``, 100 configs) beside the Node peer's
(``rpcws_server.mjs`` with 100 views), each after one client read its list and left.

Run: ``make bench`` (= ``.venv/bin/python benchmarks/run.py``); ``--rounds N``, ``--quick``;
``--only-idle-memory`` measures that last figure alone.
Writes ``benchmarks/results/<UTC stamp>.json`` and prints the Markdown table of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from core_baseline import init_once, seed  # noqa: E402

from bridge.keystore import KeyCipher, SecretBackend, load_data_key  # noqa: E402
from bridge.log import configure_logging  # noqa: E402
from bridge.models import LlmConfigPatch, LlmConfigView  # noqa: E402
from bridge.service import LlmConfigService  # noqa: E402
from bridge.service.channels import JsonMemo  # noqa: E402
from bridge.storage import SqliteConfigStore  # noqa: E402

TOKEN = "bench-" + "x" * 40
PINNED = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
SERVER_CPU = "0"
CLIENT_CPU = "1"


def pin(cmd: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if PINNED else cmd


@dataclass
class Server:
    """A running server subprocess and what the load generator needs to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    ids: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    rpc: bool = True  # answers JSON-RPC (False: echoes)

    @property
    def pid(self) -> int:
        """The server's process id (``taskset`` execs the command)."""
        # taskset execs the command: the pid is the server's own.
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _start(
    cmd: list[str], name: str, *, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, Any], float]:
    t0 = time.perf_counter()
    process = subprocess.Popen(
        pin(cmd, SERVER_CPU),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - t0
    if not line:
        process.wait(timeout=10)
        raise RuntimeError(f"{name} exited before ready")
    ready = json.loads(line)
    if ready.get("event") != "ready":
        raise RuntimeError(f"{name}: {ready}")
    return process, ready, elapsed


def bridge_cmd(data_dir: Path, loop: str, max_connections: int = 64) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bridge",
        "serve",
        "--data-dir",
        str(data_dir),
        "--secret-backend",
        "file",
        "--port",
        "0",
        "--loop",
        loop,
        "--log-level",
        "warning",
        "--max-connections",
        str(max_connections),
    ]


def seeded_dir(base: Path, name: str, count: int) -> tuple[Path, list[str]]:
    data_dir = base / name
    data_dir.mkdir(parents=True)
    asyncio.run(seed(data_dir, count))
    with sqlite3.connect(data_dir / "bridge.db") as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM configs ORDER BY seq")]
    return data_dir, ids


def start_bridge(base: Path, loop: str, count: int = 50, max_connections: int = 1100) -> Server:
    data_dir, ids = seeded_dir(base, f"bridge-{loop}-{uuid.uuid4().hex[:6]}", count)
    process, ready, _ = _start(
        bridge_cmd(data_dir, loop, max_connections), f"bridge-{loop}", env={"BRIDGE_TOKEN": TOKEN}
    )
    return Server(f"bridge-{loop}", process, ready["url"], ids, {"Authorization": f"Bearer {TOKEN}"})


def start_echo(loop: str, impl: str = "asyncio") -> Server:
    name = f"echo-{loop}" if impl == "asyncio" else f"{impl}-{loop}"
    process, ready, _ = _start(
        [sys.executable, str(HERE / "echo_server.py"), "--loop", loop, "--impl", impl], name
    )
    return Server(name, process, ready["url"], [str(uuid.uuid4())], rpc=False)


def start_rpcws(count: int = 50) -> Server:
    process, ready, _ = _start(["node", str(HERE / "rpcws_server.mjs"), str(count)], "rpcws-node")
    return Server("rpcws-node", process, ready["url"], ready["ids"])


def loadgen(spec: dict[str, Any], cpu: str = CLIENT_CPU) -> dict[str, Any]:
    done = subprocess.run(
        pin(["node", str(HERE / "loadgen.mjs"), json.dumps(spec)], cpu),
        capture_output=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def base_spec(server: Server, method: str, params: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "headers": server.headers,
        "serverPid": server.pid,
        "method": method,
        "params": params,
    }


# ---- measurements -----------------------------------------------------------------------


def measure_server(server: Server, sizes: dict[str, int]) -> dict[str, Any]:
    """One round of the per-server figures."""
    out: dict[str, Any] = {}
    read = base_spec(server, "llm-config:read", {"id": server.ids[len(server.ids) // 2]})
    out["read"] = loadgen({**read, "mode": "seq", "count": sizes["seq"], "warmup": sizes["warmup"]})
    if server.rpc:
        lst = base_spec(server, "llm-config:list", {})
        out["list"] = loadgen({**lst, "mode": "seq", "count": sizes["seq"] // 2, "warmup": sizes["warmup"]})
    if server.name.startswith("bridge"):
        upd = base_spec(server, "llm-config:update", {"id": server.ids[0]})
        out["update"] = loadgen(
            {**upd, "mode": "seq", "count": sizes["updates"], "warmup": 10, "varyName": True}
        )
    for conns in (1, 8):
        out[f"pipe{conns}"] = loadgen(
            {**read, "mode": "pipe", "conns": conns, "depth": 16, "count": sizes["pipe"] // conns}
        )
    return out


FANOUT_PROCS = 2
FANOUT_CPUS = "0,1"


def measure_fanout(server: Server, receivers: int, updates: int) -> dict[str, Any]:
    """Receivers in FANOUT_PROCS Node processes, free to run on both CPUs.

    Reading 1,000 notifications costs the receiving side more CPU than writing them costs
    the server; pinned to the load generator's one CPU they measure Node, not bridge.
    """
    spec = base_spec(server, "llm-config:update", {"id": server.ids[1]})
    return loadgen(
        {
            **spec,
            "mode": "fanout",
            "receivers": receivers,
            "procs": FANOUT_PROCS,
            "updates": updates,
            "warmup": 2,
            "varyName": True,
        },
        FANOUT_CPUS,
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure_startup(data_dir: Path) -> dict[str, float]:
    process, _, elapsed = _start(bridge_cmd(data_dir, "auto"), "bridge", env={"BRIDGE_TOKEN": TOKEN})
    try:
        return {"ready_ms": elapsed * 1e3, "rss_mib": rss_kib(process.pid) / 1024}
    finally:
        process.terminate()
        process.wait(timeout=10)


IDLE_SETTLE_S = 1.0
"""How long a server is left alone after its client left, before its RSS is read, in seconds."""


def _list_once(url: str, headers: dict[str, str]) -> int:
    """Connect, call ``llm-config:list`` once, leave; the number of configs listed."""
    from websockets.sync.client import connect

    with connect(url, additional_headers=headers, compression=None, max_size=None) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "llm-config:list"}))
        return len(json.loads(ws.recv(timeout=30))["result"])


def idle_rss_mib(process: subprocess.Popen[bytes], url: str, headers: dict[str, str], count: int) -> float:
    """RSS of ``process`` (MiB) once one client has listed its ``count`` configs and left, then idle."""
    assert _list_once(url, headers) == count
    time.sleep(IDLE_SETTLE_S)  # a benchmark, not a test: the process is left idle on purpose
    return rss_kib(process.pid) / 1024


def measure_idle_memory(base: Path, rounds: int, count: int = 100) -> dict[str, dict[str, float]]:
    """Idle RSS (MiB) of a bridge sidecar and of the Node peer, each with ``count`` configs."""
    data_dir, _ = seeded_dir(base, f"idle-{count}", count)
    figures: dict[str, list[float]] = {"bridge-sidecar": [], "rpcws-node": []}
    for _ in range(rounds):
        # The sidecar mode: stdin kept open (its EOF would stop bridge), JSON logs on a pipe.
        cmd = [*bridge_cmd(data_dir, "auto"), "--exit-with-parent"]
        process = subprocess.Popen(
            pin(cmd, SERVER_CPU),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "BRIDGE_TOKEN": TOKEN},
        )
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline())
            headers = {"Authorization": f"Bearer {TOKEN}"}
            figures["bridge-sidecar"].append(idle_rss_mib(process, ready["url"], headers, count))
        finally:
            assert process.stdin is not None
            process.stdin.close()  # the parent "exits": the sidecar stops
            process.wait(timeout=20)
        node = start_rpcws(count)
        try:
            figures["rpcws-node"].append(idle_rss_mib(node.process, node.url, {}, count))
        finally:
            node.stop()
    return {name: stat(values) for name, values in figures.items()}


def only_idle_memory(rounds: int) -> None:
    """``--only-idle-memory``: measure and print the idle RSS figures alone."""
    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        figures = measure_idle_memory(Path(tmp), rounds)
    print("| idle resident memory, 100 configs, MiB | median (min–max) |\n|---|---|")
    for name, value in figures.items():
        print(f"| {name} | {_fmt(value)} |")


async def cache_bytes_after_reads(data_dir: Path, count: int) -> float:
    """Cache memory per config (tracemalloc) after init *and* one IPC read of every config.

    Each config's view and its JSON (the RPC binding's memo) are built on its first read
    over IPC and kept, so this is the cache's size in steady use.
    """
    store = SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    service = LlmConfigService(
        store, KeyCipher(load_data_key(data_dir, SecretBackend.FILE, must_exist=True)), watch=False
    )
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    memo = JsonMemo(LlmConfigView)  # what the llm-config:list binding keeps
    listed = memo.array((await service.views())[1])
    del listed
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del memo
    await service.close()
    await store.close()
    return retained / count


async def durable_updates(data_dir: Path, count: int) -> list[float]:
    store = SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    service = LlmConfigService(
        store, KeyCipher(load_data_key(data_dir, SecretBackend.FILE, must_exist=True)), watch=False
    )
    ids = [v.id for v in await service.list()]
    times: list[float] = []
    tag = uuid.uuid4().hex[:6]
    for i in range(count):
        start = time.perf_counter()
        await service.update(ids[(i * 97) % len(ids)], LlmConfigPatch(custom_name=f"Durable {tag} {i:04d}"))
        times.append(time.perf_counter() - start)
    await service.close()
    await store.close()
    return times


# ---- report -----------------------------------------------------------------------------


def stat(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "node": node,
        "websockets": version("websockets"),
        "uvloop": version("uvloop"),
        "pydantic": version("pydantic"),
        "orjson": version("orjson"),
        "sqlite": sqlite3.sqlite_version,
        "pinned": PINNED,
        "loadavg_start": os.getloadavg(),
    }


@contextmanager
def servers(base: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        started.append(start_echo("asyncio"))
        started.append(start_echo("uvloop"))
        started.append(start_echo("asyncio", "sansio"))
        started.append(start_echo("uvloop", "sansio"))
        started.append(start_bridge(base, "asyncio"))
        started.append(start_bridge(base, "uvloop"))
        started.append(start_rpcws())
        yield started
    finally:
        for s in started:
            s.stop()


def parse_args() -> argparse.Namespace:
    """The command line of ``benchmarks/run.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the servers (default 5)")
    parser.add_argument("--quick", action="store_true", help="small counts, to check the harness")
    parser.add_argument("--skip-core", action="store_true", help="skip start-up/memory/core figures")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--only-idle-memory", action="store_true", help="only the idle RSS of a sidecar and the Node peer"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.only_idle_memory:
        only_idle_memory(args.rounds)
        return
    sizes = (
        {"seq": 300, "warmup": 50, "updates": 30, "pipe": 2000, "fan_updates": 3}
        if args.quick
        else {"seq": 3000, "warmup": 300, "updates": 200, "pipe": 20000, "fan_updates": 15}
    )
    configure_logging("warning")
    info = machine()
    print(f"machine: {info}", file=sys.stderr)
    rounds: list[dict[str, Any]] = []
    fan: dict[str, list[dict[str, Any]]] = {}
    core: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        base = Path(tmp)
        with servers(base) as running:
            for r in range(args.rounds):
                order = running[r % len(running) :] + running[: r % len(running)]
                results = {}
                for server in order:
                    results[server.name] = measure_server(server, sizes)
                rounds.append(results)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
                for server in running:
                    if not server.name.startswith("bridge"):
                        continue
                    for receivers in (100, 1000):
                        fan.setdefault(f"{server.name}/{receivers}", []).append(
                            measure_fanout(server, receivers, sizes["fan_updates"])
                        )
        if not args.skip_core:
            dirs = {n: seeded_dir(base, f"start-{n}", n)[0] for n in (100, 1_000, 10_000)}
            startup: dict[int, list[dict[str, float]]] = {n: [] for n in dirs}
            for _ in range(args.rounds):
                for n, d in dirs.items():
                    startup[n].append(measure_startup(d))
            core["startup"] = {
                str(n): {
                    "ready_ms": stat([x["ready_ms"] for x in v]),
                    "rss_mib": stat([x["rss_mib"] for x in v]),
                }
                for n, v in startup.items()
            }
            cipher = KeyCipher(load_data_key(dirs[10_000], SecretBackend.FILE, must_exist=True))
            inits = {
                n: [
                    asyncio.run(
                        init_once(
                            d, KeyCipher(load_data_key(d, SecretBackend.FILE, must_exist=True)), trace=False
                        )
                    )[0]
                    for _ in range(max(args.rounds, 5))
                ]
                for n, d in dirs.items()
            }
            core["init_ms"] = {str(n): stat([t * 1e3 for t in v]) for n, v in inits.items()}
            per = [asyncio.run(init_once(dirs[10_000], cipher, trace=True))[1] / 10_000 for _ in range(3)]
            core["cache_bytes_per_config"] = stat(per)
            after = [asyncio.run(cache_bytes_after_reads(dirs[10_000], 10_000)) for _ in range(3)]
            core["cache_bytes_per_config_after_reads"] = stat(after)
            core["idle_rss_100_mib"] = measure_idle_memory(base, args.rounds)
            upd = asyncio.run(durable_updates(dirs[10_000], 50 if args.quick else 300))
            upd.sort()
            core["durable_update_10k_ms"] = {
                "p50": statistics.median(upd) * 1e3,
                "p90": upd[int(len(upd) * 0.9)] * 1e3,
                "min": upd[0] * 1e3,
                "max": upd[-1] * 1e3,
                "n": len(upd),
            }
    info["loadavg_end"] = os.getloadavg()
    summary = summarize(rounds, fan)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": info, "sizes": sizes, "rounds": rounds, "fanout": fan, "core": core, "summary": summary}
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    print(markdown(doc))


def summarize(rounds: list[dict[str, Any]], fan: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    names = list(rounds[0])
    figures = {
        "read_p50_us": ("read", "p50_us"),
        "read_p99_us": ("read", "p99_us"),
        "read_cpu_us": ("read", "server_cpu_us_per_req"),
        "list_p50_us": ("list", "p50_us"),
        "list_p99_us": ("list", "p99_us"),
        "update_p50_us": ("update", "p50_us"),
        "update_p99_us": ("update", "p99_us"),
        "pipe1_msgs_s": ("pipe1", "msgs_per_s"),
        "pipe1_cpu_us": ("pipe1", "server_cpu_us_per_req"),
        "pipe1_client_util": ("pipe1", "client_cpu_util"),
        "pipe8_msgs_s": ("pipe8", "msgs_per_s"),
        "pipe8_cpu_us": ("pipe8", "server_cpu_us_per_req"),
        "pipe8_client_util": ("pipe8", "client_cpu_util"),
        "pipe8_server_util": ("pipe8", "server_cpu_util"),
    }
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {
            key: stat([r[name][a][b] for r in rounds])
            for key, (a, b) in figures.items()
            if a in rounds[0][name]
        }
    ratios: dict[str, Any] = {}
    for loop in ("asyncio", "uvloop"):
        b, e = f"bridge-{loop}", f"echo-{loop}"
        for key in ("read_p50_us", "read_cpu_us", "pipe1_cpu_us", "pipe1_msgs_s", "pipe8_msgs_s"):
            ratios[f"{b}/{e} {key}"] = stat(
                [
                    r[b][figures[key][0]][figures[key][1]] / r[e][figures[key][0]][figures[key][1]]
                    for r in rounds
                ]
            )
        f = f"sansio-{loop}"
        for key in ("read_p50_us", "read_cpu_us", "pipe1_msgs_s", "pipe8_msgs_s"):
            for num, den in ((b, f), (f, e), (f, "rpcws-node")):
                ratios[f"{num}/{den} {key}"] = stat(
                    [
                        r[num][figures[key][0]][figures[key][1]] / r[den][figures[key][0]][figures[key][1]]
                        for r in rounds
                    ]
                )
        for key in ("read_p50_us", "read_cpu_us", "list_p50_us", "pipe1_cpu_us", "pipe8_msgs_s"):
            ratios[f"{b}/rpcws-node {key}"] = stat(
                [
                    r[b][figures[key][0]][figures[key][1]] / r["rpcws-node"][figures[key][0]][figures[key][1]]
                    for r in rounds
                ]
            )
    out["ratios"] = ratios
    out["fanout"] = {
        key: {
            "all_p50_ms": stat([x["all_p50_ms"] for x in v]),
            "all_max_ms": stat([x["all_max_ms"] for x in v]),
            "first_p50_ms": stat([x["first_p50_ms"] for x in v]),
            "server_cpu_ms_p50": stat([x["server_cpu_ms_p50"] for x in v]),
        }
        for key, v in fan.items()
    }
    return out


def _fmt(s: dict[str, float], digits: int = 3) -> str:
    def f(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"

    return f"{f(s['median'])} ({f(s['min'])}–{f(s['max'])})"


def markdown(doc: dict[str, Any]) -> str:
    summary = doc["summary"]
    names = [n for n in summary if n not in {"ratios", "fanout"}]
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    labels = {
        "read_p50_us": "read RTT p50, µs",
        "read_p99_us": "read RTT p99, µs",
        "read_cpu_us": "server CPU per read (sequential), µs",
        "list_p50_us": "list (50) RTT p50, µs",
        "list_p99_us": "list (50) RTT p99, µs",
        "update_p50_us": "update RTT p50, µs",
        "update_p99_us": "update RTT p99, µs",
        "pipe1_msgs_s": "pipelined reads/s, 1 conn",
        "pipe1_cpu_us": "server CPU per read (pipelined, 1 conn), µs",
        "pipe1_client_util": "load generator CPU use, 1 conn (of 1 core)",
        "pipe8_msgs_s": "pipelined reads/s, 8 conns",
        "pipe8_cpu_us": "server CPU per read (pipelined, 8 conns), µs",
        "pipe8_client_util": "load generator CPU use, 8 conns (of 1 core)",
        "pipe8_server_util": "server CPU use, 8 conns (of 1 core)",
    }
    for key, label in labels.items():
        lines.append(
            f"| {label} | "
            + " | ".join(_fmt(summary[n][key]) if key in summary[n] else "—" for n in names)
            + " |"
        )
    lines += ["", "| ratio (per round, then median) | median (min–max) |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary["ratios"].items()]
    lines += [
        "",
        "| fan-out (one update → every receiver has the notification) | ms, median (min–max) |",
        "|---|---|",
    ]
    for key, v in summary["fanout"].items():
        lines.append(f"| {key}: last receiver, p50 over updates | {_fmt(v['all_p50_ms'])} |")
        lines.append(f"| {key}: first receiver, p50 over updates | {_fmt(v['first_p50_ms'])} |")
        lines.append(
            f"| {key}: server CPU per update (commit + fan-out), p50 | {_fmt(v['server_cpu_ms_p50'])} |"
        )
    core = doc["core"]
    if core:
        lines += ["", "| core figure | median (min–max) |", "|---|---|"]
        for n, v in core["startup"].items():
            lines.append(f"| start-up to ready line, {int(n):,} configs, ms | {_fmt(v['ready_ms'])} |")
            lines.append(f"| resident memory after start, {int(n):,} configs, MiB | {_fmt(v['rss_mib'])} |")
        for n, v in core["init_ms"].items():
            lines.append(f"| cache init, {int(n):,} configs, ms | {_fmt(v)} |")
        lines.append(
            "| cache memory per config after init (tracemalloc), B | "
            f"{_fmt(core['cache_bytes_per_config'])} |"
        )
        lines.append(
            "| cache memory per config after init + one IPC read of each (JSON kept), B | "
            f"{_fmt(core['cache_bytes_per_config_after_reads'])} |"
        )
        for name, value in core.get("idle_rss_100_mib", {}).items():
            lines.append(f"| resident memory of an idle {name}, 100 configs, MiB | {_fmt(value)} |")
        d = core["durable_update_10k_ms"]
        lines.append(
            f"| durable update at 10,000 configs, ms | p50 {d['p50']:.3g}, p90 {d['p90']:.3g} "
            f"({d['min']:.3g}–{d['max']:.3g}, n={d['n']}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
