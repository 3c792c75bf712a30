"""Logging: secrets redacted before rendering, tracebacks without locals, JSON lines."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bridge.client import BridgeClient
from bridge.log import REDACTED, configure_logging, library_logger, redact_secrets
from tests.conftest import ANTHROPIC_KEY, CUSTOM_KEY, GOOGLE_KEY, OPENAI_KEY


@contextlib.contextmanager
def json_logging(*, json: bool = True) -> Iterator[None]:
    """Configure bridge logging for the test body (pytest swaps root handlers per phase)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("debug", json=json)
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def lines_of(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_redaction_masks_secret_keys_and_key_shapes() -> None:
    event = {
        "event": f"saw {OPENAI_KEY} and {ANTHROPIC_KEY}",
        "apiKey": GOOGLE_KEY,
        "api_key": CUSTOM_KEY,
        "headers": {"Authorization": "Bearer abc", "x": [f"token={OPENAI_KEY}"]},
        "url": "/ws?token=abcdef&x=1",
        "secret_backend": "file",
    }
    out = redact_secrets(None, "info", event)
    text = json.dumps(out)
    for key in (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, CUSTOM_KEY, "abcdef"):
        assert key not in text
    assert out["apiKey"] == REDACTED
    assert out["secret_backend"] == "file"


def test_debug_lines_are_json_and_never_hold_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    with json_logging():
        structlog.get_logger("bridge.test").debug(
            "config_seen", apiKey=OPENAI_KEY, note=f"key {ANTHROPIC_KEY}", google=GOOGLE_KEY
        )
        logging.getLogger("foreign").warning("stdlib says %s", OPENAI_KEY)
    lines = lines_of(capsys)
    assert [line["event"] for line in lines] == ["config_seen", f"stdlib says {REDACTED}"]
    text = json.dumps(lines)
    assert OPENAI_KEY not in text
    assert ANTHROPIC_KEY not in text
    assert GOOGLE_KEY not in text


def test_tracebacks_are_rendered_without_local_variables(capsys: pytest.CaptureFixture[str]) -> None:

    def fail(api_key: str) -> None:
        plain = api_key  # a local holding a key must never be rendered
        raise RuntimeError(len(plain))

    with json_logging():
        try:
            fail(CUSTOM_KEY)
        except RuntimeError:
            structlog.get_logger("bridge.test").exception("something_failed")
    (line,) = lines_of(capsys)
    assert line["event"] == "something_failed"
    assert "exception" in line
    assert CUSTOM_KEY not in json.dumps(line)
    assert "locals" not in json.dumps(line["exception"])


def test_console_tracebacks_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    with json_logging(json=False):
        try:
            raise ValueError(f"provider rejected {OPENAI_KEY}")  # noqa: TRY301 - the logged exception
        except ValueError:
            structlog.get_logger("test").exception("call_failed")
    err = capsys.readouterr().err
    assert "call_failed" in err
    assert "ValueError" in err
    assert OPENAI_KEY not in err
    assert REDACTED in err


def test_a_client_leaves_the_program_s_structlog_configuration_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A program on structlog's defaults that creates a client keeps them (its lines, its
    # levels); the client's own lines go to stdlib logging as redacted JSON, never stdout.
    structlog.reset_defaults()
    try:
        client = BridgeClient("ws://127.0.0.1:9", "t" * 43)
        assert not structlog.is_configured()
        structlog.get_logger("program").info("program line", api_key=OPENAI_KEY)
        assert "program line" in capsys.readouterr().out  # the program's own choice of defaults
        library_logger("bridge.client.client").warning("client line", api_key=OPENAI_KEY)
        captured = capsys.readouterr()
        assert "client line" not in captured.out
        assert OPENAI_KEY not in captured.out + captured.err
        assert repr(client) == "BridgeClient(url='ws://127.0.0.1:9')"
    finally:
        structlog.reset_defaults()
