"""Opening-handshake checks (DESIGN §6) as pure functions over a parsed HTTP request.

Order: Host (403) → Origin (403) → token (401) → capacity (503), all before the upgrade
(RFC 6455 §4.2.2). Nothing here does I/O or keeps state: the connection feeds the
:class:`~websockets.http11.Request` that websockets' sans-I/O ``ServerProtocol`` parsed,
and answers with the :class:`Refusal` returned (or accepts when there is none). The
stateful bounds on unauthenticated sockets (handshakes in progress, overall and per
peer; bytes before the handshake completes) are kept by the server and the connection.
"""

from __future__ import annotations

import hmac
import http
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request

from bridge.options import PORT_WILDCARD

SUBPROTOCOL: Final = "bridge.v1"
TOKEN_SUBPROTOCOL_PREFIX: Final = "bridge.v1.token."  # noqa: S105 - a prefix, not a secret
TOKEN_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{32,}\Z")
_LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake is refused: the HTTP status, a log reason and the body text.

    Attributes:
        status: HTTP status sent instead of 101 (403, 401 or 503).
        reason: short log reason (``host``, ``origin``, ``token``, ``capacity``).
        text: plain-text body (never echoes a header value).
        detail: the actual cause, for the server's log only (a browser cannot read a
            refused handshake): ``missing``, ``repeated``, ``null``, ``not_allowed``,
            ``malformed``, ``mismatch``, ``shutting_down`` or ``full``.
    """

    status: http.HTTPStatus
    reason: str
    text: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HandshakePolicy:
    """What a handshake must present; built once per server.

    Attributes:
        token: the expected token, ASCII bytes (compared in constant time).
        port: the bound TCP port (part of an allowed ``Host``); None over a Unix socket.
        uds: True when serving on a Unix socket (no browser can reach it: Host is not checked).
        allow_hosts: extra ``Host`` names (lower case, with or without port).
        allow_origins: ``Origin`` values accepted (``null`` never is): exact values, or an
            explicit port wildcard ``scheme://host:*`` (see :func:`check_allowed_origins`).
    """

    token: bytes
    port: int | None
    uds: bool
    allow_hosts: frozenset[str]
    allow_origins: frozenset[str]


def single_header(headers: Headers, name: str) -> str | None:
    """The header's value when sent exactly once; None when absent; "" when repeated."""
    values = headers.get_all(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else ""


def offered_subprotocols(request: Request) -> list[str]:
    """Every ``Sec-WebSocket-Protocol`` entry offered, in order (RFC 6455 §11.3.4)."""
    return [
        item.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for item in value.split(",")
        if item.strip()
    ]


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """``bridge.v1`` when offered, else None: the 101 never echoes the token-carrying entry."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def presented_token(request: Request) -> str | None:
    """Return the token a client presented: Bearer header, subprotocol pair or ``?token=``.

    Returns:
        The presented string (maybe malformed; "" for a non-Bearer or repeated
        ``Authorization``), or None when no token was presented at all.
    """
    auth = single_header(request.headers, "Authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    for item in offered_subprotocols(request):
        if item.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return item[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    # The query is cut from the request target by hand: urlsplit raises ValueError on
    # targets such as "//[x" (an unclosed IPv6 authority), which would escape
    # data_received and drop the connection instead of answering 401.
    query = request.path.partition("#")[0].partition("?")[2]
    values = parse_qs(query).get("token")
    return values[0] if values else None


def host_allowed(host: str | None, policy: HandshakePolicy) -> bool:
    """True for ``localhost``/``127.0.0.1``/``[::1]`` with the bound port, or an allowed name."""
    if policy.uds:
        return True  # no browser can reach a Unix socket: no DNS rebinding
    if not host:
        return False
    host = host.strip().lower()
    if policy.port is not None and host in {f"{name}:{policy.port}" for name in _LOOPBACK_NAMES}:
        return True
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return host in policy.allow_hosts or bare in policy.allow_hosts


def _wildcard_match(origin: str, pattern: str) -> bool:
    """True when ``origin`` is ``pattern``'s scheme and host with any port (or none)."""
    base = pattern.removesuffix(PORT_WILDCARD)
    scheme, _, netloc = base.partition("://")
    try:
        parts = urlsplit(origin)
        port = parts.port  # ValueError for a port that is not a number
    except ValueError:
        return False
    host = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
    return (
        parts.scheme == scheme
        and host == netloc
        and bool(parts.hostname)
        and parts.username is None
        and not parts.path
        and not parts.query
        and not parts.fragment
        and f"{parts.scheme}://{parts.netloc}" == origin
    )


def origin_allowed(origin: str | None, policy: HandshakePolicy) -> bool:
    """True when ``Origin`` is absent (not a browser), exactly allowed, or matches a port wildcard.

    ``null`` never is allowed.
    """
    if origin is None:
        return True
    if origin in {"", "null"}:
        return False
    if origin in policy.allow_origins and not origin.endswith(PORT_WILDCARD):
        return True
    return any(
        _wildcard_match(origin, pattern)
        for pattern in policy.allow_origins
        if pattern.endswith(PORT_WILDCARD)
    )


def token_valid(token: str | None, expected: bytes) -> bool:
    """True when ``token`` has the token shape and equals ``expected`` (constant time, on bytes)."""
    # The shape check comes first, so only ASCII reaches the comparison; the comparison
    # is on bytes (compare_digest on str raises for non-ASCII).
    if token is None or not TOKEN_PATTERN.match(token):
        return False
    return hmac.compare_digest(token.encode("ascii"), expected)


def _header_detail(value: str | None) -> str:
    if value is None:
        return "missing"
    return "repeated" if value == "" else "not_allowed"


def check_request(request: Request, policy: HandshakePolicy) -> Refusal | None:
    """Run the Host → Origin → token checks on ``request``; None when all pass."""
    host = single_header(request.headers, "Host")
    if not host_allowed(host, policy):
        return Refusal(http.HTTPStatus.FORBIDDEN, "host", "Host not allowed\n", _header_detail(host))
    origin = single_header(request.headers, "Origin")
    if not origin_allowed(origin, policy):
        detail = "null" if origin == "null" else _header_detail(origin)
        return Refusal(http.HTTPStatus.FORBIDDEN, "origin", "Origin not allowed\n", detail)
    token = presented_token(request)
    if not token_valid(token, policy.token):
        if token is None:
            detail = "missing"
        elif not TOKEN_PATTERN.match(token):
            detail = "malformed"
        else:
            detail = "mismatch"  # well-formed but not this server's: a stale token, most likely
        return Refusal(http.HTTPStatus.UNAUTHORIZED, "token", "missing or invalid token\n", detail)
    return None


MAX_LOGGED_VALUE: Final = 200
"""Characters of a refused Host/Origin value kept in the log line."""


def refused_value(request: Request, refusal: Refusal) -> dict[str, str]:
    """The offending header of a Host/Origin refusal, for the log: ``{"host": ...}`` or ``{"origin": ...}``.

    The value is cut at its first ``?`` (a query string may carry a token) and to
    ``MAX_LOGGED_VALUE`` characters; other refusals log no header (the token check's
    input is the token itself). A repeated header is logged as ``<repeated>``.
    """
    if refusal.reason not in {"host", "origin"}:
        return {}
    name = "Host" if refusal.reason == "host" else "Origin"
    value = single_header(request.headers, name)
    if value is None:
        return {refusal.reason: "<absent>"}
    if value == "" and len(request.headers.get_all(name)) > 1:
        return {refusal.reason: "<repeated>"}
    value = value.split("?", 1)[0]
    return {refusal.reason: value[:MAX_LOGGED_VALUE]}


def check_capacity(open_connections: int, max_connections: int, *, closing: bool) -> Refusal | None:
    """503 once ``max_connections`` are open or the server is shutting down; else None."""
    if closing:
        return Refusal(
            http.HTTPStatus.SERVICE_UNAVAILABLE, "capacity", "too many connections\n", "shutting_down"
        )
    if open_connections >= max_connections:
        return Refusal(http.HTTPStatus.SERVICE_UNAVAILABLE, "capacity", "too many connections\n", "full")
    return None
