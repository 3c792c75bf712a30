"""Sidecar lifecycle and the resilient client, against real ``bridge serve`` subprocesses."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.client import BridgeClient, ConnectionInfo, read_connection_file
from bridge.errors import AuthenticationError, BridgeError, ConnectionLostError, ServiceUnavailableError
from tests.conftest import ServedBridge, openai_config, serve_command, start_bridge_process
from tests.helpers.templates import start_sidecar, stop_sidecar

TIMEOUT = 15


def write_token(path: Path, token: str) -> Path:
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)  # a secret: bridge refuses one others can read
    return path


async def test_restart_on_same_port_reconnects_resyncs_and_replays_missed_changes(tmp_path: Path) -> None:  # noqa: PLR0915 - one scenario, told in order
    data = tmp_path / "data"
    token_file = write_token(tmp_path / "token", "T" * 43)
    first = start_bridge_process(data, "--token-file", str(token_file))
    port = first.port
    events: list[dict[str, Any]] = []
    client = BridgeClient.from_connection_file(
        data / "connection.json", reconnect=True, backoff_initial_s=0.05, backoff_max_s=0.3
    )
    stale_calls = 0

    def stale_provider() -> ConnectionInfo:
        nonlocal stale_calls
        stale_calls += 1
        return ConnectionInfo(first.url, first.token)

    stale = BridgeClient(provider=stale_provider, reconnect=True, backoff_initial_s=0.05, backoff_max_s=0.3)
    await client.connect()
    await stale.connect()
    try:
        client.on("llm-config:changed", events.append)
        kept = await client.create_config(openai_config("Kept"))
        edited = await client.create_config(openai_config("Edited"))
        gone = await client.create_config(openai_config("Gone"))
        reader = client._reader
        assert reader is not None
        assert await asyncio.to_thread(first.stop) == 0
        await asyncio.wait_for(reader, TIMEOUT)  # the client saw the connection end
        assert client.close_code == 1001

        # Changes made while the clients are away, through another server on port 0.
        other = start_bridge_process(data, "--connection-file", str(tmp_path / "other.json"))
        try:
            async with BridgeClient(other.url, other.token) as writer:
                await writer.update_config(edited.id, {"customName": "Edited twice"})
                await writer.delete_config(gone.id)
                born = await writer.create_config(openai_config("Born"))
        finally:
            assert await asyncio.to_thread(other.stop) == 0

        events.clear()
        write_token(token_file, "U" * 43)  # the restarted server has a new token
        again = start_bridge_process(data, "--token-file", str(token_file), "--port", str(port))
        try:
            assert again.port == port
            await client.wait_connected(TIMEOUT)
            summary = sorted((e["type"], e["id"]) for e in events)
            assert summary == sorted([("updated", edited.id), ("deleted", gone.id), ("created", born.id)])
            assert {e["revision"] for e in events} == {6}
            assert [v.id for v in await client.list_configs()] == [kept.id, edited.id, born.id]

            # Live events continue after the resync, never duplicated.
            events.clear()
            await client.update_config(kept.id, {"customName": "Kept!"})
            assert [(e["type"], e["revision"]) for e in events] == [("updated", 7)]

            # The client with a stale token gives up with an auth error after ≤ 2 attempts.
            with pytest.raises(AuthenticationError):
                await stale.wait_connected(TIMEOUT)
            with pytest.raises(AuthenticationError):
                await stale.list_configs()
            refusals = [line for line in again.log_text().splitlines() if "handshake_refused" in line]
            assert len(refusals) == 2
            assert all('"status": 401' in line for line in refusals)
            assert stale_calls == stale.attempts  # the provider was asked before every attempt
        finally:
            assert await asyncio.to_thread(again.stop) == 0
    finally:
        await client.close()
        await stale.close()
    assert first.token not in first.log_text() + again.log_text()
    assert "U" * 43 not in again.log_text()


async def test_pending_call_fails_with_connection_lost_and_is_not_retried(served: ServedBridge) -> None:
    client = BridgeClient(served.url, served.token, reconnect=True, backoff_initial_s=0.05)
    await client.connect()
    try:
        ws = client._ws
        assert ws is not None
        call = asyncio.ensure_future(client.invoke("llm-config:list"))
        ws.transport.abort()  # fault injection: the socket drops under the call
        with pytest.raises((ConnectionLostError, BridgeError)):
            await asyncio.wait_for(call, TIMEOUT)
        await client.wait_connected(TIMEOUT)
        assert await client.list_configs() == []
    finally:
        await client.close()


async def test_sigterm_under_write_load_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    served = start_bridge_process(data)
    acknowledged: list[str] = []
    outcomes: list[str] = []
    started = asyncio.Event()

    async def writer(n: int) -> int | None:
        async with BridgeClient(served.url, served.token) as client:
            i = 0
            while True:
                try:
                    view = await client.create_config(openai_config(f"w{n}-{i}"))
                except ServiceUnavailableError:
                    outcomes.append("5003")
                except ConnectionLostError:
                    outcomes.append("lost")
                    return client.close_code
                else:
                    acknowledged.append(view.id)
                    if len(acknowledged) >= 30:
                        started.set()
                i += 1

    tasks = [asyncio.ensure_future(writer(n)) for n in range(3)]
    await asyncio.wait_for(started.wait(), TIMEOUT)
    served.process.send_signal(signal.SIGTERM)
    codes = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert served.stop() == 0  # already exiting: waits, then closes the pipe
    assert codes == [1001, 1001, 1001]
    assert not (data / "connection.json").exists()

    again = start_bridge_process(data)
    try:
        async with BridgeClient(again.url, again.token) as client:
            stored = {v.id for v in await client.list_configs()}
        assert set(acknowledged) <= stored
    finally:
        assert again.stop() == 0


def run_serve(data_dir: Path, *flags: str) -> tuple[int, list[dict[str, Any]]]:
    """``bridge serve`` that is expected to stop at start-up: exit code and stdout lines."""
    done = subprocess.run(
        serve_command(data_dir, *flags),
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.decode().splitlines()]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--port", "99999"), "invalid --port: must be between 0 and 65535 (got 99999)"),
        (("--port", "-1"), "invalid --port: must be between 0 and 65535 (got -1)"),
        (("--max-message-bytes", "0"), "invalid --max-message-bytes: must be at least 1 (got 0)"),
        (("--max-batch", "0"), "invalid --max-batch: must be at least 1 (got 0)"),
        (("--max-connections", "0"), "invalid --max-connections: must be at least 1 (got 0)"),
        (("--outbound-cap-bytes", "100"), "invalid --outbound-cap-bytes: must be at least 1024 (got 100)"),
        (("--rate-limit", "0"), "invalid --rate-limit: must be above 0 (or off) (got 0.0)"),
        (("--shutdown-timeout", "-1"), "invalid --shutdown-timeout: must be 0 or more (got -1.0)"),
        (
            ("--allow-origin", "http://localhost:*", "--allow-origin", "http://*:*"),
            (
                "invalid --allow-origin: must be an exact origin or an explicit port wildcard such as "
                "http://localhost:* (never a host wildcard, never null) (got 'http://*:*')"
            ),
        ),
    ],
)
def test_out_of_range_flags_stop_start_up_with_one_json_line(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    code, lines = run_serve(tmp_path / "d", *flags)
    assert code == 2
    assert lines == [{"event": "error", "error": "STARTUP_FAILED", "message": message}]


def test_a_data_dir_that_cannot_be_one_is_named_in_the_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, lines = run_serve(blocker / "data")
    assert code == 2
    assert lines[0]["error"] == "STARTUP_FAILED"
    assert str(blocker) in lines[0]["message"]
    assert "NotADirectoryError" in lines[0]["message"] or "FileExistsError" in lines[0]["message"]


def test_busy_port_prints_one_json_error_line_and_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        code, lines = run_serve(tmp_path / "d", "--port", str(holder.getsockname()[1]))
    assert code != 0
    assert len(lines) == 1
    assert lines[0]["event"] == "error"
    assert lines[0]["error"] == "ADDRESS_UNAVAILABLE"


def test_exit_with_parent_shuts_down_on_stdin_eof(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "serve",
            "--data-dir",
            str(data),
            "--secret-backend",
            "file",
            "--port",
            "0",
            "--exit-with-parent",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    assert json.loads(process.stdout.readline())["event"] == "ready"
    assert (data / "connection.json").exists()
    process.stdin.close()
    assert process.wait(timeout=TIMEOUT) == 0
    process.stdout.close()
    assert not (data / "connection.json").exists()


async def test_unix_socket_is_0600_and_serves(tmp_path: Path) -> None:
    sock = tmp_path / "b.sock"
    served = start_bridge_process(tmp_path / "data", "--uds", str(sock))
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        info = read_connection_file(tmp_path / "data" / "connection.json")
        assert info.socket == str(sock)
        async with BridgeClient(info.url, info.token, unix_socket=info.socket) as client:
            assert (await client.hello()).protocol_version == 1
    finally:
        assert served.stop() == 0
    assert not sock.exists()


def bridge_call(data: Path, *args: str) -> tuple[int, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "call", *args, "--data-dir", str(data)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_bridge_call_prints_results_and_errors_as_json(served: ServedBridge) -> None:
    code, out = bridge_call(served.data_dir, "llm-config:create", json.dumps({"config": openai_config()}))
    assert code == 0
    assert out["result"]["customName"] == "My OpenAI"
    code, out = bridge_call(served.data_dir, "llm-config:list")
    assert (code, [v["customName"] for v in out["result"]]) == (0, ["My OpenAI"])
    code, out = bridge_call(served.data_dir, "llm-config:create", json.dumps({"config": openai_config()}))
    assert (code, out["error"]["code"], out["error"]["data"]["code"]) == (1, 4009, "DUPLICATE_CONFIG_NAME")
    code, out = bridge_call(served.data_dir, "no:such")
    assert (code, out["error"]["code"]) == (1, -32601)
    code, out = bridge_call(served.data_dir, "llm-config:list", "{not json")
    assert (code, out["error"]["code"]) == (2, "INVALID_PARAMS_JSON")
    code, out = bridge_call(served.data_dir.parent / "nowhere", "llm-config:list")
    assert (code, out["error"]["code"]) == (1, "UNREACHABLE")
    assert str(served.data_dir.parent / "nowhere" / "connection.json") in out["error"]["message"]
    garbage = served.data_dir.parent / "garbage"
    garbage.mkdir()
    (garbage / "connection.json").write_text("not json")
    code, out = bridge_call(garbage, "llm-config:list")
    assert (code, out["error"]["code"]) == (1, "BAD_CONNECTION_FILE")


def test_bridge_call_passes_any_server_s_channels_through_without_a_drift_warning(tmp_path: Path) -> None:
    # A custom app's server (the prompt-template example) announces its own schemaHash:
    # ``bridge call`` is untyped JSON, so it has no types to drift from.
    data = tmp_path / "data"
    process, _ready = start_sidecar(data)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "call", "prompt-template:list", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        stop_sidecar(process)
    assert (done.returncode, json.loads(done.stdout)) == (0, {"result": []})
    assert "schema" not in done.stderr.lower()


def test_a_second_server_with_its_own_connection_file_leaves_the_first_ones_alone(
    served: ServedBridge,
) -> None:
    connection_file = served.data_dir / "connection.json"
    first = read_connection_file(str(connection_file))  # a plain string path works too
    own = served.data_dir.parent / "second.json"
    second = start_bridge_process(served.data_dir, "--connection-file", str(own))
    try:
        assert read_connection_file(own).url == second.url
        assert read_connection_file(connection_file) == first
    finally:
        assert second.stop() == 0
    assert not own.exists()
    assert read_connection_file(connection_file) == first
    code, out = bridge_call(served.data_dir, "bridge:hello")
    assert code == 0
    assert out["result"]["protocolVersion"] >= 1


def test_a_second_server_taking_over_the_connection_file_logs_it(served: ServedBridge) -> None:
    connection_file = served.data_dir / "connection.json"
    second = start_bridge_process(served.data_dir)
    try:
        assert read_connection_file(connection_file).url == second.url
    finally:
        assert second.stop() == 0
    assert "connection_file_taken_over" in second.log_text()
    assert f'"previous_pid": {served.process.pid}' in second.log_text()
    assert "connection_file_taken_over" not in served.log_text()
