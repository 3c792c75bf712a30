"""Transport settings (DESIGN §6): limits, timeouts and the token, with their range checks.

Kept apart from the server so the composition root and the command line can build them
without importing the connection machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bridge.rpc.handshake import check_allowed_origins

MAX_PORT: Final = 65535
MIN_OUTBOUND_CAP: Final = 1024
"""Smallest outbound cap accepted, in bytes (room for small replies and a close frame)."""
MIN_REPLY_BYTES: Final = 1024
"""Smallest reply budget accepted, in bytes (room for a batch of error answers' first element)."""
MIN_HANDSHAKE_BYTES: Final = 1024
"""Smallest opening-handshake byte bound accepted (a browser's request is about 0.5–2 KiB)."""


@dataclass(kw_only=True)
class TransportOptions:
    """Transport settings that have defaults (DESIGN §6); shared by every options object.

    Attributes:
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free one.
        uds: serve on this Unix socket path (mode 0600) instead of TCP.
        allow_origins: ``Origin`` values accepted: exact values, or an explicit port
            wildcard for development servers (``http://localhost:*``); a host wildcard
            and ``null`` are refused at start-up.
        allow_hosts: extra ``Host`` names accepted besides localhost/127.0.0.1/[::1].
        max_message_bytes: largest incoming message, in bytes (larger → close 1009).
        max_batch: most entries in one batch.
        max_connections: most open connections (more → HTTP 503); handshakes in
            progress count.
        outbound_cap_bytes: most bytes buffered in user space for one connection; a
            frame that would pass it is not written and the connection is closed with
            1013 (aborted when even the close frame does not fit).
        max_reply_bytes: byte budget of one reply frame. Batch elements whose answer
            would pass it are answered 4013 ``RESPONSE_TOO_LARGE`` without being run
            (the element that passed it was run); a single result past it gets 4013.
        max_handshakes: most TCP connections that have not finished their opening
            handshake; a new one past it evicts the oldest (lowered at start when the
            descriptor limit leaves less room).
        max_handshakes_per_peer: the same, per peer address (all local clients share
            127.0.0.1 or ::1).
        max_handshake_bytes: most bytes a client may send before its opening handshake
            completes (request line and headers); past it the connection is answered
            431 and closed.
        rate_limit_per_s: requests (batch elements count one each) a connection may
            send per second, with a burst of the same size; None = no limit. Excess
            requests are answered with 4029 and excess notifications dropped.
        ping_interval_s: keepalive ping period, in seconds.
        ping_timeout_s: seconds to wait for a pong (no pong → close 1011); also how
            long a connection whose peer stopped reading its responses may stall
            (writing paused) before it is closed with 1013.
        shutdown_timeout_s: bound on graceful shutdown, in seconds.
        handshake_timeout_s: seconds a TCP connection may take to complete its opening
            handshake (from accept to the 101 or the refusal); then it is aborted.
        close_timeout_s: seconds to wait, once a close frame is sent or received, for
            the peer to close TCP; then the transport is aborted (RFC 6455 §7.1.1).
    """

    host: str = "127.0.0.1"
    port: int = 0
    uds: Path | None = None
    allow_origins: frozenset[str] = field(default_factory=frozenset)
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    max_message_bytes: int = 256 * 1024
    max_batch: int = 100
    max_connections: int = 64
    outbound_cap_bytes: int = 1024 * 1024
    max_reply_bytes: int = 4 * 1024 * 1024
    max_handshakes: int = 128
    max_handshakes_per_peer: int = 64
    max_handshake_bytes: int = 64 * 1024
    rate_limit_per_s: float | None = None
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    shutdown_timeout_s: float = 5.0
    handshake_timeout_s: float = 10.0
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        """Refuse settings that would leave the server unusable.

        Raises:
            InvalidSettingError: the first setting out of its range (its field name,
                what it must be, and the value given).
        """
        rules: tuple[tuple[str, bool, str], ...] = (
            ("port", 0 <= self.port <= MAX_PORT, f"between 0 and {MAX_PORT}"),
            ("max_message_bytes", self.max_message_bytes >= 1, "at least 1"),
            ("max_batch", self.max_batch >= 1, "at least 1"),
            ("max_connections", self.max_connections >= 1, "at least 1"),
            (
                "outbound_cap_bytes",
                self.outbound_cap_bytes >= MIN_OUTBOUND_CAP,
                f"at least {MIN_OUTBOUND_CAP}",
            ),
            ("max_reply_bytes", self.max_reply_bytes >= MIN_REPLY_BYTES, f"at least {MIN_REPLY_BYTES}"),
            ("max_handshakes", self.max_handshakes >= 1, "at least 1"),
            ("max_handshakes_per_peer", self.max_handshakes_per_peer >= 1, "at least 1"),
            (
                "max_handshake_bytes",
                self.max_handshake_bytes >= MIN_HANDSHAKE_BYTES,
                f"at least {MIN_HANDSHAKE_BYTES}",
            ),
            (
                "rate_limit_per_s",
                self.rate_limit_per_s is None or self.rate_limit_per_s > 0,
                "above 0 (or off)",
            ),
            ("ping_interval_s", self.ping_interval_s > 0, "above 0"),
            ("ping_timeout_s", self.ping_timeout_s > 0, "above 0"),
            ("shutdown_timeout_s", self.shutdown_timeout_s >= 0, "0 or more"),
            ("handshake_timeout_s", self.handshake_timeout_s > 0, "above 0"),
            ("close_timeout_s", self.close_timeout_s > 0, "above 0"),
        )
        for name, ok, requirement in rules:
            if not ok:
                raise InvalidSettingError(name, requirement, getattr(self, name))
        if (bad := check_allowed_origins(sorted(self.allow_origins))) is not None:
            raise InvalidSettingError(
                "allow_origins",
                "an exact origin or an explicit port wildcard such as http://localhost:* "
                "(never a host wildcard, never null)",
                bad,
            )


class InvalidSettingError(ValueError):
    """A transport setting out of its range.

    Attributes:
        name: the :class:`TransportOptions` field, e.g. ``port``.
        requirement: what it must be, e.g. ``between 0 and 65535``.
        value: the value given.
    """

    def __init__(self, name: str, requirement: str, value: object) -> None:
        """Record the setting; the message reads ``port must be between 0 and 65535 (got 99999)``."""
        super().__init__(f"{name} must be {requirement} (got {value!r})")
        self.name = name
        self.requirement = requirement
        self.value = value


@dataclass(kw_only=True)
class ServerSettings(TransportOptions):
    """Everything :class:`BridgeServer` needs: the transport options and the token.

    Attributes:
        token: the bearer token every client must present (``[A-Za-z0-9_-]{32,}``).
    """

    token: str = field(repr=False)
