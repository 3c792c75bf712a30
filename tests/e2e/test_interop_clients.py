"""Third-party JSON-RPC clients against a real ``bridge serve``.

Node clients (npm ``rpc-websockets``, ``@open-rpc/client-js`` and ``vscode-jsonrpc``, from
package-lock.json)
run as subprocesses of the scripts under ``tests/js/interop/`` and print one JSON object;
Python ``jsonrpcclient`` builds the requests and parses the responses sent over
``websockets``. Each test asserts on what the client library itself produced.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
from jsonrpcclient import Error, Ok, notification, parse, request
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY, ServedBridge, start_bridge_process
from tests.helpers.fake_provider import NO_PROXY_ENV, OPENAI_MODELS, FakeProvider

ROOT = Path(__file__).resolve().parents[2]
INTEROP = ROOT / "tests" / "js" / "interop"
TIMEOUT = 10
VSCODE_KEY = "canary-interop-5e0c2b7a9d41f368"


def run_node_client(script: str, served: ServedBridge) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node (20+) is required: make check runs the Node interop clients"
    assert (ROOT / "node_modules" / "rpc-websockets").is_dir(), "run `npm ci` (make check does)"
    done = subprocess.run(
        [node, str(INTEROP / script), served.url, served.token],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def assert_no_secret_in_log(served: ServedBridge, *secrets: str) -> None:
    log = served.log_text()
    for secret in (served.token, *secrets):
        assert secret not in log


def test_rpc_websockets_client_calls_errors_and_subscribe(served: ServedBridge) -> None:
    out = run_node_client("rpc-websockets-client.mjs", served)

    assert out["hello"]["protocolVersion"] == 1
    assert {"rpc.on", "rpc.off"} <= set(out["hello"]["channels"])
    assert out["created"]["customName"] == "From rpc-websockets"
    assert out["created"]["apiKeyPreview"] == f"sk-...{OPENAI_KEY[-3:]}"
    assert "apiKey" not in out["created"]
    # Errors reject with the plain {code, message, data} of the wire.
    assert out["validationError"]["code"] == -32602
    assert out["validationError"]["data"]["code"] == "VALIDATION_ERROR"
    assert [(e["field"], e["code"]) for e in out["validationError"]["data"]["errors"]] == [
        ("config.customName", "INVALID_LENGTH"),
        ("config.provider", "INVALID_ENUM"),
    ]
    assert out["unknownChannel"] == {
        "code": -32601,
        "message": "Method not found",
        "data": {
            "code": "METHOD_NOT_FOUND",
            "name": "MethodNotFoundError",
            "context": {"method": "llm-config:nope"},
        },
    }
    # subscribe() goes through rpc.on and gets rpc-websockets' own answers.
    assert out["subscribed"] == {"llm-config:changed": "ok"}
    assert out["subscribedUnknown"] == {"llm-config:nope": "provided event invalid"}
    assert out["unsubscribed"] == {"llm-config:changed": "ok"}
    # A standard notification arrives as an event named after its method, before the response.
    assert out["event"] == {
        "type": "updated",
        "id": out["created"]["id"],
        "revision": out["updated"]["version"],
        "config": out["updated"],
    }
    assert out["order"] == ["event", "response"]
    assert_no_secret_in_log(served, OPENAI_KEY)


def test_open_rpc_client_js_calls_errors_and_notifications(served: ServedBridge) -> None:
    out = run_node_client("open-rpc-client.mjs", served)

    assert out["discover"]["openrpc"].startswith("1.3")
    committed = json.loads((ROOT / "schemas" / "openrpc.json").read_text(encoding="utf-8"))
    assert out["discover"] == committed
    # client-js sends `params: []` when a call has none: channels that take none accept it.
    assert out["withoutParams"] == committed
    assert out["arrayForByName"]["code"] == -32602
    assert out["arrayForByName"]["data"]["errors"] == [
        {"field": "params", "code": "INVALID_FORMAT", "message": "must be an object (by-name params)"}
    ]
    assert out["created"]["apiKeyPreview"] == f"sk-...{ANTHROPIC_KEY[-3:]}"
    assert out["read"] == out["created"]
    assert out["conflict"]["code"] == 4012
    assert out["conflict"]["data"]["code"] == "VERSION_CONFLICT"
    assert out["conflict"]["data"]["context"] == {
        "id": out["created"]["id"],
        "expectedVersion": 7,
        "actualVersion": 1,
    }
    assert out["notifications"] == [
        {
            "jsonrpc": "2.0",
            "method": "llm-config:changed",
            "params": {
                "type": "created",
                "id": out["created"]["id"],
                "revision": 1,
                "config": out["created"],
            },
        }
    ]
    assert_no_secret_in_log(served, ANTHROPIC_KEY)


async def exchange(ws: ClientConnection, message: dict[str, Any]) -> tuple[Ok | Error, list[Any]]:
    """Send one jsonrpcclient request; return its parsed response and the notifications before it."""
    await ws.send(json.dumps(message))
    notifications: list[Any] = []
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if "method" in frame:
            notifications.append(frame)
            continue
        parsed = parse(frame)
        assert isinstance(parsed, Ok | Error), parsed  # a single response, not a batch
        return parsed, notifications


async def test_jsonrpcclient_requests_and_parsed_responses(served: ServedBridge) -> None:
    async with connect(
        served.url, additional_headers={"Authorization": f"Bearer {served.token}"}, compression=None
    ) as ws:
        hello, _ = await exchange(ws, request("bridge:hello"))
        assert isinstance(hello, Ok)
        assert hello.result["protocolVersion"] == 1

        config = {"customName": "From jsonrpcclient", "provider": "google", "apiKey": GOOGLE_KEY}
        created, seen = await exchange(ws, request("llm-config:create", params={"config": config}))
        assert isinstance(created, Ok)
        assert created.result["apiKeyPreview"] == f"{GOOGLE_KEY[:3]}...{GOOGLE_KEY[-3:]}"
        assert [n["params"]["type"] for n in seen] == ["created"]

        duplicate, _ = await exchange(
            ws,
            request("llm-config:create", params={"config": {**config, "customName": "FROM JSONRPCCLIENT"}}),
        )
        assert isinstance(duplicate, Error)
        assert (duplicate.code, duplicate.data["code"]) == (4009, "DUPLICATE_CONFIG_NAME")

        bad_id, _ = await exchange(ws, request("llm-config:read", params={"id": "not-a-uuid"}))
        assert isinstance(bad_id, Error)
        assert bad_id.code == -32602
        assert bad_id.data["errors"] == [
            {"field": "id", "code": "INVALID_FORMAT", "message": "must be a UUID"}
        ]

        # A notification from jsonrpcclient is never answered; the next request still is.
        await ws.send(json.dumps(notification("llm-config:list")))
        listed, _ = await exchange(ws, request("llm-config:list", params={}))
        assert isinstance(listed, Ok)
        assert [v["customName"] for v in listed.result] == ["From jsonrpcclient"]

        subscribed, _ = await exchange(ws, request("rpc.on", params=("llm-config:changed", "nope")))
        assert isinstance(subscribed, Ok)
        assert subscribed.result == {"llm-config:changed": "ok", "nope": "provided event invalid"}
    assert_no_secret_in_log(served, GOOGLE_KEY)


async def test_vscode_jsonrpc_call_cancellation_and_progress(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node (20+) is required: make check runs the Node interop clients"
    assert (ROOT / "node_modules" / "vscode-jsonrpc").is_dir(), "run `npm ci` (make check does)"
    served = start_bridge_process(tmp_path / "data", env=NO_PROXY_ENV)
    try:
        with (
            FakeProvider("custom", VSCODE_KEY) as provider,
            FakeProvider("custom", VSCODE_KEY, stall=True) as stalled,
        ):
            process = await asyncio.create_subprocess_exec(
                node,
                str(INTEROP / "vscode-jsonrpc-client.mjs"),
                served.url,
                served.token,
                provider.base_url,
                stalled.base_url,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert process.stdin is not None
            try:
                assert await asyncio.to_thread(stalled.received.wait, 30)
                assert not stalled.dropped.is_set()
                process.stdin.write(b"cancel\n")
                await process.stdin.drain()
                stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            assert process.returncode == 0, stderr.decode()
            # The server aborted the outbound request of the cancelled test.
            assert await asyncio.to_thread(stalled.dropped.wait, TIMEOUT)
    finally:
        served.stop()
    out = json.loads(stdout)
    assert out["hello"]["protocolVersion"] == 1
    assert (out["tested"]["ok"], out["tested"]["models"]) == (True, OPENAI_MODELS)
    assert out["progress"] == [
        {"kind": "begin", "message": "connecting", "percentage": 0},
        {"kind": "report", "message": "listing", "percentage": 50},
        {"kind": "end", "message": "ok"},
    ]
    assert out["readWhileStalled"] == []
    assert out["cancelled"]["error"]["code"] == -32800
    assert out["cancelled"]["error"]["data"] == {"code": "REQUEST_CANCELLED", "name": "RequestCancelledError"}
    assert out["cancelledAfterMs"] < 25_000  # long before the 30 s timeoutMs
    assert VSCODE_KEY not in stdout.decode()
    assert VSCODE_KEY not in served.log_text()
