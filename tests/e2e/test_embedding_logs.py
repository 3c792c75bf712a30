"""Bridge embedded as a library never writes its log to the program's stdout (issue 14, S4-B).

A real subprocess (``tests/helpers/embedded.py``) starts a bridge with
:func:`bridge.start_bridge`, uses it through a real client and prints its own line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bridge.options import TOKEN_ENV
from tests.conftest import ServedBridge
from tests.helpers.embedded import OPENAI_KEY

ROOT = Path(__file__).parents[2]


def embedded(data_dir: Path, *mode: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tests.helpers.embedded DATA_DIR [mode]``; its exit code must be 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if token is not None:
        env[TOKEN_ENV] = token
    command = [sys.executable, "-m", "tests.helpers.embedded", str(data_dir), *mode]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_an_embedding_program_keeps_stdout_and_sees_warnings_on_stderr(tmp_path: Path) -> None:
    done = embedded(tmp_path / "data")
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["event"] == "done"
    # No logging configured: Python's last resort shows bridge's warnings on stderr only.
    logged = [json.loads(entry) for entry in done.stderr.splitlines()]
    assert [(e["event"], e["level"], e["logger"]) for e in logged] == [
        ("secret_backend_file", "warning", "bridge.app")
    ]
    assert OPENAI_KEY not in done.stdout + done.stderr


def test_an_embedding_program_s_logging_configuration_decides_what_is_shown(tmp_path: Path) -> None:
    done = embedded(tmp_path / "data", "basic")
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["event"] == "done"
    # Through the program's handler (basicConfig's "LEVEL:logger:message"), INFO included.
    records = [entry.split(":", 2) for entry in done.stderr.splitlines()]
    shown = [(level, name, json.loads(message)["event"]) for level, name, message in records]
    assert ("WARNING", "bridge.app", "secret_backend_file") in shown
    assert ("INFO", "bridge.rpc.server", "server_listening") in shown
    assert ("INFO", "bridge.rpc.server", "server_stopped") in shown
    assert OPENAI_KEY not in done.stdout + done.stderr


def test_a_program_that_configured_structlog_itself_keeps_its_configuration(tmp_path: Path) -> None:
    done = embedded(tmp_path / "data", "structlog")
    lines = done.stdout.splitlines()
    assert json.loads(lines[-1])["event"] == "done"
    assert any("server_listening" in line for line in lines[:-1])


def test_a_program_with_its_own_structlog_and_debug_logging_never_sees_the_token(tmp_path: Path) -> None:
    token = "embedded-token-" + "t" * 32
    done = embedded(tmp_path / "data", "structlog-debug", token=token)
    assert json.loads(done.stdout.splitlines()[-1])["event"] == "done"
    # The program's DEBUG reaches bridge's own lines; websockets' (request line, headers) stay capped.
    assert "server_listening" in done.stderr
    assert "websockets" not in done.stderr
    assert token not in done.stdout + done.stderr


def test_an_embedding_program_at_debug_sees_no_provider_request_lines(tmp_path: Path) -> None:
    done = embedded(tmp_path / "data", "provider")
    assert json.loads(done.stdout.splitlines()[-1])["ok"] is True  # the provider was reached
    assert "bridge.service" in done.stderr  # the program's DEBUG shows bridge's own lines
    # As in ``bridge serve``: the request URL (httpx) and the provider's headers (httpcore)
    # are not bridge's to log.
    assert "httpx" not in done.stderr
    assert "httpcore" not in done.stderr
    assert OPENAI_KEY not in done.stdout + done.stderr


def test_a_program_using_only_the_client_keeps_stdout_and_never_logs_the_token(
    served: ServedBridge,
) -> None:
    # No start_bridge in this program: the client alone must keep structlog off stdout and
    # websockets (at the program's DEBUG it prints the handshake's Authorization header) capped.
    done = embedded(served.data_dir, "client")
    (line,) = done.stdout.splitlines()
    result = json.loads(line)
    assert result["event"] == "done"
    assert result["mismatch"] is True
    # The client's own warning (the schema hash it was given is not the server's) is shown,
    # redacted JSON through the program's handler, on stderr.
    assert "schema_hash_mismatch" in done.stderr
    assert "bridge.client" in done.stderr
    assert "websockets" not in done.stderr
    assert served.token not in done.stdout + done.stderr
    assert OPENAI_KEY not in done.stdout + done.stderr
