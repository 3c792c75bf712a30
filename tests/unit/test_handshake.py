"""The handshake checks are pure functions over a parsed request (DESIGN §6)."""

from __future__ import annotations

import http

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from bridge.options import check_allowed_origins
from bridge.rpc.handshake import (
    HandshakePolicy,
    check_capacity,
    check_request,
    presented_token,
    select_subprotocol,
)

TOKEN = "k" * 43
POLICY = HandshakePolicy(
    token=TOKEN.encode(),
    port=8123,
    uds=False,
    allow_hosts=frozenset({"bridge.internal"}),
    allow_origins=frozenset({"http://localhost:5173"}),
)


def make(*headers: tuple[str, str], path: str = "/") -> Request:
    return Request(path, Headers(list(headers)))


GOOD_HOST = ("Host", "127.0.0.1:8123")
BEARER = ("Authorization", f"Bearer {TOKEN}")


@pytest.mark.parametrize(
    ("headers", "path", "expected"),
    [
        ([GOOD_HOST, BEARER], "/", None),
        ([("Host", "localhost:8123"), BEARER], "/", None),
        ([("Host", "[::1]:8123"), BEARER], "/", None),
        ([("Host", "bridge.internal:443"), BEARER], "/", None),
        ([("Host", "evil.example:8123"), BEARER], "/", "host"),
        ([("Host", "127.0.0.1:1"), BEARER], "/", "host"),
        ([BEARER], "/", "host"),
        ([GOOD_HOST, ("Origin", "null"), BEARER], "/", "origin"),
        ([GOOD_HOST, ("Origin", "http://localhost:5173"), BEARER], "/", None),
        ([GOOD_HOST], "/", "token"),
        ([GOOD_HOST], f"/?token={TOKEN}", None),
        ([GOOD_HOST, ("Sec-WebSocket-Protocol", f"bridge.v1, bridge.v1.token.{TOKEN}")], "/", None),
        ([GOOD_HOST, ("Authorization", f"Basic {TOKEN}")], "/", "token"),
        ([GOOD_HOST, BEARER, BEARER], "/", "token"),
        ([("Host", "evil.example"), ("Origin", "null")], "/", "host"),
        # A request target urlsplit cannot parse (an unclosed "[" in an authority) is still
        # answered: 401 without a token, accepted with one, never an exception.
        ([GOOD_HOST], "//[x", "token"),
        ([GOOD_HOST], f"//[x?token={TOKEN}", None),
    ],
)
def test_check_request_answers_in_the_documented_order(
    headers: list[tuple[str, str]], path: str, expected: str | None
) -> None:
    refusal = check_request(make(*headers, path=path), POLICY)
    assert (refusal.reason if refusal else None) == expected


def test_refusals_carry_their_status_and_never_the_token() -> None:
    refusal = check_request(make(GOOD_HOST, ("Authorization", "Bearer " + "x" * 43)), POLICY)
    assert refusal is not None
    assert refusal.status is http.HTTPStatus.UNAUTHORIZED
    assert "x" * 43 not in refusal.text


def test_a_unix_socket_does_not_check_host() -> None:
    policy = HandshakePolicy(
        token=TOKEN.encode(), port=None, uds=True, allow_hosts=frozenset(), allow_origins=frozenset()
    )
    assert check_request(make(("Host", "anything"), BEARER), policy) is None


def test_capacity_refuses_at_the_limit_and_while_closing() -> None:
    assert check_capacity(2, 3, closing=False) is None
    full = check_capacity(3, 3, closing=False)
    assert full is not None
    assert full.status is http.HTTPStatus.SERVICE_UNAVAILABLE
    assert check_capacity(0, 3, closing=True) is not None


def test_presented_token_and_subprotocol_selection() -> None:
    assert presented_token(make(GOOD_HOST)) is None
    assert presented_token(make(("Authorization", "Token abc"))) == ""
    assert select_subprotocol(["bridge.v1", f"bridge.v1.token.{TOKEN}"]) == "bridge.v1"
    assert select_subprotocol([f"bridge.v1.token.{TOKEN}"]) is None


WILDCARD_POLICY = HandshakePolicy(
    token=TOKEN.encode(),
    port=8123,
    uds=False,
    allow_hosts=frozenset(),
    allow_origins=frozenset({"http://localhost:*", "tauri://localhost"}),
)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://localhost:3000", True),
        ("http://localhost", True),
        ("tauri://localhost", True),
        ("https://localhost:5173", False),
        ("http://127.0.0.1:5173", False),
        ("http://localhost.evil.example:5173", False),
        ("http://evil.example:5173", False),
        ("http://user@localhost:5173", False),
        ("http://localhost:5173/path", False),
        ("http://localhost:abc", False),
        ("http://localhost:*", False),
        ("null", False),
    ],
)
def test_a_port_wildcard_accepts_any_port_of_exactly_its_scheme_and_host(origin: str, allowed: bool) -> None:
    refusal = check_request(make(GOOD_HOST, ("Origin", origin), BEARER), WILDCARD_POLICY)
    assert (refusal is None) is allowed


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        (["http://localhost:*", "file://", "tauri://localhost", "http://localhost:5173"], None),
        (["https://[::1]:*"], None),
        (["*"], "*"),
        (["http://*"], "http://*"),
        (["http://*:*"], "http://*:*"),
        (["http://*.example.com:*"], "http://*.example.com:*"),
        (["http://localhost:5*"], "http://localhost:5*"),
        (["http://localhost/app:*"], "http://localhost/app:*"),
        (["http://user@localhost:*"], "http://user@localhost:*"),
        ([":*"], ":*"),
        (["http://[x:*"], "http://[x:*"),
        (["null"], "null"),
    ],
)
def test_allowed_origins_refuse_host_wildcards(values: list[str], bad: str | None) -> None:
    assert check_allowed_origins(values) == bad


@pytest.mark.parametrize(
    ("headers", "path", "reason", "detail"),
    [
        ([("Host", "evil.example:8123"), BEARER], "/", "host", "not_allowed"),
        ([BEARER], "/", "host", "missing"),
        ([GOOD_HOST, ("Origin", "null"), BEARER], "/", "origin", "null"),
        ([GOOD_HOST, ("Origin", "http://localhost:1"), BEARER], "/", "origin", "not_allowed"),
        ([GOOD_HOST], "/", "token", "missing"),
        ([GOOD_HOST, ("Authorization", "Bearer short")], "/", "token", "malformed"),
        ([GOOD_HOST, ("Authorization", "Bearer " + "s" * 43)], "/", "token", "mismatch"),
    ],
)
def test_refusals_name_their_actual_cause(
    headers: list[tuple[str, str]], path: str, reason: str, detail: str
) -> None:
    refusal = check_request(make(*headers, path=path), POLICY)
    assert refusal is not None
    assert (refusal.reason, refusal.detail) == (reason, detail)


def test_a_port_wildcard_on_an_ipv6_loopback_matches_its_ports() -> None:
    policy = HandshakePolicy(
        token=TOKEN.encode(),
        port=8123,
        uds=False,
        allow_hosts=frozenset(),
        allow_origins=frozenset({"http://[::1]:*"}),
    )
    assert check_request(make(GOOD_HOST, ("Origin", "http://[::1]:5173"), BEARER), policy) is None
    assert check_request(make(GOOD_HOST, ("Origin", "http://[::2]:5173"), BEARER), policy) is not None
