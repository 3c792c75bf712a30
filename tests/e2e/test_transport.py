"""Handshake defences (DESIGN §6) and slow consumers, on a real in-process server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from bridge import api
from bridge.cli import Bridge
from bridge.models import WireModel
from tests.e2e.wire import (
    TIMEOUT,
    handshake,
    masked_text_frame,
    open_ws,
    recv_json,
    request,
    running_bridge,
    stalled_socket,
)

ALLOWED_ORIGIN = "http://localhost:5173"


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(
        tmp_path / "data",
        allow_origins=frozenset({ALLOWED_ORIGIN}),
        allow_hosts=frozenset({"bridge.internal"}),
        max_connections=3,
    ) as running:
        yield running


def port_of(bridge: Bridge) -> int:
    assert bridge.server.port is not None
    return bridge.server.port


async def status(
    bridge: Bridge, *headers: tuple[str, str | bytes], path: str = "/"
) -> tuple[int, dict[str, list[str]]]:
    code, response, writer = await handshake(port_of(bridge), list(headers), path)
    writer.close()
    return code, response


def host(bridge: Bridge, name: str = "127.0.0.1") -> tuple[str, str]:
    return ("Host", f"{name}:{port_of(bridge)}")


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


async def test_handshake_matrix_answers_each_case_with_its_status(bridge: Bridge) -> None:
    token = bridge.token
    ok = bearer(token)
    cases: list[tuple[str, list[tuple[str, str | bytes]], int]] = [
        ("good", [host(bridge), ok], 101),
        ("localhost", [host(bridge, "localhost"), ok], 101),
        ("dns-rebinding", [("Host", f"evil.example:{port_of(bridge)}"), ok], 403),
        ("no-host", [ok], 403),
        ("wrong-port", [("Host", "127.0.0.1:1"), ok], 403),
        ("two-hosts", [host(bridge), host(bridge), ok], 403),
        ("allow-host", [host(bridge, "bridge.internal"), ok], 101),
        ("origin-null", [host(bridge), ("Origin", "null"), ok], 403),
        ("origin-file", [host(bridge), ("Origin", "file://"), ok], 403),
        ("origin-evil", [host(bridge), ("Origin", "https://evil.example"), ok], 403),
        ("origin-allowed", [host(bridge), ("Origin", ALLOWED_ORIGIN), ok], 101),
        ("no-token", [host(bridge)], 401),
        ("wrong-token", [host(bridge), bearer("A" * 43)], 401),
        ("short-token", [host(bridge), bearer(token[:20])], 401),
        ("basic-auth", [host(bridge), ("Authorization", f"Basic {token}")], 401),
        ("non-ascii-token", [host(bridge), ("Authorization", b"Bearer " + "é".encode() * 40)], 401),
        ("latin1-token", [host(bridge), ("Authorization", b"Bearer " + b"\xe9" * 43)], 401),
        ("two-authorizations", [host(bridge), ok, ok], 401),
        ("host-before-token", [("Host", "evil.example"), bearer("x")], 403),
        ("origin-before-token", [host(bridge), ("Origin", "null")], 403),
    ]
    with capture_logs() as logs:
        results = {name: (await status(bridge, *headers))[0] for name, headers, _ in cases}
    assert results == {name: expected for name, _, expected in cases}
    assert not [e for e in logs if e["log_level"] in {"error", "critical"}]
    assert token not in repr(logs)


async def test_token_in_subprotocol_selects_exactly_bridge_v1(bridge: Bridge) -> None:
    offer = ("Sec-WebSocket-Protocol", f"bridge.v1, bridge.v1.token.{bridge.token}")
    code, response = await status(bridge, host(bridge), offer)
    assert code == 101
    assert response["sec-websocket-protocol"] == ["bridge.v1"]
    assert bridge.token not in repr(response)


async def test_token_in_query_string_is_accepted_and_redacted(bridge: Bridge) -> None:
    with capture_logs() as logs:
        code, _ = await status(bridge, host(bridge), path=f"/?token={bridge.token}")
        bad, _ = await status(bridge, host(bridge), path="/?token=%C3%A9%C3%A9")
    assert (code, bad) == (101, 401)
    assert bridge.token not in repr(logs)


async def test_capacity_counts_handshakes_in_progress(bridge: Bridge) -> None:
    attempts = [handshake(port_of(bridge), [host(bridge), bearer(bridge.token)]) for _ in range(6)]
    results = await asyncio.gather(*attempts)
    try:
        codes = sorted(code for code, _, _ in results)
        assert codes == [101, 101, 101, 503, 503, 503]
        # Token before capacity: a bad token at capacity is still a 401.
        assert (await status(bridge, host(bridge), bearer("B" * 43)))[0] == 401
    finally:
        for _, _, writer in results:
            writer.close()


async def test_rejected_handshakes_register_nothing(bridge: Bridge) -> None:
    for _ in range(5):
        assert (await status(bridge, host(bridge)))[0] == 401
    assert bridge.server.connection_count == 0
    assert not bridge.server._admitted
    async with await open_ws(bridge) as ws:
        await ws.send(request("bridge:hello"))
        assert "result" in await recv_json(ws)


# ---- slow consumers (DESIGN §6) -------------------------------------------------------


class Blob(WireModel):
    """A bulky notification payload."""

    data: str


BLOB = api.TopicSpec("test:blob", Blob, "Bulky test notification.")
CAP = 128 * 1024
FRAME = "x" * 8000


def server_side(bridge: Bridge, client: socket.socket) -> ServerConnection:
    local = client.getsockname()
    for ws in bridge.server._connections:
        if ws.remote_address[:2] == local[:2]:
            return ws
    raise AssertionError("stalled connection not registered")


async def test_stalled_reader_is_closed_within_the_cap_and_others_stay_fast(tmp_path: Path) -> None:
    async with (
        running_bridge(tmp_path / "data", outbound_cap_bytes=CAP, ping_timeout_s=2.0) as bridge,
        await open_ws(bridge) as normal,
    ):
        stalled = await asyncio.to_thread(stalled_socket, port_of(bridge), bridge.token)
        try:
            await normal.send(request("bridge:hello", request_id="sync"))
            assert (await recv_json(normal))["id"] == "sync"
            ws = server_side(bridge, stalled)
            # Pin the server's kernel send buffer so "cap + kernel buffers" is known.
            raw = ws.transport.get_extra_info("socket")
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
            kernel = raw.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) + stalled.getsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF
            )
            frame_bytes = len(
                orjson.dumps({"jsonrpc": "2.0", "method": BLOB.name, "params": {"data": FRAME}})
            )
            rounds = 10 * (CAP + kernel) // (frame_bytes * 8) + 1
            peak = 0
            for i in range(rounds):
                for _ in range(8):
                    bridge.notify(BLOB, Blob(data=FRAME))
                    if ws.transport is not None:
                        peak = max(peak, ws.transport.get_write_buffer_size())
                # The normal client reads everything and still gets its answer, bounded.
                await normal.send(request("bridge:hello", request_id=i))
                while "method" in (reply := await asyncio.wait_for(recv_json(normal), TIMEOUT)):
                    pass
                assert reply["id"] == i
            assert peak <= CAP
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.protocol.state is State.CLOSED
            assert ws not in bridge.server._connections
            assert rounds * 8 * frame_bytes >= 10 * (CAP + kernel)
        finally:
            stalled.close()


async def test_flooding_client_that_never_reads_only_slows_itself(tmp_path: Path) -> None:
    async with (
        running_bridge(tmp_path / "data", outbound_cap_bytes=CAP, ping_timeout_s=2.0) as bridge,
        await open_ws(bridge) as normal,
    ):
        flooder = await asyncio.to_thread(stalled_socket, port_of(bridge), bridge.token)
        flooder.setblocking(False)  # noqa: FBT003 - socket API
        await normal.send(request("bridge:hello", request_id="sync"))
        assert (await recv_json(normal))["id"] == "sync"
        ws = server_side(bridge, flooder)
        # Pin the server's kernel send buffer so the responses back up in user space.
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        loop = asyncio.get_running_loop()
        frame = masked_text_frame(request("bridge:hello").encode())
        flood = loop.create_task(loop.sock_sendall(flooder, frame * 5_000))
        try:
            peak = 0
            for i in range(20):
                await normal.send(request("bridge:hello", request_id=i))
                assert (await recv_json(normal))["id"] == i
                if ws.transport is not None:
                    peak = max(peak, ws.transport.get_write_buffer_size())
            # Reads from the flooder pause near websockets' write limit, far below the cap.
            assert peak <= CAP
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.protocol.state is State.CLOSED
        finally:
            flood.cancel()
            flooder.close()
