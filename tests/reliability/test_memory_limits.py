"""Server memory under issue 15's attacks: unread batch replies and half-sent handshakes.

Figures (DESIGN §6, recorded in ``docs/reliability.md``):

- 8 connections that each send eight 100 × ``llm-config:list`` batch frames (300 configs)
  and never read keep the server's RSS within 64 MiB of idle at its peak;
- after 300 half-sent handshakes with 1 MB of headers each close, RSS returns within
  16 MiB of idle.

The server is a real ``bridge serve`` process; RSS is read from ``/proc/PID/status``.
Long mode repeats each attack (``BRIDGE_MEMORY_ROUNDS``) on the same server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
from websockets.sync.client import connect

from tests.conftest import ServedBridge, start_bridge_process
from tests.e2e.wire import TIMEOUT, masked_text_frame, stalled_socket
from tests.reliability.helpers import RUN_TIMEOUT_S, record, setting

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS is read from /proc (Linux)"),
]

ROUNDS = int(setting("BRIDGE_MEMORY_ROUNDS", 1, 4))
MIB = 1024 * 1024
UNREAD_PEAK_MIB = 64
HANDSHAKE_RESIDUE_MIB = 16
CONFIGS = 300
SAMPLE_S = 0.05
"""RSS sampling period (a measurement, not a wait)."""
LIST_BATCH = orjson.dumps([{"jsonrpc": "2.0", "method": "llm-config:list", "id": i} for i in range(100)])


def rss(pid: int) -> int:
    """Resident set size of ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def big_config(i: int) -> dict[str, str]:
    """A config of about 2.3 KB as a view (a long name and base URL), as in the issue's attack."""
    return {
        "customName": f"Config {i:04d} " + "n" * 80,
        "provider": "custom",
        "apiKey": "local-key-" + "k" * 30,
        "baseUrl": "http://127.0.0.1:9/" + "v" * 2000,
    }


def seed(served: ServedBridge) -> None:
    """Create ``CONFIGS`` configs, 100 per batch frame, then disconnect."""
    headers = {"Authorization": f"Bearer {served.token}"}
    with connect(served.url, additional_headers=headers, compression=None, max_size=None) as ws:
        for start in range(0, CONFIGS, 100):
            batch = [
                {
                    "jsonrpc": "2.0",
                    "method": "llm-config:create",
                    "id": i,
                    "params": {"config": big_config(i)},
                }
                for i in range(start, start + 100)
            ]
            ws.send(orjson.dumps(batch).decode())
            answers = orjson.loads(ws.recv(TIMEOUT))
            while not isinstance(answers, list):  # change notifications first
                answers = orjson.loads(ws.recv(TIMEOUT))
            assert all("result" in a for a in answers)


def overflowed(served: ServedBridge) -> int:
    return served.log_text().count("connection_overflowed")


@pytest.mark.timeout(RUN_TIMEOUT_S)
def test_eight_unread_connections_of_list_batches_keep_rss_within_64_mib_of_idle(tmp_path: Path) -> None:
    served = start_bridge_process(tmp_path / "data")
    peaks: list[int] = []
    try:
        seed(served)
        idle = rss(served.process.pid)
        for round_ in range(ROUNDS):
            sockets = [stalled_socket(served.port, served.token) for _ in range(8)]
            try:
                for sock in sockets:
                    for _ in range(8):
                        sock.sendall(masked_text_frame(LIST_BATCH))
                # Until the server has given up on every stalled reader (the ping timeout:
                # 20 s), sample its RSS; fail as soon as the bound is passed.
                peak = idle
                deadline = time.monotonic() + 60
                while overflowed(served) < 8 * (round_ + 1):
                    peak = max(peak, rss(served.process.pid))
                    assert peak - idle <= UNREAD_PEAK_MIB * MIB, (
                        f"RSS {(peak - idle) / MIB:.0f} MiB over idle"
                    )
                    assert time.monotonic() < deadline, "the stalled readers were never closed"
                    threading.Event().wait(SAMPLE_S)
                peaks.append(peak - idle)
            finally:
                for sock in sockets:
                    sock.close()
    finally:
        assert served.stop() == 0
    record(
        "unread_list_batches",
        idle_mib=round(idle / MIB, 1),
        peak_over_idle_mib=[round(p / MIB, 1) for p in peaks],
        bound_mib=UNREAD_PEAK_MIB,
    )


def half_sent_handshake(port: int, header_bytes: int) -> socket.socket:
    """A TCP connection that sent an upgrade request with ``header_bytes`` of headers, unfinished."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    line = b"X-Pad: " + b"h" * 8000 + b"\r\n"  # under websockets' 8 KiB line limit
    head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode() + line * (header_bytes // len(line))
    with contextlib.suppress(OSError):  # the server may refuse (431) and close before the end
        sock.sendall(head)
    return sock


@pytest.mark.timeout(RUN_TIMEOUT_S)
def test_rss_returns_within_16_mib_of_idle_after_300_half_sent_handshakes_close(tmp_path: Path) -> None:
    served = start_bridge_process(tmp_path / "data")
    residues: list[int] = []
    held: list[int] = []
    try:
        idle = rss(served.process.pid)
        for _ in range(ROUNDS):
            sockets = [half_sent_handshake(served.port, 1_000_000) for _ in range(300)]
            held.append(rss(served.process.pid) - idle)
            for sock in sockets:
                sock.close()
            # The closes reach the server asynchronously: sample until RSS is back within
            # the bound, for at most 10 s (past the 10 s handshake timeout nothing is held).
            deadline = time.monotonic() + 10
            residue = rss(served.process.pid) - idle
            while residue > HANDSHAKE_RESIDUE_MIB * MIB and time.monotonic() < deadline:
                threading.Event().wait(SAMPLE_S)
                residue = rss(served.process.pid) - idle
            residues.append(residue)
            assert residue <= HANDSHAKE_RESIDUE_MIB * MIB, f"RSS {residue / MIB:.0f} MiB over idle"
    finally:
        assert served.stop() == 0
    record(
        "half_sent_handshakes",
        idle_mib=round(idle / MIB, 1),
        held_while_open_mib=[round(h / MIB, 1) for h in held],
        residue_over_idle_mib=[round(r / MIB, 1) for r in residues],
        bound_mib=HANDSHAKE_RESIDUE_MIB,
    )
