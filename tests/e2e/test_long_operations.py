"""Long operations in the RPC layer on a real in-process server: ``$/progress`` for a
``workDoneToken``, the per-connection bound of a long-running channel, cancellation at
shutdown, and ordered requests that ``$/cancelRequest`` never breaks (DESIGN §5)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from bridge import api
from bridge.app import Bridge
from bridge.models import EmptyParams, IdParams
from tests.e2e.wire import (
    TIMEOUT,
    cancel,
    connected_bridge,
    recv_json,
    request,
    ws_connection,
)

STEPS: api.ChannelSpec[IdParams, str] = api.ChannelSpec(
    "test:steps", IdParams, str, "Reports progress, waits until released.", long_running=True, progress=True
)
ORDERED_STEPS: api.ChannelSpec[EmptyParams, str] = api.ChannelSpec(
    "test:ordered-steps", EmptyParams, str, "Reports progress in order, returns at once.", progress=True
)
BOUNDED: api.ChannelSpec[IdParams, str] = api.ChannelSpec(
    "test:bounded",
    IdParams,
    str,
    "Waits until released; two at once per connection.",
    long_running=True,
    max_running=2,
)
SLOW_WRITE: api.ChannelSpec[EmptyParams, str] = api.ChannelSpec(
    "test:slow-write", EmptyParams, str, "An ordered write that commits, then finishes."
)
COMMITTING: api.ChannelSpec[EmptyParams, str] = api.ChannelSpec(
    "test:committing", EmptyParams, str, "Long-running; answers as done once committed.", long_running=True
)
CONFIG_ID = "00000000-0000-4000-8000-000000000001"


class Gates:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = 0
        self.committed = asyncio.Event()
        self.finish_write = asyncio.Event()


def register(bridge: Bridge) -> Gates:
    gates = Gates()

    async def steps(params: IdParams, progress: api.Progress) -> str:
        progress.begin("starting", 0)
        progress.report("halfway", 50)
        gates.started.set()
        try:
            await gates.release.wait()
        except asyncio.CancelledError:
            gates.cancelled += 1
            raise
        return params.id

    async def ordered_steps(_: EmptyParams, progress: api.Progress) -> str:
        progress.report("only", 10)
        progress.end("finished")
        return "done"

    async def bounded(params: IdParams) -> str:
        gates.started.set()
        await gates.release.wait()
        return params.id

    async def slow_write(_: EmptyParams) -> str:
        gates.committed.set()
        await gates.finish_write.wait()
        return "committed"

    async def committing(_: EmptyParams) -> str:
        gates.committed.set()  # the write is durable from here on
        try:
            await gates.finish_write.wait()
        except asyncio.CancelledError:
            return "committed"  # a committed write is answered as done, not -32800
        return "finished"

    bridge.registry.add(COMMITTING, committing)
    bridge.registry.add(STEPS, steps)
    bridge.registry.add(ORDERED_STEPS, ordered_steps)
    bridge.registry.add(BOUNDED, bounded)
    bridge.registry.add(SLOW_WRITE, slow_write)
    return gates


def registered_ws(
    tmp_path: Path, **options: Any
) -> AbstractAsyncContextManager[tuple[Bridge, Gates, ClientConnection]]:
    """A bridge (``options``: :class:`TransportOptions` fields) with the test channels
    registered, and a websockets connection to it."""
    return connected_bridge(tmp_path / "data", register, ws_connection, **options)


async def test_progress_goes_to_the_requesting_connection_only_and_ends_before_the_response(
    tmp_path: Path,
) -> None:
    async with registered_ws(tmp_path) as (bridge, gates, ws), ws_connection(bridge) as other:
        await ws.send(request("test:steps", {"id": CONFIG_ID, "workDoneToken": "tok-1"}, 7))
        begin = await recv_json(ws)
        assert begin == {
            "jsonrpc": "2.0",
            "method": "$/progress",
            "params": {
                "token": "tok-1",
                "value": {"kind": "begin", "message": "starting", "percentage": 0},
            },
        }
        report = await recv_json(ws)
        assert report["params"] == {
            "token": "tok-1",
            "value": {"kind": "report", "message": "halfway", "percentage": 50},
        }
        await asyncio.wait_for(gates.started.wait(), TIMEOUT)
        gates.release.set()
        end = await recv_json(ws)
        assert end["params"] == {"token": "tok-1", "value": {"kind": "end"}}
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": 7, "result": CONFIG_ID}
        # The other connection saw nothing of it: its next frame answers its own call.
        await other.send(request("llm-config:read", {"id": CONFIG_ID}, "o"))
        assert await recv_json(other) == {"jsonrpc": "2.0", "id": "o", "result": None}


async def test_progress_without_a_token_sends_nothing_and_ordered_channels_report_too(tmp_path: Path) -> None:
    async with registered_ws(tmp_path) as (_, _, ws):
        await ws.send(request("test:ordered-steps", {}, 1))
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": 1, "result": "done"}
        await ws.send(request("test:ordered-steps", {"workDoneToken": 42}, 2))
        values = [(await recv_json(ws))["params"] for _ in range(2)]
        assert values == [
            {"token": 42, "value": {"kind": "begin", "message": "only", "percentage": 10}},
            {"token": 42, "value": {"kind": "end", "message": "finished"}},
        ]
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": 2, "result": "done"}
        # A channel without progress ignores the token.
        await ws.send(request("llm-config:read", {"id": CONFIG_ID, "workDoneToken": "t"}, 3))
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": 3, "result": None}


async def test_a_cancelled_request_ends_its_progress_then_answers_32800(tmp_path: Path) -> None:
    async with registered_ws(tmp_path) as (_bridge, gates, ws):
        await ws.send(request("test:steps", {"id": CONFIG_ID, "workDoneToken": "c"}, "x"))
        await recv_json(ws)  # begin
        await recv_json(ws)  # report
        await asyncio.wait_for(gates.started.wait(), TIMEOUT)
        await ws.send(cancel("x"))
        end = await recv_json(ws)
        assert end["params"] == {"token": "c", "value": {"kind": "end", "message": "cancelled"}}
        reply = await recv_json(ws)
        assert (reply["id"], reply["error"]["code"]) == ("x", -32800)
        assert gates.cancelled == 1


async def test_a_long_running_channel_runs_at_most_max_running_per_connection(tmp_path: Path) -> None:
    async with registered_ws(tmp_path) as (bridge, gates, ws), ws_connection(bridge) as other:
        for n in range(3):
            await ws.send(request("test:bounded", {"id": CONFIG_ID}, n))
        refused = await recv_json(ws)
        assert refused["id"] == 2
        assert refused["error"]["code"] == 4029
        assert refused["error"]["data"] == {
            "code": "RATE_LIMITED",
            "name": "RateLimitedError",
            "context": {"channel": "test:bounded", "maxRunning": 2},
        }
        # Another connection has its own bound.
        await other.send(request("test:bounded", {"id": CONFIG_ID}, "o"))
        # Once one finishes, the bound frees a place on the first connection.
        gates.release.set()
        answered = {(await recv_json(ws))["id"] for _ in range(2)}
        assert answered == {0, 1}
        assert await recv_json(other) == {"jsonrpc": "2.0", "id": "o", "result": CONFIG_ID}
        await ws.send(request("test:bounded", {"id": CONFIG_ID}, 3))
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": 3, "result": CONFIG_ID}


def test_max_running_needs_a_long_running_channel() -> None:
    with pytest.raises(ValueError, match="max_running"):
        api.ChannelSpec("test:x", EmptyParams, str, "x", max_running=2)
    with pytest.raises(ValueError, match="max_running"):
        api.ChannelSpec("test:x", EmptyParams, str, "x", long_running=True, max_running=0)


SHUTDOWN_BOUND_S = 6 * TIMEOUT


async def test_shutdown_cancels_long_running_requests_and_answers_them_within_the_bound(
    tmp_path: Path,
) -> None:
    # A bound far past the test's own TIMEOUT: the shutdown can only finish in time by
    # cancelling the running request, never by waiting the bound out.
    async with registered_ws(tmp_path, shutdown_timeout_s=SHUTDOWN_BOUND_S) as (bridge, gates, ws):
        await ws.send(request("test:steps", {"id": CONFIG_ID}, "long"))
        await asyncio.wait_for(gates.started.wait(), TIMEOUT)
        closing = asyncio.create_task(bridge.server.shutdown())
        reply = await recv_json(ws)
        assert (reply["id"], reply["error"]["code"]) == ("long", -32800)
        await asyncio.wait_for(closing, TIMEOUT)
        assert gates.cancelled == 1


async def test_cancel_request_never_cancels_an_ordered_write(tmp_path: Path) -> None:
    async with registered_ws(tmp_path) as (_bridge, gates, ws):
        await ws.send(request("test:slow-write", None, "w"))
        await asyncio.wait_for(gates.committed.wait(), TIMEOUT)
        await ws.send(cancel("w"))
        # The cancel is handled on arrival (it overtakes nothing queued) and does nothing.
        await ws.send(request("llm-config:read", {"id": CONFIG_ID}, "r"))
        gates.finish_write.set()
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": "w", "result": "committed"}
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": "r", "result": None}


async def test_a_long_running_handler_that_committed_answers_a_cancel_as_done(tmp_path: Path) -> None:
    async with registered_ws(tmp_path) as (_bridge, gates, ws):
        await ws.send(request("test:committing", None, "c"))
        await asyncio.wait_for(gates.committed.wait(), TIMEOUT)
        await ws.send(cancel("c"))
        assert await recv_json(ws) == {"jsonrpc": "2.0", "id": "c", "result": "committed"}
