"""Issue 15's transport attacks, reproduced: reply size, unauthenticated sockets, [::1], refusal logs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect

from bridge.cli import Bridge
from tests.conftest import serve_command, start_bridge_process
from tests.e2e.wire import TIMEOUT, authorized, handshake, open_ws, recv_json, request, running_bridge


def ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = ipv6_loopback_works()
needs_ipv6 = pytest.mark.skipif(not IPV6, reason="IPv6 loopback ([::1]) is unavailable on this machine")

CONFIGS = 300


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path / "data") as running:
        yield running


def port_of(bridge: Bridge) -> int:
    return int(bridge.url.rsplit(":", 1)[1])


def big_config(i: int) -> dict[str, str]:
    """A config of about 2.3 KB as a view (a long name and base URL), as in the issue's attack."""
    return {
        "customName": f"Config {i:04d} " + "n" * 80,
        "provider": "custom",
        "apiKey": "local-key-" + "k" * 30,
        "baseUrl": "http://127.0.0.1:9/" + "v" * 2000,
    }


async def seed(ws: ClientConnection, count: int, per_frame: int = 100) -> None:
    """Create ``count`` configs, ``per_frame`` per batch frame."""
    for start in range(0, count, per_frame):
        batch = [
            {
                "jsonrpc": "2.0",
                "method": "llm-config:create",
                "id": i,
                "params": {"config": big_config(i)},
            }
            for i in range(start, min(start + per_frame, count))
        ]
        await ws.send(orjson.dumps(batch).decode())
        answers = await recv_json(ws)
        while not isinstance(answers, list):  # the change notifications come first
            answers = await recv_json(ws)
        assert all("result" in a for a in answers), answers[0]


LIST_BATCH = orjson.dumps(
    [{"jsonrpc": "2.0", "method": "llm-config:list", "id": i} for i in range(100)]
).decode()


# ---- reply byte budget --------------------------------------------------------------


async def test_a_batch_of_100_lists_is_answered_4013_past_the_reply_budget(bridge: Bridge) -> None:
    async with await open_ws(bridge, max_size=None) as ws:
        await seed(ws, CONFIGS)
        assert len(LIST_BATCH) < 6 * 1024  # the 6 KB frame of the attack
        await ws.send(LIST_BATCH)
        reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
    budget = 4 * 1024 * 1024
    assert len(reply) <= budget + 100 * 200  # not 70 MB: the answers that fit, then short errors
    answers = orjson.loads(reply)
    assert [a["id"] for a in answers] == list(range(100))
    fitted = [a for a in answers if "result" in a]
    assert fitted, "the lists that fit the budget are answered"
    assert all(len(a["result"]) == CONFIGS for a in fitted)
    rest = answers[len(fitted) :]
    assert rest, "the lists past the budget are refused"
    assert {a["error"]["code"] for a in rest} == {4013}
    assert {a["error"]["data"]["code"] for a in rest} == {"RESPONSE_TOO_LARGE"}
    assert {a["error"]["data"]["context"]["limit"] for a in rest} == {budget}


async def test_a_single_reply_past_the_budget_gets_4013(tmp_path: Path) -> None:
    async with (
        running_bridge(tmp_path / "data", max_reply_bytes=4096) as small,
        await open_ws(small, max_size=None) as ws,
    ):
        await seed(ws, 30, per_frame=1)  # each reply fits the small budget
        await ws.send(request("llm-config:snapshot", request_id=7))
        answer = await recv_json(ws)
        assert answer["id"] == 7
        assert answer["error"]["code"] == 4013
        assert answer["error"]["data"]["context"] == {"limit": 4096}
        await ws.send(request("bridge:hello", request_id=8))  # the connection still works
        assert (await recv_json(ws))["result"]["protocolVersion"] == 1


# ---- unauthenticated sockets ----------------------------------------------------------


async def test_oversized_handshake_headers_are_answered_431_and_closed(bridge: Bridge) -> None:
    port = port_of(bridge)
    padding = [(f"X-Pad-{i}", "p" * 4000) for i in range(25)]  # 100 KB: under websockets' own 1 MiB
    status, _, writer = await handshake(
        port, [("Host", f"127.0.0.1:{port}"), *authorized(bridge).items(), *padding]
    )
    writer.close()
    assert status == 431
    assert bridge.server.handshaking_count == 0


def flood(port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections that never finish a handshake; every other one half-sends it."""
    sockets: list[socket.socket] = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)  # noqa: FBT003 - the socket API
        sock.connect_ex(("127.0.0.1", port))  # never waits: on a full backlog the SYN just waits
        sockets.append(sock)
        if i % 2:
            with contextlib.suppress(OSError):
                sock.send(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: ".encode() + b"p" * 2000)
    return sockets


async def test_a_renderer_connects_during_a_handshake_flood_at_a_low_descriptor_limit(tmp_path: Path) -> None:
    # The server's own descriptor limit is lowered (soft and hard), so the flood exhausts it
    # on any machine unless the handshakes in progress are capped below it.
    served = start_bridge_process(tmp_path / "data", wrapper=("prlimit", "--nofile=128:128", "--"))
    sockets: list[socket.socket] = []
    try:
        sockets = await asyncio.to_thread(flood, served.port, 400)
        url = served.url
        async with asyncio.timeout(5):  # under the 10 s handshake timeout that frees sockets anyway
            async with connect(
                url, additional_headers={"Authorization": f"Bearer {served.token}"}, compression=None
            ) as ws:
                await ws.send(request("bridge:hello"))
                assert (await recv_json(ws))["result"]["protocolVersion"] == 1
    finally:
        for sock in sockets:
            sock.close()
        assert served.stop() == 0
    log = served.log_text()
    assert "handshakes_capped_by_descriptor_limit" in log
    assert served.token not in log


# ---- refused handshakes are logged with the offending value, rate-limited ---------------


async def test_refused_handshakes_are_logged_with_host_or_origin_without_query_and_rate_limited(
    bridge: Bridge,
) -> None:
    port = port_of(bridge)
    token = bridge.token
    with capture_logs() as logs:
        for _ in range(20):
            code, _, writer = await handshake(
                port, [("Host", f"evil.example:{port}?token={token}"), ("Authorization", f"Bearer {token}")]
            )
            writer.close()
            assert code == 403
        code, _, writer = await handshake(
            port, [("Host", f"127.0.0.1:{port}"), ("Origin", "https://evil.example")]
        )
        writer.close()
        assert code == 403
    refused = [entry for entry in logs if entry["event"] == "handshake_refused"]
    by_host = [entry for entry in refused if entry["reason"] == "host"]
    assert 1 <= len(by_host) <= 5  # 20 refusals, a few lines
    assert all(entry["host"] == f"evil.example:{port}" for entry in by_host)  # the query is cut
    by_origin = [entry for entry in refused if entry["reason"] == "origin"]
    assert [entry["origin"] for entry in by_origin] == ["https://evil.example"]
    assert token not in repr(logs)


# ---- [::1] squatting ------------------------------------------------------------------


@needs_ipv6
async def test_port_0_serves_the_same_port_on_127_0_0_1_and_ipv6_loopback(bridge: Bridge) -> None:
    port = port_of(bridge)
    assert bridge.url == f"ws://127.0.0.1:{port}"  # clients dial exactly this
    async with connect(f"ws://[::1]:{port}", additional_headers=authorized(bridge), compression=None) as ws:
        await ws.send(request("bridge:hello"))
        assert (await recv_json(ws))["result"]["protocolVersion"] == 1


@needs_ipv6
def test_a_squatter_on_ipv6_loopback_makes_a_given_port_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as squatter:
        squatter.bind(("::1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        process = subprocess.Popen(
            serve_command(data_dir, "--port", str(port)), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert process.stdout is not None
        try:
            line = json.loads(process.stdout.readline())
            assert line["event"] == "error", line  # never serving 127.0.0.1 alone
            assert line["error"] == "ADDRESS_UNAVAILABLE"
            assert process.wait(timeout=TIMEOUT) == 2
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()


@pytest.fixture
async def squat_first_ipv6_twin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[int]]:
    """Fault injection: the first port the server binds on 127.0.0.1 is squatted on [::1] at once.

    The squatter is a real socket bound by this process, placed between the server's two
    binds (the race another local user could win).
    """
    loop = asyncio.get_running_loop()
    real = loop.create_server
    squatted: list[int] = []
    squatters: list[socket.socket] = []

    async def create_server(factory: Any, host: Any = None, port: Any = None, **kwargs: Any) -> Any:
        server = await real(factory, host, port, **kwargs)
        if host == "127.0.0.1" and not squatted:
            taken = server.sockets[0].getsockname()[1]
            squatter = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            squatter.bind(("::1", taken))
            squatter.listen()
            squatters.append(squatter)
            squatted.append(taken)
        return server

    monkeypatch.setattr(loop, "create_server", create_server)
    yield squatted
    for squatter in squatters:
        squatter.close()


@needs_ipv6
async def test_with_port_0_a_squatted_ipv6_twin_makes_bridge_pick_another_port(
    tmp_path: Path, squat_first_ipv6_twin: list[int]
) -> None:
    async with running_bridge(tmp_path / "data") as bridge:
        port = port_of(bridge)
        assert squat_first_ipv6_twin
        assert port != squat_first_ipv6_twin[0]
        for address in ("127.0.0.1", "[::1]"):
            async with connect(
                f"ws://{address}:{port}", additional_headers=authorized(bridge), compression=None
            ) as ws:
                await ws.send(request("bridge:hello"))
                assert (await recv_json(ws))["result"]["protocolVersion"] == 1


async def test_without_ipv6_loopback_bridge_serves_ipv4_alone_and_logs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: binding [::1] fails as on a host without IPv6.
    loop = asyncio.get_running_loop()
    real = loop.create_server

    async def create_server(factory: Any, host: Any = None, port: Any = None, **kwargs: Any) -> Any:
        if host == "::1":
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        return await real(factory, host, port, **kwargs)

    monkeypatch.setattr(loop, "create_server", create_server)
    with capture_logs() as logs:
        async with running_bridge(tmp_path / "data") as bridge, await open_ws(bridge) as ws:
            await ws.send(request("bridge:hello"))
            assert (await recv_json(ws))["result"]["protocolVersion"] == 1
    assert [entry["port"] for entry in logs if entry["event"] == "ipv6_loopback_unavailable"] == [
        port_of(bridge)
    ]
