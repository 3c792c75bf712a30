"""The per-connection protocol on a real in-process server: long-running requests and
``$/cancelRequest``, inline answers, UTF-8, keepalive and handshake timeouts (DESIGN §5–§6)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Generator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge import api
from bridge.app import Bridge
from bridge.models import EmptyParams, IdParams
from bridge.rpc.connection import MAX_QUEUED_FRAMES
from tests.conftest import openai_config
from tests.e2e.wire import (
    TIMEOUT,
    cancel,
    connected_bridge,
    masked_frame,
    port_of,
    raw_connection,
    read_frame,
    receive_json,
    request,
    running_bridge,
    send_frames,
)

LONG: api.ChannelSpec[IdParams, str] = api.ChannelSpec(
    "test:long", IdParams, str, "Waits until released; long-running.", long_running=True
)
BLOCK: api.ChannelSpec[EmptyParams, str] = api.ChannelSpec(
    "test:block", EmptyParams, str, "Waits until released; in order."
)


class Gates:
    """Events the test-only channels wait on, and what they saw."""

    def __init__(self) -> None:
        self.long = asyncio.Event()
        self.block = asyncio.Event()
        self.long_started = asyncio.Event()
        self.long_cancelled = asyncio.Event()


def register_waiting_channels(bridge: Bridge) -> Gates:
    gates = Gates()

    async def long(params: IdParams) -> str:
        gates.long_started.set()
        try:
            await gates.long.wait()
        except asyncio.CancelledError:
            gates.long_cancelled.set()
            raise
        return params.id

    async def block(_: EmptyParams) -> str:
        await gates.block.wait()
        return "released"

    bridge.registry.add(LONG, long)
    bridge.registry.add(BLOCK, block)
    return gates


def gated_connection(
    tmp_path: Path, **options: Any
) -> AbstractAsyncContextManager[tuple[Bridge, Gates, socket.socket]]:
    """A bridge (``options``: :class:`TransportOptions` fields) with the waiting channels, and a
    raw connection to it."""
    return connected_bridge(tmp_path / "data", register_waiting_channels, raw_connection, **options)


CONFIG_ID = "00000000-0000-4000-8000-000000000001"


async def test_a_long_running_request_runs_beside_later_requests_and_is_cancelled(tmp_path: Path) -> None:
    async with gated_connection(tmp_path) as (_bridge, gates, sock):
        await send_frames(
            sock, request("test:long", {"id": CONFIG_ID}, "long"), request("bridge:hello", None, "h")
        )
        # The later request is answered while the long one is still running.
        assert (await receive_json(sock))["id"] == "h"
        await asyncio.wait_for(gates.long_started.wait(), TIMEOUT)
        await send_frames(sock, cancel("long"))
        reply = await receive_json(sock)
        assert reply["id"] == "long"
        assert reply["error"]["code"] == -32800
        assert reply["error"]["data"] == {"code": "REQUEST_CANCELLED", "name": "RequestCancelledError"}
        assert gates.long_cancelled.is_set()
        # The connection goes on serving.
        await send_frames(sock, request("llm-config:read", {"id": CONFIG_ID}, "after"))
        assert await receive_json(sock) == {"jsonrpc": "2.0", "id": "after", "result": None}


async def test_a_long_running_response_may_overtake_nothing_is_lost_when_it_completes(tmp_path: Path) -> None:
    async with gated_connection(tmp_path) as (_bridge, gates, sock):
        await send_frames(
            sock, request("test:long", {"id": CONFIG_ID}, "long"), request("test:block", None, "b")
        )
        await asyncio.wait_for(gates.long_started.wait(), TIMEOUT)
        gates.long.set()  # the long one finishes while the ordered one still waits
        assert await receive_json(sock) == {"jsonrpc": "2.0", "id": "long", "result": CONFIG_ID}
        gates.block.set()
        assert await receive_json(sock) == {"jsonrpc": "2.0", "id": "b", "result": "released"}


async def test_cancel_request_is_handled_on_arrival_behind_queued_requests(tmp_path: Path) -> None:
    async with gated_connection(tmp_path) as (_bridge, gates, sock):
        # The ordered lane is busy (test:block) with a read queued behind it when the
        # cancel arrives: the cancel must not wait for them.
        await send_frames(
            sock,
            request("test:long", {"id": CONFIG_ID}, "long"),
            request("test:block", None, "b"),
            request("llm-config:read", {"id": CONFIG_ID}, "queued"),
        )
        await asyncio.wait_for(gates.long_started.wait(), TIMEOUT)
        await send_frames(sock, cancel("long"))
        first = await receive_json(sock)
        assert first["id"] == "long"
        assert first["error"]["code"] == -32800
        assert not gates.block.is_set()
        gates.block.set()
        assert [(await receive_json(sock))["id"] for _ in range(2)] == ["b", "queued"]


async def test_cancel_of_an_unknown_or_finished_request_is_ignored(tmp_path: Path) -> None:
    async with running_bridge(tmp_path / "data") as bridge, raw_connection(bridge) as sock:
        await send_frames(sock, cancel("nothing"), cancel(7), request("bridge:hello", None, "h"))
        reply = await receive_json(sock)  # no answer to the notifications: the next frame is h's
        assert reply["id"] == "h"


class TaskCounter:
    """A task factory that counts the tasks created, by coroutine name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any]
    ) -> asyncio.Task[Any]:
        self.names.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop)


async def test_cache_reads_are_answered_without_a_task_and_writes_in_one(tmp_path: Path) -> None:
    async with running_bridge(tmp_path / "data") as bridge, raw_connection(bridge) as sock:
        loop = asyncio.get_running_loop()
        counter = TaskCounter()
        loop.set_task_factory(counter)
        try:
            reads = [request("llm-config:read", {"id": CONFIG_ID}, i) for i in range(16)]
            await send_frames(sock, *reads, request("llm-config:list", None, "list"))
            replies = [await receive_json(sock) for _ in range(17)]
            assert [r["id"] for r in replies] == [*range(16), "list"]
            dispatch_tasks = [name for name in counter.names if name.endswith("_carry_on")]
            assert dispatch_tasks == []
            await send_frames(sock, request("llm-config:create", {"config": openai_config("Created")}, "c"))
            replies = [await receive_json(sock) for _ in range(2)]  # the notification, then the response
            assert ["method" in replies[0], replies[1]["id"]] == [True, "c"]
            assert len([name for name in counter.names if name.endswith("_carry_on")]) == 1
        finally:
            loop.set_task_factory(None)


async def test_a_text_frame_that_is_not_utf8_closes_with_1007_and_others_are_served(tmp_path: Path) -> None:
    async with (
        running_bridge(tmp_path / "data") as bridge,
        raw_connection(bridge) as sock,
        raw_connection(bridge) as other,
    ):
        await asyncio.to_thread(sock.sendall, masked_frame(b'{"jsonrpc": "2.0", "id": "\xff"}'))
        opcode, payload = await asyncio.to_thread(read_frame, sock)
        assert opcode == 8
        assert int.from_bytes(payload[:2], "big") == 1007
        await send_frames(other, request("bridge:hello", None, "h"))
        assert (await receive_json(other))["id"] == "h"


async def test_a_peer_that_never_answers_pings_is_closed_with_1011(tmp_path: Path) -> None:
    async with running_bridge(tmp_path / "data", ping_interval_s=0.1, ping_timeout_s=0.2) as bridge:
        async with raw_connection(bridge) as sock:
            opcodes: list[int] = []
            while True:
                opcode, payload = await asyncio.to_thread(read_frame, sock)
                opcodes.append(opcode)
                if opcode == 8:
                    break
            assert opcodes[0] == 9  # a ping came first, never answered
            assert int.from_bytes(payload[:2], "big") == 1011
        assert bridge.server.connection_count == 0


async def test_a_peer_that_answers_pings_stays_connected(tmp_path: Path) -> None:
    async with (
        running_bridge(tmp_path / "data", ping_interval_s=0.05, ping_timeout_s=5.0) as bridge,
        raw_connection(bridge) as sock,
    ):
        for _ in range(3):  # three pings, each answered with its own payload
            opcode, payload = await asyncio.to_thread(read_frame, sock)
            assert opcode == 9
            await asyncio.to_thread(sock.sendall, masked_frame(payload, opcode=10))
        await send_frames(sock, request("bridge:hello", None, "h"))
        while (message := await asyncio.to_thread(read_frame, sock))[0] == 9:
            await asyncio.to_thread(sock.sendall, masked_frame(message[1], opcode=10))
        assert orjson.loads(message[1])["id"] == "h"
        assert bridge.server.connection_count == 1


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
async def test_a_handshake_that_does_not_finish_in_time_is_dropped(tmp_path: Path, sent: bytes) -> None:
    async with running_bridge(tmp_path / "data", handshake_timeout_s=0.2) as bridge:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bridge))
        try:
            writer.write(sent)
            try:
                rest = await asyncio.wait_for(reader.read(), TIMEOUT)
            except ConnectionResetError:  # an abort may arrive as a reset
                rest = b""
            assert rest == b""  # closed by the server, nothing answered
            assert not bridge.server._handshaking
        finally:
            writer.close()


async def test_reading_pauses_at_the_in_flight_limit_and_resumes_when_the_lane_drains(tmp_path: Path) -> None:
    async with gated_connection(tmp_path) as (bridge, gates, sock):
        await send_frames(sock, request("test:long", {"id": CONFIG_ID}, "long"))
        await asyncio.wait_for(gates.long_started.wait(), TIMEOUT)
        (server_side,) = bridge.server._connections
        assert server_side.transport.is_reading()
        # The lane is busy with test:block; MAX_QUEUED_FRAMES reads wait behind it.
        # The cancel at the end of the same write is still acted on at once.
        reads = [request("llm-config:read", {"id": CONFIG_ID}, i) for i in range(MAX_QUEUED_FRAMES)]
        await send_frames(sock, request("test:block", None, "b"), *reads, cancel("long"))
        await asyncio.wait_for(gates.long_cancelled.wait(), TIMEOUT)
        assert (await receive_json(sock))["error"]["code"] == -32800
        assert not server_side.transport.is_reading()
        gates.block.set()
        ids = [(await receive_json(sock))["id"] for _ in range(MAX_QUEUED_FRAMES + 1)]
        assert ids == ["b", *range(MAX_QUEUED_FRAMES)]
        assert server_side.transport.is_reading()


async def test_a_cancel_in_the_same_read_as_its_request_is_answered_request_cancelled(tmp_path: Path) -> None:
    async with gated_connection(tmp_path) as (_, _, sock):
        # The cancel reaches the spawned task before it ever ran: it is still answered.
        await send_frames(
            sock,
            request("test:long", {"id": CONFIG_ID}, "long"),
            cancel("long"),
            request("bridge:hello", None, "h"),
        )
        replies = {reply["id"]: reply for reply in [await receive_json(sock), await receive_json(sock)]}
        assert set(replies) == {"long", "h"}
        assert replies["long"]["error"]["code"] == -32800
        assert replies["long"]["error"]["data"] == {
            "code": "REQUEST_CANCELLED",
            "name": "RequestCancelledError",
        }


async def test_shutdown_cancels_a_running_long_request_and_answers_it_before_closing_with_1001(
    tmp_path: Path,
) -> None:
    # A bound longer than the test's own timeout: the answer must not wait for it.
    async with gated_connection(tmp_path, shutdown_timeout_s=60.0) as (bridge, gates, sock):
        await send_frames(sock, request("test:long", {"id": CONFIG_ID}, "long"))
        await asyncio.wait_for(gates.long_started.wait(), TIMEOUT)
        stopping = asyncio.create_task(bridge.server.shutdown())
        reply = await receive_json(sock)
        assert reply["id"] == "long"
        assert reply["error"]["code"] == -32800
        assert gates.long_cancelled.is_set()
        opcode, payload = await asyncio.to_thread(read_frame, sock)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (8, 1001)
        await asyncio.to_thread(sock.sendall, masked_frame(payload[:2], opcode=8))
        sock.close()  # the closing handshake is complete: TCP goes
        await asyncio.wait_for(stopping, TIMEOUT)


async def test_a_cancel_for_a_long_request_still_queued_behind_the_lane_cancels_it(tmp_path: Path) -> None:
    async with gated_connection(tmp_path) as (_bridge, gates, sock):
        # test:long waits behind test:block when its cancel arrives: it never starts.
        await send_frames(
            sock,
            request("test:block", None, "b"),
            request("test:long", {"id": CONFIG_ID}, "long"),
            cancel("long"),
        )
        gates.block.set()
        replies = {reply["id"]: reply for reply in [await receive_json(sock), await receive_json(sock)]}
        assert replies["b"]["result"] == "released"
        assert replies["long"]["error"]["code"] == -32800
        assert not gates.long_started.is_set()


async def receive_answering_pings(sock: socket.socket) -> Any:
    """The next text frame from ``sock``, parsed; pings before it are answered with their pong.

    Fails on any other frame (a close frame shows its code).
    """
    while (frame := await asyncio.to_thread(read_frame, sock))[0] == 9:
        await asyncio.to_thread(sock.sendall, masked_frame(frame[1], opcode=10))
    opcode, payload = frame
    assert opcode == 1, (opcode, int.from_bytes(payload[:2], "big") if opcode == 8 else payload)
    return orjson.loads(payload)


async def test_a_pong_unread_while_the_server_paused_reading_does_not_time_out(tmp_path: Path) -> None:
    # The server pauses reading at its queue limit; its ping is answered, but the pong
    # waits unread behind the server's own pause. The pong deadline must wait for reading
    # to resume, not close a healthy client with 1011. (The first ping comes one interval
    # after the handshake and no pong is sent before the pause, so the first ping is the
    # one outstanding; the setup before the pause must take less than interval + timeout.)
    options = {"ping_interval_s": 0.2, "ping_timeout_s": 2.0}
    async with gated_connection(tmp_path, **options) as (bridge, gates, sock):
        await send_frames(sock, request("test:long", {"id": CONFIG_ID}, "long"))
        await asyncio.wait_for(gates.long_started.wait(), TIMEOUT)
        reads = [request("llm-config:read", {"id": CONFIG_ID}, i) for i in range(MAX_QUEUED_FRAMES)]
        await send_frames(sock, request("test:block", None, "b"), *reads, cancel("long"))
        # The cancel's answer leaves after the whole write was read: reading is paused
        # from then until test:block is released. Pings are held, not answered, till then.
        pings = []
        while (frame := await asyncio.to_thread(read_frame, sock))[0] == 9:
            pings.append(frame[1])
        assert (frame[0], orjson.loads(frame[1])["id"]) == (1, "long")
        if not pings:  # the first ping had not been sent yet: it comes while paused
            opcode, payload = await asyncio.to_thread(read_frame, sock)
            assert opcode == 9
            pings.append(payload)
        assert len(pings) == 1  # no pong was read, so no second ping
        await asyncio.to_thread(sock.sendall, masked_frame(pings[0], opcode=10))
        # The clock: a second connection with the same settings, pinged later, that never
        # answers. Once it is closed 1011, the first one's pong deadline would have passed.
        async with raw_connection(bridge) as silent:
            while (frame := await asyncio.to_thread(read_frame, silent))[0] != 8:
                pass
            assert int.from_bytes(frame[1][:2], "big") == 1011
        gates.block.set()
        replies = [await receive_answering_pings(sock) for _ in range(MAX_QUEUED_FRAMES + 1)]
        assert [reply["id"] for reply in replies] == ["b", *range(MAX_QUEUED_FRAMES)]
        await send_frames(sock, request("bridge:hello", None, "h"))
        assert (await receive_answering_pings(sock))["id"] == "h"
