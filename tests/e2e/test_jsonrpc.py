"""JSON-RPC 2.0 in full, asserted as exact JSON on the wire through a real socket.

The examples of JSON-RPC 2.0 §7 are translated to bridge's channels; then every hostile
or malformed input of issue 4 item 1: never a crash, never a traceback for a client
mistake, the connection stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError

from bridge.app import Bridge
from tests.conftest import openai_config
from tests.e2e.wire import SECRET_DETAIL, open_ws, recv_json, recv_text, request, running_bridge

UNKNOWN_ID = "9b2f7c7e-0000-4000-8000-000000000000"


def err(code: int, message: str, data_code: str, name: str, request_id: Any = None, **data: Any) -> str:
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": code, "message": message, "data": {"code": data_code, "name": name, **data}},
        }
    )
    return body.decode()


PARSE = err(-32700, "Parse error", "PARSE_ERROR", "ParseError")
INVALID = err(-32600, "Invalid request", "INVALID_REQUEST", "InvalidRequestError")


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path / "data", max_batch=5) as running:
        yield running


@pytest.fixture
async def ws(bridge: Bridge) -> AsyncIterator[ClientConnection]:
    async with await open_ws(bridge) as connection:
        yield connection


async def assert_silent(ws: ClientConnection) -> None:
    """Nothing was sent back: the next frame answers a probe sent now (replies are ordered)."""
    await ws.send(request("bridge:hello", request_id="probe"))
    assert (await recv_json(ws))["id"] == "probe"


# ---- JSON-RPC 2.0 §7, translated -----------------------------------------------------


async def test_spec_call_with_named_params_returns_exact_result(ws: ClientConnection) -> None:
    await ws.send(request("llm-config:read", {"id": UNKNOWN_ID}, 1))
    assert await recv_text(ws) == '{"jsonrpc":"2.0","id":1,"result":null}'
    await ws.send(request("test:sum", [42, 23], 2))
    assert await recv_text(ws) == '{"jsonrpc":"2.0","id":2,"result":65}'


async def test_spec_notification_gets_no_reply(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"llm-config:list"}')
    await ws.send('{"jsonrpc":"2.0","method":"test:sum","params":[1,2,3,4,5]}')
    await assert_silent(ws)


async def test_spec_unknown_method_returns_32601(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"foobar","id":"1"}')
    expected = err(
        -32601,
        "Method not found",
        "METHOD_NOT_FOUND",
        "MethodNotFoundError",
        "1",
        context={"method": "foobar"},
    )
    assert await recv_text(ws) == expected


async def test_spec_invalid_json_returns_32700_with_null_id(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]')
    assert await recv_text(ws) == PARSE


async def test_spec_invalid_request_object_returns_32600_with_null_id(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":1,"params":"bar"}')
    assert await recv_text(ws) == INVALID


async def test_spec_batch_with_invalid_json_returns_one_32700(ws: ClientConnection) -> None:
    await ws.send('[{"jsonrpc":"2.0","method":"llm-config:list","id":"1"},{"jsonrpc":"2.0","method"]')
    assert await recv_text(ws) == PARSE


async def test_spec_empty_batch_returns_one_32600(ws: ClientConnection) -> None:
    await ws.send("[]")
    assert await recv_text(ws) == err(
        -32600, "Invalid request: empty batch", "INVALID_REQUEST", "InvalidRequestError"
    )


async def test_spec_invalid_batches_answer_each_element(ws: ClientConnection) -> None:
    await ws.send("[1]")
    assert await recv_text(ws) == f"[{INVALID}]"
    await ws.send("[1,2,3]")
    assert await recv_text(ws) == f"[{INVALID},{INVALID},{INVALID}]"


async def test_spec_mixed_batch_answers_in_order_and_skips_notifications(ws: ClientConnection) -> None:
    await ws.send(
        "["
        '{"jsonrpc":"2.0","method":"test:sum","params":[1,2,4],"id":"1"},'
        '{"jsonrpc":"2.0","method":"llm-config:list"},'
        f'{{"jsonrpc":"2.0","method":"llm-config:read","params":{{"id":"{UNKNOWN_ID}"}},"id":"2"}},'
        '{"foo":"boo"},'
        '{"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},'
        "]".replace(",]", "]")
    )
    not_found = err(
        -32601,
        "Method not found",
        "METHOD_NOT_FOUND",
        "MethodNotFoundError",
        "5",
        context={"method": "foo.get"},
    )
    assert await recv_text(ws) == (
        '[{"jsonrpc":"2.0","id":"1","result":7},'
        '{"jsonrpc":"2.0","id":"2","result":null},'
        f"{INVALID},{not_found}]"
    )


async def test_spec_all_notification_batch_sends_no_frame(ws: ClientConnection) -> None:
    await ws.send(
        '[{"jsonrpc":"2.0","method":"test:sum","params":[1,2,4]},{"jsonrpc":"2.0","method":"bridge:hello"}]'
    )
    await assert_silent(ws)


# ---- ids (DESIGN §5) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_id", "echoed"),
    [("0", "0"), ('""', '""'), ("null", "null"), ("-9007199254740991", "-9007199254740991"), ('"a"', '"a"')],
)
async def test_valid_id_is_echoed(ws: ClientConnection, raw_id: str, echoed: str) -> None:
    await ws.send(f'{{"jsonrpc":"2.0","method":"test:sum","params":[1],"id":{raw_id}}}')
    assert await recv_text(ws) == f'{{"jsonrpc":"2.0","id":{echoed},"result":1}}'


@pytest.mark.parametrize(
    "raw_id",
    ["true", "false", "1.5", "1.0", "[]", "{}", "[1]", "9007199254740992", "-9007199254740992", "1e3"],
)
async def test_invalid_id_returns_32600_with_null_id(ws: ClientConnection, raw_id: str) -> None:
    await ws.send(f'{{"jsonrpc":"2.0","method":"test:sum","params":[1],"id":{raw_id}}}')
    assert await recv_text(ws) == INVALID


# ---- malformed envelopes and frames ---------------------------------------------------


@pytest.mark.parametrize("frame", ["null", "1", '"x"', "true", "{}"])
async def test_scalar_or_empty_frame_returns_32600(ws: ClientConnection, frame: str) -> None:
    await ws.send(frame)
    assert await recv_text(ws) == INVALID


@pytest.mark.parametrize(
    "envelope",
    [
        '{"jsonrpc":"2.0","id":1}',
        '{"jsonrpc":"1.0","method":"bridge:hello","id":1}',
        '{"method":"bridge:hello","id":1}',
        '{"jsonrpc":"2.0","method":"bridge:hello","params":null,"id":1}',
        '{"jsonrpc":"2.0","method":"bridge:hello","params":"x","id":1}',
        '{"jsonrpc":"2.0","method":"bridge:hello","id":1,"extra":true}',
    ],
)
async def test_malformed_envelope_returns_32600_with_its_id(ws: ClientConnection, envelope: str) -> None:
    await ws.send(envelope)
    assert await recv_text(ws) == INVALID.replace('"id":null', '"id":1')


@pytest.mark.parametrize(
    "frame",
    [
        '{"jsonrpc":"2.0","method":"test:sum","params":[NaN],"id":1}',
        '{"jsonrpc":"2.0","method":"test:sum","params":[Infinity],"id":1}',
        '{"jsonrpc":"2.0","method":"test:sum","params":[-Infinity],"id":1}',
        '{"jsonrpc":"2.0","method":"test:sum","params":[1e400],"id":1}',
        '{"jsonrpc":"2.0","method":"test:sum","params":[' + "9" * 5000 + '],"id":1}',
        '{"jsonrpc":"2.0","method":"bridge:hello","id":"\\ud800"}',
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 2000 + "1" + "}" * 2000,
        "",
        "\ufeff{}",
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "overflow",
        "5000-digits",
        "lone-surrogate",
        "deep-array",
        "deep-object",
        "empty",
        "bom",
    ],
)
async def test_hostile_json_returns_32700_and_keeps_the_connection(ws: ClientConnection, frame: str) -> None:
    await ws.send(frame)
    assert await recv_text(ws) == PARSE
    await assert_silent(ws)


async def test_binary_frame_returns_32700_and_keeps_the_connection(ws: ClientConnection) -> None:
    await ws.send(request("bridge:hello").encode(), text=False)
    assert await recv_json(ws) == orjson.loads(
        err(-32700, "Parse error: binary frames are not accepted", "PARSE_ERROR", "ParseError")
    )
    await assert_silent(ws)


async def test_big_integer_inside_params_is_a_validation_error_not_a_crash(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"llm-config:read","params":{"id":18446744073709551616},"id":7}')
    reply = await recv_json(ws)
    assert (reply["id"], reply["error"]["code"], reply["error"]["data"]["errors"][0]["field"]) == (
        7,
        -32602,
        "id",
    )


async def test_array_params_to_by_name_channel_return_32602_on_params(ws: ClientConnection) -> None:
    await ws.send(request("llm-config:read", [UNKNOWN_ID], 3))
    error = (await recv_json(ws))["error"]
    assert (error["code"], error["data"]["errors"]) == (
        -32602,
        [{"field": "params", "code": "INVALID_FORMAT", "message": "must be an object (by-name params)"}],
    )
    await ws.send(request("test:sum", {"a": 1}, 4))
    assert (await recv_json(ws))["error"]["data"]["errors"][0]["field"] == "params"


async def test_wrong_notifications_are_never_answered(ws: ClientConnection) -> None:
    await ws.send('{"jsonrpc":"2.0","method":"no:such-channel"}')
    await ws.send('{"jsonrpc":"2.0","method":"llm-config:read","params":{"id":42}}')
    await ws.send('{"jsonrpc":"2.0","method":"llm-config:read","params":"not-structured"}')
    await ws.send('{"jsonrpc":"2.0","method":"test:boom"}')
    await ws.send('[{"jsonrpc":"2.0","method":"no:such"},{"jsonrpc":"2.0","method":"test:sum","params":{}}]')
    await assert_silent(ws)


async def test_batch_over_the_limit_returns_one_32600(ws: ClientConnection) -> None:
    await ws.send(orjson.dumps([orjson.loads(request("test:sum", [1], i)) for i in range(6)]).decode())
    assert await recv_text(ws) == err(
        -32600,
        "Invalid request: batch of more than 5 entries",
        "INVALID_REQUEST",
        "InvalidRequestError",
        context={"maxBatch": 5},
    )


async def test_batch_elements_fail_independently(ws: ClientConnection) -> None:
    batch = [
        orjson.loads(request("llm-config:create", {"config": openai_config("A")}, 1)),
        orjson.loads(request("llm-config:create", {"config": openai_config("a")}, 2)),
        orjson.loads(request("test:boom", None, 3)),
        orjson.loads(request("llm-config:list", None, 4)),
    ]
    await ws.send(orjson.dumps(batch).decode())
    notification = await recv_json(ws)  # the create's change notification comes first
    assert notification["method"] == "llm-config:changed"
    replies = await recv_json(ws)
    assert [r["id"] for r in replies] == [1, 2, 3, 4]
    assert "result" in replies[0]
    assert replies[1]["error"]["code"] == 4009
    assert replies[2]["error"] == {
        "code": -32603,
        "message": "Internal error",
        "data": {"code": "INTERNAL_ERROR", "name": "BridgeError"},
    }
    assert [v["customName"] for v in replies[3]["result"]] == ["A"]


async def test_unexpected_exception_is_generic_on_the_wire_and_logged_once(ws: ClientConnection) -> None:
    with capture_logs() as logs:
        await ws.send(request("test:boom", None, 9))
        reply = await recv_text(ws)
    assert reply == err(-32603, "Internal error", "INTERNAL_ERROR", "BridgeError", 9)
    assert SECRET_DETAIL not in reply
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["handler_failed"]


async def test_client_mistakes_log_no_error(ws: ClientConnection) -> None:
    frames = ["{", "[]", "[1]", "null", '{"jsonrpc":"2.0","method":"x","id":true}', request("nope")]
    with capture_logs() as logs:
        for frame in frames:
            await ws.send(frame)
            await recv_json(ws)
        await ws.send(b"\x00\xff", text=False)
        await recv_json(ws)
    assert [e for e in logs if e["log_level"] in {"error", "critical", "exception"}] == []


async def test_message_over_the_size_limit_closes_with_1009(tmp_path: Path) -> None:
    async with (
        running_bridge(tmp_path / "data", max_message_bytes=4096) as bridge,
        await open_ws(bridge) as ws,
    ):
        await ws.send(request("test:sum", [1] * 3000))
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1009


async def test_the_log_of_a_closed_connection_names_the_code_bridge_sent(tmp_path: Path) -> None:
    # ``code`` is what the peer sent (1006 when its close frame never came); ``sent`` is bridge's.
    with capture_logs() as logs:
        async with running_bridge(tmp_path / "data", max_message_bytes=4096) as bridge:
            async with await open_ws(bridge) as ws:
                await ws.send(request("test:sum", [1] * 3000))
                with pytest.raises(ConnectionClosedError):
                    await asyncio.wait_for(ws.recv(), 10)
            for _ in range(200):  # the server logs once its side of TCP is gone
                if any(e["event"] == "connection_closed" for e in logs):
                    break
                await asyncio.sleep(0.05)
    (closed,) = [e for e in logs if e["event"] == "connection_closed"]
    assert closed["sent"] == 1009


async def test_rate_limit_answers_excess_requests_with_4029(tmp_path: Path) -> None:
    async with running_bridge(tmp_path / "data", rate_limit_per_s=3) as bridge, await open_ws(bridge) as ws:
        await ws.send(orjson.dumps([orjson.loads(request("test:sum", [1], i)) for i in range(5)]).decode())
        replies = await recv_json(ws)
    assert [("result" in r) for r in replies] == [True, True, True, False, False]
    assert replies[3]["error"]["code"] == 4029
    assert replies[3]["error"]["data"]["code"] == "RATE_LIMITED"


# ---- ordering (DESIGN §5) ------------------------------------------------------------


async def test_pipelined_requests_take_effect_and_answer_in_arrival_order(bridge: Bridge) -> None:
    async with await open_ws(bridge) as writer, await open_ws(bridge) as listener:
        await listener.send(request("bridge:hello", request_id="ready"))
        assert (await recv_json(listener))["id"] == "ready"
        frames = [request("llm-config:create", {"config": openai_config(f"n{i}")}, i) for i in range(10)]
        frames.append(request("llm-config:list", None, "list"))
        for frame in frames:  # pipelined: nothing awaited in between
            await writer.send(frame)
        seen = [await recv_json(writer) for _ in range(21)]
    kinds = [("n" if "method" in m else "r", m.get("id")) for m in seen]
    # Each notification immediately precedes the response to the write that caused it.
    assert kinds == [k for i in range(10) for k in (("n", None), ("r", i))] + [("r", "list")]
    assert [m["params"]["revision"] for m in seen[:20:2]] == list(range(1, 11))
    assert [v["customName"] for v in seen[-1]["result"]] == [f"n{i}" for i in range(10)]
