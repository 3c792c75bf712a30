"""Protocol fuzzing of ``bridge serve`` with hypothesis-generated frames (issue 7, item 5).

Frames: random JSON, request-shaped objects with wrong types and unknown fields, valid
channels with mangled params, deep nesting, huge numbers, NaN/Infinity, lone surrogates,
binary frames, huge and nested batches. One connection carries many frames: each frame
is followed by a sentinel request, so everything before the sentinel's answer is that
frame's reply (none for a notification). For every reply: valid JSON-RPC 2.0, a
documented code (never -32603 — every frame here is a client mistake or a valid call),
``data.code`` matching it. The connection stays open; the store's revision moves only
when a write was answered with success; the server's stderr has no error or traceback.
About 3,000 frames in CI, ≥ 100,000 with ``BRIDGE_RELIABILITY=long``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge import api
from tests.conftest import ServedBridge, start_bridge_process
from tests.reliability.helpers import FUZZ_FRAMES, RUN_TIMEOUT_S, record

pytestmark = pytest.mark.reliability

CODES = {
    -32700: "PARSE_ERROR",
    -32600: "INVALID_REQUEST",
    -32601: "METHOD_NOT_FOUND",
    -32602: "VALIDATION_ERROR",
    4004: "CONFIG_NOT_FOUND",
    4009: "DUPLICATE_CONFIG_NAME",
    4012: "VERSION_CONFLICT",
    4013: "RESPONSE_TOO_LARGE",
    4029: "RATE_LIMITED",
    5000: "CONFIG_OPERATION_FAILED",
    5003: "SERVICE_UNAVAILABLE",
}
FRAMES_PER_EXAMPLE = 50
REPLY_BUDGET_BYTES = 4 * 1024 * 1024
"""The server's default reply byte budget (DESIGN §6): replies may exceed the 256 KiB
inbound limit by design (a batch of 100 ``rpc.discover`` is about 300 KB), so the fuzzing
client accepts up to the budget, and no more: a reply past it closes the client (1009)."""
TOO_LARGE_ANSWER_BYTES = 256
"""Room per batch element for its 4013 answer: a batch reply may pass the budget by one
short 4013 answer per element after the one that reached it (docs/protocol.md, Batches)."""
SENTINEL = '{"jsonrpc":"2.0","method":"llm-config:snapshot","id":"sentinel"}'
CHANNELS = [
    api.LLM_CONFIG_CREATE.name,
    api.LLM_CONFIG_READ.name,
    api.LLM_CONFIG_UPDATE.name,
    api.LLM_CONFIG_DELETE.name,
    api.LLM_CONFIG_LIST.name,
    api.LLM_CONFIG_SNAPSHOT.name,
    api.LLM_CONFIG_INITIALIZE.name,
    api.LLM_CONFIG_REFRESH_CACHE.name,
    api.BRIDGE_HELLO.name,
    "rpc.discover",
    "rpc.on",
    "rpc.off",
]
WRITES = {api.LLM_CONFIG_CREATE.name, api.LLM_CONFIG_UPDATE.name, api.LLM_CONFIG_DELETE.name}

# ---- strategies ---------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**53) + 2),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30), st.sampled_from(CHANNELS))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
ids = st.one_of(
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.integers(),
    st.text(max_size=20),
    st.none(),
    st.booleans(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)
config_like = st.fixed_dictionaries(
    {},
    optional={
        "customName": st.one_of(st.text(max_size=120), json_values),
        "provider": st.one_of(
            st.sampled_from(["openai", "anthropic", "google", "custom", "OPENAI"]), json_values
        ),
        "apiKey": st.one_of(st.text(max_size=60), st.just("sk-" + "x" * 45), json_values),
        "baseUrl": st.one_of(st.sampled_from(["http://127.0.0.1:9", "ftp://x", "http://u:p@h"]), json_values),
        "useAuthHeader": json_values,
        "surprise": json_values,
    },
)
params = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "config": st.one_of(config_like, json_values),
            "updates": st.one_of(config_like, json_values),
            "id": st.one_of(st.uuids().map(str), st.text(max_size=40), json_values),
            "expectedVersion": st.one_of(st.integers(), json_values),
            "unknownField": json_values,
        },
    ),
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.one_of(st.just("2.0"), st.just("2.0"), scalars),
        "method": st.one_of(st.sampled_from(CHANNELS), st.text(max_size=20), scalars),
        "params": params,
        "id": ids,
        "extra": json_values,
    },
)
envelopes = st.builds(
    lambda method, p, rid: {"jsonrpc": "2.0", "method": method, "params": p, "id": rid},
    st.sampled_from(CHANNELS),
    params,
    st.one_of(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), st.text(max_size=10)),
)
notifications = envelopes.map(lambda m: {k: v for k, v in m.items() if k != "id"})
messages = st.one_of(envelopes, notifications, requests, json_values)
batches = st.one_of(
    st.lists(messages, min_size=0, max_size=4),
    # around the 100-entry limit: one -32600 for the whole batch past it
    st.tuples(st.integers(min_value=98, max_value=103), envelopes).map(lambda t: [t[1]] * t[0]),
    st.lists(st.lists(requests, max_size=2), min_size=1, max_size=3),  # nested batches
)


def dumps(value: Any) -> str:
    """JSON text; NaN/Infinity come out as the bare words (not RFC 8259: must be -32700)."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


raw_texts = st.one_of(
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(
        [
            '{"jsonrpc":"2.0","method":"\\ud800","id":1}',
            '{"jsonrpc":"2.0","method":"llm-config:list","id":"\\udfff"}',
            '{"jsonrpc":"2.0","method":"llm-config:list","id":NaN}',
            '{"jsonrpc":"2.0","method":"llm-config:list","id":1e400}',
            '{"jsonrpc":"2.0","method":"llm-config:list","id":' + "9" * 5000 + "}",
            "",
            " ",
            "[]",
            "{}",
            "null",
            "\ufeff{}",
        ]
    ),
    st.text(max_size=200),
    messages.map(dumps).flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])),
)
MAX_MESSAGE_BYTES = 256 * 1024
"""The server's default inbound message limit: a frame past it is closed with 1009 (its own
test, ``test_over_size_message_closes_1009_and_the_server_keeps_serving``), which would end
the fuzzing connection, so generated frames stay within it (a batch of about 100 copies of
one large envelope can pass it)."""


def within_limit(frame: str | bytes) -> bool:
    data = frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")
    return len(data) <= MAX_MESSAGE_BYTES


frames = st.one_of(
    messages.map(dumps),
    batches.map(dumps),
    raw_texts,
    st.binary(max_size=200),
).filter(within_limit)

# ---- checking replies -----------------------------------------------------------------------


def check_response(response: Any) -> None:
    assert isinstance(response, dict), response
    assert response.get("jsonrpc") == "2.0", response
    assert "id" in response, response
    assert isinstance(response["id"], str | int | None), response
    assert ("result" in response) != ("error" in response), response
    if "error" in response:
        error = response["error"]
        assert set(error) <= {"code", "message", "data"}, error
        assert error["code"] in CODES, error  # -32603 would be an internal error: never here
        assert error["data"]["code"] == CODES[error["code"]], error
        assert isinstance(error["message"], str), error


def check_reply(frame: str | bytes, reply: str) -> bool:
    """Check one reply frame; True when it holds a successful answer to a write."""
    parsed = orjson.loads(reply)
    items = parsed if isinstance(parsed, list) else [parsed]
    assert items, "an empty batch reply must never be sent"
    wrote = False
    for item in items:
        check_response(item)
        result = item.get("result")
        wrote = wrote or (
            isinstance(result, dict) and ("apiKeyPreview" in result or result.get("deleted") is True)
        )
    del frame
    return wrote


class Session:
    """One fuzzing connection to a served bridge; counts frames, replies and codes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames = 0
        self.replies = 0
        self.silent = 0
        self.codes: dict[int, int] = {}

    async def revision(self) -> int:
        await self.ws.send(SENTINEL)
        while True:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if frame.get("id") == "sentinel":
                return int(frame["result"]["revision"])

    async def run(self, batch: list[str | bytes]) -> None:
        before = await self.revision()
        for frame in batch:
            await self.ws.send(frame)
            await self.ws.send(SENTINEL)
        wrote = False
        for frame in batch:
            replies: list[str] = []
            while True:
                text = await asyncio.wait_for(self.ws.recv(), 30)
                assert isinstance(text, str)
                if text.startswith('{"jsonrpc":"2.0","id":"sentinel"'):
                    break
                if text.startswith('{"jsonrpc":"2.0","method":"llm-config:changed"'):
                    continue  # a valid write's notification (to this connection too)
                replies.append(text)
            assert len(replies) <= 1, (frame, replies)
            for reply in replies:
                wrote = check_reply(frame, reply) or wrote
                parsed = orjson.loads(reply)
                for item in parsed if isinstance(parsed, list) else [parsed]:
                    if "error" in item:
                        code = item["error"]["code"]
                        self.codes[code] = self.codes.get(code, 0) + 1
            self.replies += len(replies)
            self.silent += not replies
            self.frames += 1
        after = await self.revision()
        assert wrote or after == before, "a rejected request changed the store"


def assert_no_error_logged(served: ServedBridge) -> None:
    text = served.log_text()
    assert "Traceback" not in text
    for line in text.splitlines():
        entry = json.loads(line)
        assert entry.get("level") not in {"error", "critical"}, entry
        assert "exception" not in entry, entry


@pytest.mark.timeout(RUN_TIMEOUT_S)
def test_fuzzed_frames_get_documented_codes_and_never_break_the_connection(tmp_path: Path) -> None:
    served = start_bridge_process(tmp_path / "data", "--log-level", "debug")
    loop = asyncio.new_event_loop()
    try:
        ws = loop.run_until_complete(
            connect(
                served.url,
                additional_headers={"Authorization": f"Bearer {served.token}"},
                max_size=REPLY_BUDGET_BYTES + 100 * TOO_LARGE_ANSWER_BYTES,
            )
        )
        session = Session(ws)

        @settings(
            max_examples=math.ceil(FUZZ_FRAMES / FRAMES_PER_EXAMPLE),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(frames, min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
        def fuzz(batch: list[str | bytes]) -> None:
            loop.run_until_complete(session.run(batch))

        fuzz()
        assert session.frames >= FUZZ_FRAMES
        assert session.codes.get(-32700, 0) > 0
        assert session.codes.get(-32600, 0) > 0
        assert session.codes.get(-32602, 0) > 0
        assert session.silent > 0  # notifications are never answered, even invalid ones
        loop.run_until_complete(ws.close())
        assert ws.close_code == 1000  # closed by us, never by the server
        assert served.stop() == 0
        assert_no_error_logged(served)
        record(
            "fuzz",
            frames=session.frames,
            replies=session.replies,
            unanswered=session.silent,
            codes={str(k): v for k, v in sorted(session.codes.items())},
        )
    finally:
        served.stop()
        loop.close()


async def test_over_size_message_closes_1009_and_the_server_keeps_serving(tmp_path: Path) -> None:
    served = start_bridge_process(tmp_path / "data")
    try:
        headers = {"Authorization": f"Bearer {served.token}"}
        async with connect(served.url, additional_headers=headers, max_size=None) as ws:
            big = '{"jsonrpc":"2.0","method":"llm-config:list","id":1,"params":{"x":"' + "a" * 262_144 + '"}}'
            await ws.send(big)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1009
        async with connect(served.url, additional_headers=headers) as ws:
            await ws.send(SENTINEL)
            assert re.match(r'\{"jsonrpc":"2.0","id":"sentinel","result"', await ws.recv())  # type: ignore[arg-type]
    finally:
        assert served.stop() == 0
