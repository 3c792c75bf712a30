"""Handshake defences (DESIGN §6) and slow consumers, on a real in-process server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs
from websockets.protocol import State

from bridge import api
from bridge.cli import Bridge
from bridge.models import EmptyParams, LlmConfigInput, WireModel
from bridge.rpc.connection import Connection
from tests.conftest import openai_config
from tests.e2e.wire import (
    TIMEOUT,
    frames_in,
    handshake,
    masked_frame,
    masked_text_frame,
    open_ws,
    raw_socket,
    read_frame,
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
    assert not bridge.server._handshaking
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


def server_side(bridge: Bridge, client: socket.socket) -> Connection:
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


# ---- write coalescing -------------------------------------------------------------------


def _spy_writes(bridge: Bridge) -> list[tuple[Connection, bytes]]:
    """Spy on every open server connection's transport: each write, in order, as it happens."""
    writes: list[tuple[Connection, bytes]] = []
    for ws in bridge.server._connections:
        real_write = ws.transport.write

        def write(data: bytes | bytearray | memoryview, ws: Connection = ws, real: Any = real_write) -> None:
            writes.append((ws, bytes(data)))
            real(data)

        ws.transport.write = write  # type: ignore[method-assign]
    return writes


async def test_pipelined_requests_arriving_together_are_answered_in_one_write(bridge: Bridge) -> None:
    sock = await asyncio.to_thread(raw_socket, port_of(bridge), bridge.token)
    try:
        await asyncio.to_thread(
            sock.sendall, masked_text_frame(request("bridge:hello", request_id="ready").encode())
        )
        assert orjson.loads((await asyncio.to_thread(read_frame, sock))[1])["id"] == "ready"
        writes = _spy_writes(bridge)
        batch = b"".join(
            masked_text_frame(
                request("llm-config:read", {"id": f"00000000-0000-4000-8000-{i:012d}"}, i).encode()
            )
            for i in range(16)
        )
        await asyncio.to_thread(sock.sendall, batch)  # one TCP write: one read on the server's side
        replies = [orjson.loads((await asyncio.to_thread(read_frame, sock))[1]) for _ in range(16)]
    finally:
        sock.close()
    assert [r["id"] for r in replies] == list(range(16))
    assert all(r["result"] is None for r in replies)
    # One write for the 16 replies: they are answered inside the one data_received that
    # read them and leave together at its end.
    assert len(writes) == 1, [len(data) for _, data in writes]


async def test_a_reply_is_not_held_back_by_an_unfinished_fragmented_message(bridge: Bridge) -> None:
    sock = await asyncio.to_thread(raw_socket, port_of(bridge), bridge.token)
    try:
        first = request("bridge:hello", request_id="a").encode()
        second = request("bridge:hello", request_id="b").encode()
        # A complete request, then the first fragment of the next one, in one TCP write:
        # the reply to the first must not wait for the rest of the second.
        await asyncio.to_thread(sock.sendall, masked_frame(first) + masked_frame(second[:10], fin=False))
        opcode, payload = await asyncio.to_thread(read_frame, sock)
        assert opcode == 1
        assert orjson.loads(payload)["id"] == "a"
        await asyncio.to_thread(sock.sendall, masked_frame(second[10:], opcode=0))
        opcode, payload = await asyncio.to_thread(read_frame, sock)
        assert orjson.loads(payload)["id"] == "b"
    finally:
        sock.close()


async def test_notification_fan_out_and_replies_keep_their_order_under_coalescing(bridge: Bridge) -> None:
    async with await open_ws(bridge) as writer, await open_ws(bridge) as reader:
        await reader.send(request("bridge:hello", request_id="ready"))
        assert (await recv_json(reader))["id"] == "ready"
        created = [request("llm-config:create", {"config": openai_config(f"c{i}")}, i) for i in range(3)]
        for frame in created:
            await writer.send(frame)
        for i in range(3):  # the reader pipelines reads while the writes are committing
            await reader.send(request("llm-config:list", None, f"list{i}"))
        seen = [await recv_json(writer) for _ in range(6)]
        got = [await recv_json(reader) for _ in range(6)]
    assert [("n" if "method" in m else m["id"]) for m in seen] == ["n", 0, "n", 1, "n", 2]
    notes = [m for m in got if "method" in m]
    lists = [m for m in got if "id" in m]
    assert [n["params"]["revision"] for n in notes] == [1, 2, 3]
    assert [m["id"] for m in lists] == ["list0", "list1", "list2"]
    # A list answered after the k-th notification was written holds at least k configs.
    for position, message in enumerate(got):
        if "id" in message:
            written_before = sum(1 for m in got[:position] if "method" in m)
            assert len(message["result"]) >= written_before


async def test_a_reply_larger_than_the_cap_behind_queued_replies_is_still_delivered(tmp_path: Path) -> None:
    async with running_bridge(tmp_path / "data", outbound_cap_bytes=4096) as bridge:
        for i in range(20):
            await bridge.service.create(LlmConfigInput.model_validate(openai_config(f"Config {i:02d}")))
        sock = await asyncio.to_thread(raw_socket, port_of(bridge), bridge.token)
        try:
            # A small reply is queued first; the list (≈ 6 KB, over the 4 KiB cap) follows
            # in the same turn: it must go out onto an empty buffer, as when written alone.
            batch = masked_text_frame(
                request("bridge:hello", request_id="small").encode()
            ) + masked_text_frame(request("llm-config:list", request_id="big").encode())
            await asyncio.to_thread(sock.sendall, batch)
            first = orjson.loads((await asyncio.to_thread(read_frame, sock))[1])
            opcode, payload = await asyncio.to_thread(read_frame, sock)
        finally:
            sock.close()
    assert first["id"] == "small"
    assert opcode == 1
    assert len(payload) > 4096
    second = orjson.loads(payload)
    assert second["id"] == "big"
    assert len(second["result"]) == 20


async def test_frames_after_an_overflow_abort_in_the_same_read_are_not_dispatched(tmp_path: Path) -> None:
    cap = 4096
    async with running_bridge(tmp_path / "data", outbound_cap_bytes=cap) as bridge:
        stalled = await asyncio.to_thread(stalled_socket, port_of(bridge), bridge.token)
        try:
            ws = server_side(bridge, stalled)
            ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            # A notification onto the empty buffer is written whole; the kernel takes part
            # of it and the rest stays buffered, more than the cap minus the close frame.
            bridge.notify(BLOB, Blob(data="x" * 48_000))
            buffered = ws.transport.get_write_buffer_size()
            assert cap < buffered < 64 * 1024
            # One TCP write: the reply to the first frame overflows the cap (the connection
            # is aborted), the create behind it in the same read must not run.
            batch = masked_text_frame(
                request("bridge:hello", request_id="over").encode()
            ) + masked_text_frame(
                request("llm-config:create", {"config": openai_config("after abort")}, "late").encode()
            )
            await asyncio.to_thread(stalled.sendall, batch)
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        finally:
            stalled.close()
        async with await open_ws(bridge) as other:
            # Writes commit one at a time in arrival order: once this one is answered, a
            # create started by the aborted connection would have committed before it.
            await other.send(request("llm-config:create", {"config": openai_config("marker")}, "marker"))
            while (await recv_json(other)).get("id") != "marker":
                pass
            await other.send(request("llm-config:list", request_id="list"))
            while "id" not in (reply := await recv_json(other)):
                pass
    assert reply["id"] == "list"
    assert [config["customName"] for config in reply["result"]] == ["marker"]


async def test_a_notification_reaches_a_pipelining_connection_before_the_writer_gets_its_response(
    bridge: Bridge,
) -> None:
    block: api.ChannelSpec[EmptyParams, int] = api.ChannelSpec(
        "test:block", EmptyParams, int, "Waits until released."
    )
    release = asyncio.Event()

    async def wait_for_release(_: EmptyParams) -> int:
        await release.wait()
        return 1

    bridge.server.dispatcher.registry.add(block, wait_for_release)
    async with await open_ws(bridge) as writer, await open_ws(bridge) as busy:
        for ws, name in ((writer, "w"), (busy, "b")):
            await ws.send(request("bridge:hello", request_id=name))
            assert (await recv_json(ws))["id"] == name
        writes = _spy_writes(bridge)
        # The busy connection is inside a request, with another one waiting behind it in
        # websockets' queue: its replies are being coalesced when the writer's change lands.
        await busy.send(request("test:block", request_id="blocked"))
        await busy.send(request("bridge:hello", request_id="queued"))
        await asyncio.sleep(0.1)
        await writer.send(request("llm-config:create", {"config": openai_config("X")}, "create"))
        assert "method" in await recv_json(writer)
        assert (await recv_json(writer))["id"] == "create"
        release.set()
        assert "method" in await recv_json(busy)
        assert [(await recv_json(busy))["id"] for _ in range(2)] == ["blocked", "queued"]
    writer_port = writer.local_address[1]
    labels = [
        ("writer" if ws.remote_address[1] == writer_port else "busy", "note" if "method" in m else m["id"])
        for ws, data in writes
        for m in frames_in(data)
    ]
    assert labels.index(("busy", "note")) < labels.index(("writer", "create")), labels
