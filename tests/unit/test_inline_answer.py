"""``Dispatcher.answer_inline`` answers exactly what ``handle_frame`` answers, or hands the frame on.

The connection tries the synchronous path first and falls back to ``handle_frame`` with
the parsed frame; these tests drive both the way the connection does and compare every
reply, the gates' call counts and the error log lines with ``handle_frame`` alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from bridge import api
from bridge.errors import BridgeError, ConfigNotFoundError, RateLimitedError, ServiceUnavailableError
from bridge.models import EmptyParams, IdParams
from bridge.rpc.dispatch import UNPARSED, Dispatcher
from bridge.rpc.eager import start_eagerly

ID = "0b7e2f44-5c1a-4d3e-9f6b-2a8c7d1e4f90"


def spec(name: str, params: Any = IdParams, **kw: Any) -> api.ChannelSpec[Any, Any]:
    return api.ChannelSpec(name, params, dict[str, Any] | None, f"test channel {name}", **kw)


async def plain(params: IdParams) -> dict[str, Any]:
    return {"id": params.id, "n": 1}


async def fragment(params: IdParams) -> orjson.Fragment:
    return orjson.Fragment(orjson.dumps({"id": params.id}))


async def missing(params: IdParams) -> None:
    raise ConfigNotFoundError(params.id)


async def broken(_: IdParams) -> None:
    raise RuntimeError("bug")


async def suspends(params: IdParams) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"id": params.id, "later": True}


async def suspends_then_fails(_: IdParams) -> None:
    await asyncio.sleep(0)
    raise ConfigNotFoundError(ID)


async def in_task(_: IdParams) -> dict[str, Any]:
    return {"task": asyncio.current_task() is not None}


async def empty(_: EmptyParams) -> dict[str, Any]:
    return {}


async def long_op(params: IdParams) -> dict[str, Any]:
    return {"id": params.id}


def dispatcher() -> Dispatcher:
    """Channels of every kind the fast path must answer or hand on."""
    registry = api.Registry()
    for name, handler in (
        ("t:plain", plain),
        ("t:fragment", fragment),
        ("t:missing", missing),
        ("t:broken", broken),
        ("t:suspends", suspends),
        ("t:suspendsThenFails", suspends_then_fails),
    ):
        registry.add(spec(name), handler, inline=True)
    registry.add(spec("t:inTask"), in_task)  # not inline: always started in a task
    registry.add(spec("t:empty", EmptyParams, params_optional=True), empty, inline=True)
    registry.add(spec("t:long", long_running=True), long_op, inline=True)
    return Dispatcher(registry)


def request(method: str, request_id: Any = 1, params: Any = None, **extra: Any) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method, **extra}
    if params is not None:
        message["params"] = params
    return orjson.dumps(message).decode()


async def finish(outcome: Any) -> bytes | None:
    """Run what answer_inline or start_eagerly left to a task, as the connection does."""
    if isinstance(outcome, bytes) or outcome is None:
        return outcome
    if isinstance(outcome, asyncio.Task):
        result: bytes | None = await outcome
        return result
    assert isinstance(outcome, Awaitable)
    return await asyncio.get_running_loop().create_task(outcome)  # type: ignore[arg-type]


async def like_the_connection(
    d: Dispatcher, frame: str | bytes, admit: Any = None
) -> tuple[bool, bytes | None]:
    """(answered inline?, reply) — the connection's order: answer_inline, then handle_frame."""
    answered, outcome = d.answer_inline(frame, admit)
    if answered:
        return True, await finish(outcome)
    if outcome is not UNPARSED:
        assert outcome == orjson.loads(frame)  # handed on parsed, unchanged
    _, started = start_eagerly(d.handle_frame(frame, admit=admit, parsed=outcome))
    return False, await finish(started)


async def general(d: Dispatcher, frame: str | bytes, admit: Any = None) -> bytes | None:
    return await d.handle_frame(frame, admit=admit)


FAST: list[str | bytes] = [
    request("t:plain", 1, {"id": ID}),
    request("t:plain", "abc", {"id": ID}),
    request("t:plain", 2**53 - 1, {"id": ID}),
    request("t:fragment", 2, {"id": ID}),
    request("t:missing", 3, {"id": ID}),
    request("t:broken", 4, {"id": ID}),
    request("t:suspends", 5, {"id": ID}),
    request("t:suspendsThenFails", 6, {"id": ID}),
    request("t:plain", 7, {"id": "not-a-uuid"}),  # -32602 from the memoized validation
    request("t:plain", 8, {"id": ID, "extra": 1}),
    request("t:empty", 9, {}),
]
HANDED_ON: list[str | bytes] = [
    request("t:plain", 1),  # no params
    request("t:plain", None, {"id": ID}),  # id null
    request("t:plain", request_id=True, params={"id": ID}),  # id of the wrong type
    request("t:plain", 2**53, {"id": ID}),  # id out of range
    request("t:plain", 1.5, {"id": ID}),
    request("t:plain", 1, [ID]),  # by position
    request("t:plain", 1, {"id": ID}, extra=1),  # an unknown member
    request("t:unknown", 1, {"id": ID}),
    request("t:inTask", 1, {"id": ID}),  # not inline
    request("t:long", 1, {"id": ID}),  # long-running
    orjson.dumps({"jsonrpc": "1.0", "id": 1, "method": "t:plain", "params": {"id": ID}}).decode(),
    orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": 5, "params": {"id": ID}}).decode(),
    orjson.dumps({"jsonrpc": "2.0", "method": "t:plain", "params": {"id": ID}}).decode(),  # notification
    orjson.dumps([{"jsonrpc": "2.0", "id": 1, "method": "t:plain", "params": {"id": ID}}]).decode(),
    "[]",
    "42",
    "{not json",
    b'{"jsonrpc":"2.0","id":1,"method":"t:plain","params":{}}',
]


async def warm(d: Dispatcher) -> None:
    """The fast path takes a channel once the general path has validated params for it."""
    with capture_logs():  # t:broken logs its failure
        for method in ("t:plain", "t:fragment", "t:missing", "t:broken", "t:suspends", "t:suspendsThenFails"):
            assert await d.handle_frame(request(method, 0, {"id": ID})) is not None
        assert await d.handle_frame(request("t:empty", 0, {})) is not None


@pytest.mark.parametrize("frame", FAST)
async def test_a_common_request_is_answered_inline_with_handle_frames_reply(frame: str) -> None:
    fast, slow = dispatcher(), dispatcher()
    await warm(fast)
    await warm(slow)
    with capture_logs() as fast_logs:
        answered, reply = await like_the_connection(fast, frame)
    with capture_logs() as slow_logs:
        expected = await general(slow, frame)
    assert answered
    assert reply is not None
    assert orjson.loads(reply) == orjson.loads(expected or b"null")
    assert [(e["event"], e.get("method")) for e in fast_logs] == [
        (e["event"], e.get("method")) for e in slow_logs
    ]


@pytest.mark.parametrize("frame", HANDED_ON)
async def test_any_other_frame_is_handed_on_and_answered_as_before(frame: str | bytes) -> None:
    fast, slow = dispatcher(), dispatcher()
    await warm(fast)
    await warm(slow)
    answered, reply = await like_the_connection(fast, frame)
    expected = await general(slow, frame)
    assert not answered
    assert (None if reply is None else orjson.loads(reply)) == (
        None if expected is None else orjson.loads(expected)
    )


async def test_a_channel_is_handed_on_until_the_general_path_has_seen_it() -> None:
    d = dispatcher()
    frame = request("t:plain", 1, {"id": ID})
    assert (await like_the_connection(d, frame))[0] is False
    assert (await like_the_connection(d, frame))[0] is True


async def test_a_suspending_handler_finishes_in_a_task() -> None:
    d = dispatcher()
    await warm(d)
    answered, outcome = d.answer_inline(request("t:suspends", 5, {"id": ID}))
    assert answered
    assert not isinstance(outcome, bytes)
    reply = await finish(outcome)
    assert reply is not None
    assert orjson.loads(reply) == {"jsonrpc": "2.0", "id": 5, "result": {"id": ID, "later": True}}


@pytest.mark.parametrize("frame", FAST + HANDED_ON)
async def test_the_admit_gate_runs_once_per_frame_and_its_refusal_is_the_answer(frame: str | bytes) -> None:
    calls: list[int] = []

    def admit() -> BridgeError | None:
        calls.append(1)
        return RateLimitedError()

    fast, slow = dispatcher(), dispatcher()
    await warm(fast)
    await warm(slow)
    _, reply = await like_the_connection(fast, frame, admit)
    fast_calls = len(calls)
    calls.clear()
    expected = await general(slow, frame, admit)
    assert fast_calls == len(calls)
    assert (None if reply is None else orjson.loads(reply)) == (
        None if expected is None else orjson.loads(expected)
    )


async def test_the_shutdown_gate_answers_5003_on_the_fast_path() -> None:
    d = dispatcher()
    await warm(d)
    d.refuse = ServiceUnavailableError  # shutdown began
    answered, reply = await like_the_connection(d, request("t:plain", 3, {"id": ID}))
    assert answered
    assert reply is not None
    assert orjson.loads(reply)["error"]["code"] == ServiceUnavailableError.rpc_code
