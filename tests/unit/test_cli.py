"""``bridge serve``'s flags are made from the options dataclasses: one source for names, defaults, help."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridge import cli
from bridge.keystore import SecretBackend
from bridge.options import (
    BridgeOptions,
    EventLoop,
    InvalidSettingError,
    LogLevel,
    OutboundOptions,
    SecretOptions,
    SidecarOptions,
    StoreOptions,
    TransportOptions,
)
from bridge.service.tester import MAX_CONCURRENT_DEFAULT


def parse(*argv: str) -> tuple[BridgeOptions, SidecarOptions]:
    parser, flags = cli._parser()
    return cli._serve_options(parser.parse_args(["serve", *argv]), flags)


def test_no_flags_give_the_dataclass_defaults() -> None:
    options, process = parse()
    assert options == BridgeOptions()
    assert process == SidecarOptions()


def test_every_group_flag_reaches_its_field() -> None:
    options, process = parse(
        *("--data-dir", "/srv/x/d", "--host", "::1", "--port", "5", "--uds", "/srv/x/s"),
        *("--allow-origin", "http://a", "--allow-origin", "http://b", "--allow-host", "example.test"),
        *("--max-message-bytes", "7", "--max-batch", "8", "--max-connections", "9"),
        *("--outbound-cap-bytes", "2048", "--rate-limit", "3", "--ping-interval", "4"),
        *("--ping-timeout", "6", "--shutdown-timeout", "1.5"),
        *("--store", "postgresql://h/db", "--poll-interval", "0.5"),
        *("--secret-backend", "file", "--data-key-file", "/srv/x/k"),
        *("--connection-file", "/srv/x/c.json", "--exit-with-parent", "--token-file", "/srv/x/t"),
        *("--log-level", "debug", "--loop", "asyncio", "--allow-shutdown", "--no-outbound"),
        *("--handshake-timeout", "2.5", "--close-timeout", "3", "--skip-permission-checks"),
    )
    assert options == BridgeOptions(
        data_dir=Path("/srv/x/d"),
        transport=TransportOptions(
            host="::1",
            port=5,
            uds=Path("/srv/x/s"),
            allow_origins=frozenset({"http://a", "http://b"}),
            allow_hosts=frozenset({"example.test"}),
            max_message_bytes=7,
            max_batch=8,
            max_connections=9,
            outbound_cap_bytes=2048,
            rate_limit_per_s=3.0,
            ping_interval_s=4.0,
            ping_timeout_s=6.0,
            shutdown_timeout_s=1.5,
            handshake_timeout_s=2.5,
            close_timeout_s=3.0,
        ),
        store=StoreOptions(uri="postgresql://h/db", poll_interval_s=0.5),
        secrets=SecretOptions(backend=SecretBackend.FILE, data_key_file=Path("/srv/x/k")),
        outbound=OutboundOptions(enabled=False),
        check_permissions=False,
    )
    assert process == SidecarOptions(
        connection_file=Path("/srv/x/c.json"),
        exit_with_parent=True,
        token_file=Path("/srv/x/t"),
        log_level=LogLevel.DEBUG,
        loop=EventLoop.ASYNCIO,
        allow_shutdown=True,
    )


@pytest.mark.parametrize(
    "cls", [BridgeOptions, TransportOptions, StoreOptions, SecretOptions, OutboundOptions, SidecarOptions]
)
def test_help_shows_each_fields_own_help_and_default(cls: type, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["serve", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        assert " ".join(f.metadata["help"].split()) in text, f.name
        if f.type != "bool":
            assert f"(default: {cli._default_text(f)})" in text, f.name


def test_an_out_of_range_value_is_named_by_its_flag() -> None:
    with pytest.raises(InvalidSettingError) as caught:
        parse("--rate-limit", "0")
    assert caught.value.name == "--rate-limit"
    with pytest.raises(InvalidSettingError) as caught:
        parse("--poll-interval", "0")
    assert caught.value.name == "--poll-interval"


def test_the_test_concurrency_default_is_the_testers() -> None:
    assert OutboundOptions().max_concurrent_tests == MAX_CONCURRENT_DEFAULT
