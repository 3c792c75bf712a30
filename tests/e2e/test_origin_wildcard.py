"""``--allow-origin http://localhost:*`` on a real ``bridge serve``: any port of that host, nothing
else, refused before the upgrade, and the log names the actual reason (DESIGN §6)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServedBridge, start_bridge_process
from tests.e2e.wire import handshake


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedBridge]:
    bridge = start_bridge_process(tmp_path / "data", "--allow-origin", "http://localhost:*")
    try:
        yield bridge
    finally:
        bridge.stop()


async def upgrade(served: ServedBridge, *headers: tuple[str, str]) -> int:
    code, _, writer = await handshake(served.port, [("Host", f"127.0.0.1:{served.port}"), *headers])
    writer.close()
    return code


def refusals(served: ServedBridge) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in served.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "handshake_refused"]


async def test_a_port_wildcard_admits_dev_servers_and_the_log_names_each_refusal(
    served: ServedBridge,
) -> None:
    bearer = ("Authorization", f"Bearer {served.token}")
    assert await upgrade(served, ("Origin", "http://localhost:5173"), bearer) == 101
    assert await upgrade(served, ("Origin", "http://localhost:8080"), bearer) == 101
    assert await upgrade(served, ("Origin", "http://localhost.evil.example:5173"), bearer) == 403
    assert await upgrade(served, ("Origin", "https://localhost:5173"), bearer) == 403
    stale = "s" * 43
    assert (
        await upgrade(served, ("Origin", "http://localhost:5173"), ("Authorization", f"Bearer {stale}"))
        == 401
    )
    served.stop()
    seen = [(r["status"], r["reason"], r["detail"], r.get("origin")) for r in refusals(served)]
    assert seen == [
        (403, "origin", "not_allowed", "http://localhost.evil.example:5173"),
        (403, "origin", "not_allowed", "https://localhost:5173"),
        (401, "token", "mismatch", None),
    ]
    assert stale not in served.log_text()
    assert served.token not in served.log_text()
