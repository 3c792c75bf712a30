"""``bridge:shutdown``: hosts that cannot close the sidecar's stdin stop it over the wire (DESIGN §7).

Served only with ``--exit-with-parent`` (sidecar mode) or ``--allow-shutdown``; it stops
the server as SIGTERM does: the caller gets its response, every connection is closed with
1001, the connection file is removed and the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServedBridge, serve_command, start_bridge_process

TIMEOUT = 15


async def call(ws: ClientConnection, request_id: int, method: str) -> dict[str, Any]:
    await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method}).decode())
    reply: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return reply


def dial(url: str, token: str) -> Any:
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, compression=None)


async def wait_closed(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    return ws.close_code


async def test_allow_shutdown_stops_the_server_gracefully_for_any_connection(tmp_path: Path) -> None:
    served = start_bridge_process(tmp_path / "data", "--allow-shutdown")
    try:
        async with dial(served.url, served.token) as bystander, dial(served.url, served.token) as ws:
            hello = (await call(ws, 1, "bridge:hello"))["result"]
            assert "bridge:shutdown" in hello["channels"]
            reply = await call(ws, 2, "bridge:shutdown")
            assert reply == {"jsonrpc": "2.0", "id": 2, "result": {"shuttingDown": True}}
            assert await wait_closed(ws) == 1001
            assert await wait_closed(bystander) == 1001
        assert await asyncio.to_thread(served.process.wait, TIMEOUT) == 0
        assert not (served.data_dir / "connection.json").exists()
        assert "shutdown_requested" in served.log_text()
    finally:
        served.stop()


async def test_a_stock_server_does_not_serve_it(served: ServedBridge) -> None:
    async with dial(served.url, served.token) as ws:
        hello = (await call(ws, 1, "bridge:hello"))["result"]
        assert "bridge:shutdown" not in hello["channels"]
        reply = await call(ws, 2, "bridge:shutdown")
        assert reply["error"]["code"] == -32601
        assert (await call(ws, 3, "llm-config:list"))["result"] == []  # still serving
    assert served.process.poll() is None


async def test_sidecar_mode_serves_it_and_the_document_does_not_change(tmp_path: Path) -> None:
    stock = start_bridge_process(tmp_path / "stock")
    try:
        async with dial(stock.url, stock.token) as ws:
            stock_hash = (await call(ws, 1, "bridge:hello"))["result"]["schemaHash"]
            stock_document = (await call(ws, 2, "rpc.discover"))["result"]
    finally:
        assert stock.stop() == 0

    process = await asyncio.create_subprocess_exec(
        *serve_command(tmp_path / "sidecar", "--port", "0", "--exit-with-parent"),
        stdin=asyncio.subprocess.PIPE,  # kept open: only bridge:shutdown stops it
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), TIMEOUT))
        async with dial(ready["url"], ready["token"]) as ws:
            hello = (await call(ws, 1, "bridge:hello"))["result"]
            document = (await call(ws, 2, "rpc.discover"))["result"]
            assert (await call(ws, 3, "bridge:shutdown"))["result"] == {"shuttingDown": True}
            assert await wait_closed(ws) == 1001
        _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
        # The stdin watcher once blocked inside sys.stdin's buffer: the interpreter then
        # aborted at exit (-6) when something other than stdin EOF stopped the server.
        assert process.returncode == 0, stderr.decode()[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "bridge:shutdown" in hello["channels"]
    assert hello["schemaHash"] == stock_hash
    assert document == stock_document
    assert "bridge:shutdown" not in {method["name"] for method in document["methods"]}


def test_sigterm_in_sidecar_mode_exits_0_while_stdin_is_still_open(tmp_path: Path) -> None:
    process = subprocess.Popen(
        serve_command(tmp_path / "data", "--port", "0", "--exit-with-parent"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["event"] == "ready"
        process.terminate()
        _, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr.decode()[-2000:]
