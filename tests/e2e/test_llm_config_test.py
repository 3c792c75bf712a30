"""End to end: ``llm-config:test`` over a real WebSocket to ``bridge serve``, against a fake provider."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from bridge import api
from bridge.client import BridgeClient
from bridge.errors import OutboundDisabledError
from tests.conftest import OPENAI_KEY, ServedBridge, openai_config, start_bridge_process
from tests.helpers.fake_provider import NO_PROXY_ENV, OPENAI_MODELS, FakeProvider

TIMEOUT = 15
CANARY = "canary-e2e-93b1f0c7d4a2e8b65f1c"
UNKNOWN_ID = "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"


class Wire:
    """Raw JSON-RPC frames on one connection; every received frame is kept."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[str] = []
        self._next_id = 0

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.ws.send(json.dumps(message))
        while True:  # notifications precede the response that caused them
            frame = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
            assert isinstance(frame, str)
            self.frames.append(frame)
            reply = orjson.loads(frame)
            if "method" not in reply:
                assert reply["id"] == self._next_id
                return reply  # type: ignore[no-any-return]


async def open_wire(served: ServedBridge) -> Wire:
    ws = await connect(served.url, additional_headers={"Authorization": f"Bearer {served.token}"})
    return Wire(ws)


def custom(name: str, base_url: str, key: str = CANARY, **extra: Any) -> dict[str, Any]:
    return {"customName": name, "provider": "custom", "apiKey": key, "baseUrl": base_url, **extra}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedBridge]:
    """``bridge serve`` that reaches the fake provider directly even if a proxy is configured."""
    with start_bridge_process(tmp_path / "data", env=NO_PROXY_ENV) as bridge:
        yield bridge


@pytest.fixture
def served_debug(tmp_path: Path) -> Iterator[ServedBridge]:
    """``bridge serve`` logging at debug level: the most it ever writes."""
    with start_bridge_process(tmp_path / "data", "--log-level", "debug", env=NO_PROXY_ENV) as bridge:
        yield bridge


async def test_saved_and_draft_configs_are_tested_and_the_key_stays_in(served_debug: ServedBridge) -> None:
    with FakeProvider("custom", CANARY) as provider, FakeProvider("custom", "another-key") as refusing:
        wire = await open_wire(served_debug)
        async with wire.ws:
            created = await wire.call("llm-config:create", {"config": custom("Local", provider.base_url)})
            config_id = created["result"]["id"]

            saved = await wire.call("llm-config:test", {"id": config_id, "timeoutMs": 5000})
            result = saved["result"]
            assert set(result) == {"ok", "latencyMs", "models", "error"}
            assert (result["ok"], result["models"], result["error"]) == (True, OPENAI_MODELS, None)
            assert isinstance(result["latencyMs"], int)
            assert result["latencyMs"] >= 0

            refused = await wire.call("llm-config:test", {"config": custom("Draft", refusing.base_url)})
            assert refused["result"]["ok"] is False
            assert refused["result"]["models"] is None
            assert refused["result"]["error"] == {
                "kind": "auth",
                "status": 401,
                "message": "The provider refused the API key",
            }

            listed = await wire.call("llm-config:list")
            assert [view["customName"] for view in listed["result"]] == ["Local"]  # the draft was not saved
            hello = await wire.call("bridge:hello")
            assert hello["result"]["revision"] == 1
            assert "llm-config:test" in hello["result"]["channels"]
        assert provider.requests[0].headers["authorization"] == f"Bearer {CANARY}"
        assert refusing.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    served_debug.stop()
    log = served_debug.log_text()
    assert log.count('"llm_config_tested"') == 2
    # Nothing of the provider's answer (headers, URLs) is logged by the HTTP libraries.
    assert '"logger": "httpcore' not in log
    assert '"logger": "httpx"' not in log
    for frame in wire.frames:
        assert CANARY not in frame
    assert CANARY not in served_debug.log_text()


async def test_stalled_providers_are_given_up_by_each_calls_timeout_ms_and_the_connection_stays_served(
    served: ServedBridge,
) -> None:
    # No clock in the test: the server's own bounds order the answers. A test with the
    # default bound (10 s) stalls first; then one bounded by timeoutMs 1000 and, after it,
    # one by 300: the 300 one is given up first, the 1000 one next, the default one not at all.
    timed_out = {"kind": "timeout", "message": "The provider did not answer in time"}
    with (
        FakeProvider("custom", CANARY, stall=True) as unbounded,
        FakeProvider("custom", CANARY, stall=True) as bounded,
        FakeProvider("custom", CANARY, stall=True) as sooner,
    ):
        wire = await open_wire(served)
        async with wire.ws as ws:
            await ws.send(
                frame("llm-config:test", {"config": custom("Default", unbounded.base_url)}, "default")
            )
            assert await asyncio.to_thread(unbounded.received.wait, TIMEOUT)
            for request_id, provider, timeout_ms in (("1000", bounded, 1000), ("300", sooner, 300)):
                params = {"config": custom("Slow", provider.base_url), "timeoutMs": timeout_ms}
                await ws.send(frame("llm-config:test", params, request_id))
            replies = [await recv(ws), await recv(ws)]
            assert [reply["id"] for reply in replies] == ["300", "1000"]
            for reply, timeout_ms in zip(replies, (300, 1000), strict=True):
                result = reply["result"]
                assert (result["ok"], result["models"], result["error"]) == (False, None, timed_out)
                # Not given up early: the reported latency (whole ms, to the give-up) reaches
                # the bound, less what uvloop's millisecond timer clock may round away.
                assert result["latencyMs"] >= timeout_ms - 2
            assert await asyncio.to_thread(bounded.dropped.wait, TIMEOUT)  # the request was aborted
            # The connection is still served while the default-bound test stalls on.
            await ws.send(frame("llm-config:read", {"id": UNKNOWN_ID}, "read"))
            assert await recv(ws) == {"jsonrpc": "2.0", "id": "read", "result": None}
            assert not unbounded.dropped.is_set()
            await ws.send(frame("$/cancelRequest", {"id": "default"}))
            cancelled = await recv(ws)
            assert (cancelled["id"], cancelled["error"]["code"]) == ("default", -32800)
        assert await asyncio.to_thread(unbounded.dropped.wait, TIMEOUT)


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({}, "id", "REQUIRED"),
        ({"timeoutMs": 1000}, "id", "REQUIRED"),
        ({"id": UNKNOWN_ID, "config": openai_config()}, "config", "INVALID_FORMAT"),
        ({"id": None}, "id", "INVALID_FORMAT"),
        ({"id": UNKNOWN_ID, "timeoutMs": 60_001}, "timeoutMs", "INVALID_FORMAT"),
        ({"id": UNKNOWN_ID, "timeoutMs": 0}, "timeoutMs", "INVALID_FORMAT"),
        ({"id": UNKNOWN_ID, "timeoutMs": 1.5}, "timeoutMs", "INVALID_FORMAT"),
        ({"config": {**openai_config(), "apiKey": "sk-short"}}, "config.apiKey", "API_KEY_FORMAT"),
        (
            {"config": {"customName": "x", "provider": "custom", "apiKey": "k"}},
            "config.baseUrl",
            "PROVIDER_SPECIFIC",
        ),
        ({"id": UNKNOWN_ID, "extra": 1}, "extra", "UNKNOWN_FIELD"),
    ],
)
async def test_bad_params_are_validation_errors(
    served: ServedBridge, params: dict[str, Any], field: str, code: str
) -> None:
    wire = await open_wire(served)
    async with wire.ws:
        reply = await wire.call("llm-config:test", params)
    assert reply["error"]["code"] == -32602
    assert [(e["field"], e["code"]) for e in reply["error"]["data"]["errors"]] == [(field, code)]
    assert OPENAI_KEY not in json.dumps(reply)


async def test_unknown_id_is_config_not_found(served: ServedBridge) -> None:
    wire = await open_wire(served)
    async with wire.ws:
        reply = await wire.call("llm-config:test", {"id": UNKNOWN_ID})
    assert reply["error"]["code"] == 4004
    assert reply["error"]["data"]["code"] == "CONFIG_NOT_FOUND"


async def test_no_outbound_answers_outbound_disabled_and_calls_nobody(tmp_path: Path) -> None:
    with (
        start_bridge_process(tmp_path / "data", "--no-outbound", env=NO_PROXY_ENV) as bridge,
        FakeProvider("custom", CANARY) as provider,
    ):
        wire = await open_wire(bridge)
        async with wire.ws:
            draft = await wire.call("llm-config:test", {"config": custom("Draft", provider.base_url)})
            created = await wire.call("llm-config:create", {"config": custom("Saved", provider.base_url)})
            saved = await wire.call("llm-config:test", {"id": created["result"]["id"]})
        async with BridgeClient(bridge.url, bridge.token) as client:
            with pytest.raises(OutboundDisabledError):
                await client.invoke("llm-config:test", {"config": custom("Draft", provider.base_url)})
        assert provider.requests == []
    for reply in (draft, saved):
        assert reply["error"] == {
            "code": 4003,
            "message": "Outbound calls are disabled on this server",
            "data": {"code": "OUTBOUND_DISABLED", "name": "OutboundDisabledError"},
        }


async def test_every_by_name_channel_accepts_a_work_done_token(served: ServedBridge) -> None:
    with FakeProvider("custom", CANARY) as provider:
        wire = await open_wire(served)
        async with wire.ws:
            created = await wire.call(
                "llm-config:create", {"config": openai_config(), "workDoneToken": "create-1"}
            )
            config_id = created["result"]["id"]
            calls: dict[str, dict[str, Any]] = {
                "llm-config:read": {"id": config_id},
                "llm-config:update": {"id": config_id, "updates": {"customName": "Renamed"}},
                "llm-config:list": {},
                "llm-config:snapshot": {},
                "llm-config:initialize": {},
                "llm-config:refresh-cache": {},
                "llm-config:test": {"config": custom("Draft", provider.base_url)},
                "bridge:hello": {},
                "rpc.discover": {},
                "llm-config:delete": {"id": config_id},
            }
            by_name = {spec.name for spec in api.BUILTIN_CHANNELS} - {"rpc.on", "rpc.off"}
            assert set(calls) | {"llm-config:create"} == by_name
            for index, (method, params) in enumerate(calls.items()):
                token: str | int = index if index % 2 else f"token-{index}"
                reply = await wire.call(method, {**params, "workDoneToken": token})
                assert "error" not in reply, (method, reply)
            assert (await wire.call("llm-config:list"))["result"] == []


@pytest.mark.parametrize("token", [None, True, 1.5, [], {}, "x" * 257, 2**53])
async def test_a_malformed_work_done_token_is_a_validation_error(served: ServedBridge, token: Any) -> None:
    wire = await open_wire(served)
    async with wire.ws:
        reply = await wire.call("llm-config:list", {"workDoneToken": token})
    assert reply["error"]["code"] == -32602
    assert [(e["field"], e["code"]) for e in reply["error"]["data"]["errors"]] == [
        ("workDoneToken", "INVALID_FORMAT")
    ]


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(frame, str)
    assert CANARY not in frame
    return orjson.loads(frame)  # type: ignore[no-any-return]


def frame(method: str, params: dict[str, Any], request_id: Any = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return json.dumps(message)


async def test_cancel_request_during_a_stalled_test_answers_32800_and_aborts_the_request(
    served: ServedBridge,
) -> None:
    with FakeProvider("custom", CANARY, stall=True) as provider:
        wire = await open_wire(served)
        async with wire.ws as ws:
            await ws.send(
                frame(
                    "llm-config:test", {"config": custom("Slow", provider.base_url), "timeoutMs": 30_000}, 1
                )
            )
            # Another request on the same connection is answered while the test stalls
            # (its answer is the next frame; the test is still running after it).
            await ws.send(frame("llm-config:read", {"id": UNKNOWN_ID}, 2))
            assert await recv(ws) == {"jsonrpc": "2.0", "id": 2, "result": None}
            assert await asyncio.to_thread(provider.received.wait, TIMEOUT)
            assert not provider.dropped.is_set()
            await ws.send(frame("$/cancelRequest", {"id": 1}))
            reply = await recv(ws)
            assert reply["id"] == 1
            assert reply["error"]["code"] == -32800
            # Cancelled, not given up: a timeout would be a result with kind "timeout".
            assert reply["error"]["data"]["code"] == "REQUEST_CANCELLED"
        # The provider sees the outbound request dropped.
        assert await asyncio.to_thread(provider.dropped.wait, TIMEOUT)
    served.stop()
    assert '"llm_config_test_cancelled"' in served.log_text()
    assert CANARY not in served.log_text()


async def test_a_test_with_a_work_done_token_reports_progress_on_its_connection(served: ServedBridge) -> None:
    with FakeProvider("custom", CANARY) as provider:
        wire = await open_wire(served)
        async with wire.ws as ws:
            await ws.send(
                frame(
                    "llm-config:test",
                    {"config": custom("Draft", provider.base_url), "workDoneToken": "p1"},
                    1,
                )
            )
            frames = []
            while "id" not in (message := await recv(ws)):
                frames.append(message)
        assert message["result"]["ok"] is True
        assert [f["method"] for f in frames] == ["$/progress"] * 3
        assert [f["params"] for f in frames] == [
            {"token": "p1", "value": {"kind": "begin", "message": "connecting", "percentage": 0}},
            {"token": "p1", "value": {"kind": "report", "message": "listing", "percentage": 50}},
            {"token": "p1", "value": {"kind": "end", "message": "ok"}},
        ]


async def test_at_most_four_tests_run_at_once_on_a_connection(served: ServedBridge) -> None:
    with FakeProvider("custom", CANARY, stall=True) as provider:
        wire = await open_wire(served)
        async with wire.ws as ws:
            for n in range(1, 6):
                await ws.send(
                    frame(
                        "llm-config:test",
                        {"config": custom("Slow", provider.base_url), "timeoutMs": 30_000},
                        n,
                    )
                )
            refused = await recv(ws)
            assert refused["id"] == 5
            assert refused["error"]["code"] == 4029
            assert refused["error"]["data"]["context"] == {
                "channel": "llm-config:test",
                "maxRunning": api.MAX_RUNNING_TESTS_PER_CONNECTION,
            }
            for n in range(1, 5):
                await ws.send(frame("$/cancelRequest", {"id": n}))
            cancelled = [await recv(ws) for _ in range(4)]
            assert sorted(reply["id"] for reply in cancelled) == [1, 2, 3, 4]
            assert {reply["error"]["code"] for reply in cancelled} == {-32800}


async def test_shutdown_answers_a_stalled_test_with_32800_without_waiting_for_the_bound(
    tmp_path: Path,
) -> None:
    # A bound longer than every wait of the test: the answer and the exit must not wait for it.
    with start_bridge_process(tmp_path / "data", "--shutdown-timeout", "60", env=NO_PROXY_ENV) as bridge:
        with FakeProvider("custom", CANARY, stall=True) as provider:
            wire = await open_wire(bridge)
            async with wire.ws as ws:
                await ws.send(
                    frame(
                        "llm-config:test",
                        {"config": custom("Slow", provider.base_url), "timeoutMs": 30_000},
                        1,
                    )
                )
                assert await asyncio.to_thread(provider.received.wait, TIMEOUT)
                bridge.process.send_signal(signal.SIGTERM)
                reply = await recv(ws)
                assert (reply["id"], reply["error"]["code"]) == (1, -32800)
            assert await asyncio.to_thread(provider.dropped.wait, TIMEOUT)
        assert await asyncio.to_thread(bridge.process.wait, TIMEOUT) == 0


async def test_python_client_routes_progress_to_on_progress(served: ServedBridge) -> None:
    with FakeProvider("custom", CANARY) as provider:
        async with BridgeClient(served.url, served.token) as client:
            values: list[dict[str, Any]] = []
            result = await client.invoke(
                "llm-config:test", {"config": custom("Draft", provider.base_url)}, on_progress=values.append
            )
            assert result["ok"] is True
            assert values == [
                {"kind": "begin", "message": "connecting", "percentage": 0},
                {"kind": "report", "message": "listing", "percentage": 50},
                {"kind": "end", "message": "ok"},
            ]
            # A channel without progress never calls it.
            assert await client.invoke("llm-config:list", on_progress=values.append) == []
            assert len(values) == 3


async def test_cancelling_a_python_client_call_sends_cancel_request_and_aborts_the_test(
    served: ServedBridge,
) -> None:
    with FakeProvider("custom", CANARY, stall=True) as provider:
        async with BridgeClient(served.url, served.token) as client:
            call = asyncio.create_task(
                client.invoke(
                    "llm-config:test", {"config": custom("Slow", provider.base_url), "timeoutMs": 30_000}
                )
            )
            assert await asyncio.to_thread(provider.received.wait, TIMEOUT)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # The server aborted the outbound request: the provider sees the drop (long
            # before the call's own 30 s bound: the wait is bounded by TIMEOUT).
            assert await asyncio.to_thread(provider.dropped.wait, TIMEOUT)
            assert await client.invoke("llm-config:read", {"id": UNKNOWN_ID}) is None
    served.stop()
    assert '"llm_config_test_cancelled"' in served.log_text()
