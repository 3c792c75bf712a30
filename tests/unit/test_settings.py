"""Transport settings refuse values that would leave the server unusable."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.options import InvalidSettingError, TransportOptions
from bridge.rpc.server import ServerSettings

TOKEN = "t" * 40


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 65536),
        ("max_message_bytes", 0),
        ("max_batch", -1),
        ("max_connections", 0),
        ("outbound_cap_bytes", 1023),
        ("rate_limit_per_s", 0.0),
        ("ping_interval_s", 0.0),
        ("ping_timeout_s", -1.0),
        ("shutdown_timeout_s", -0.5),
        ("handshake_timeout_s", 0.0),
        ("close_timeout_s", -1.0),
    ],
)
def test_each_out_of_range_setting_is_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        ServerSettings(token=TOKEN, **{field: value})
    assert caught.value.name == field
    assert caught.value.value == value
    assert str(caught.value).startswith(f"{field} must be ")


def test_the_defaults_and_the_edges_are_accepted() -> None:
    TransportOptions()
    TransportOptions(port=65535, max_message_bytes=1, max_batch=1, max_connections=1)
    TransportOptions(outbound_cap_bytes=1024, rate_limit_per_s=None, shutdown_timeout_s=0)


@pytest.mark.parametrize("origin", ["http://*:*", "*", "http://*.example.com"])
def test_a_host_wildcard_origin_is_refused_by_name(origin: str) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        TransportOptions(allow_origins=frozenset({"http://localhost:*", origin}))
    assert caught.value.name == "allow_origins"
    assert caught.value.value == origin
    assert "never a host wildcard" in str(caught.value)


def test_a_port_wildcard_origin_is_accepted() -> None:
    assert TransportOptions(allow_origins=frozenset({"http://localhost:*"})).allow_origins == {
        "http://localhost:*"
    }
