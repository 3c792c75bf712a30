"""What a bridge can be told: small option groups, composed into :class:`BridgeOptions`.

Each group is a dataclass whose defaults are DESIGN's. A field that ``bridge serve``
exposes carries its flag and help text in its metadata (:func:`setting`), so the command
line (:mod:`bridge.cli`) takes every default and every help text from here: one source.

This module imports no server, store or client code: ``bridge.cli`` builds its parser
from it without loading the server, and the RPC layer takes its :class:`TransportOptions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from bridge.keystore import DATA_KEY_ENV, SecretBackend

APP_NAME: Final = "bridge"
STORE_ENV: Final = "BRIDGE_STORE"
"""Environment variable naming the store: a ``postgresql://`` URI (else SQLite)."""
TOKEN_ENV: Final = "BRIDGE_TOKEN"  # noqa: S105 - the variable's name, not a token
"""Environment variable holding the bearer token (else one is generated per launch)."""
MAX_PORT: Final = 65535
MIN_OUTBOUND_CAP: Final = 1024
"""Smallest outbound cap accepted, in bytes (room for small replies and a close frame)."""
MIN_REPLY_BYTES: Final = 1024
"""Smallest reply budget accepted, in bytes (room for a batch of error answers' first element)."""
MIN_HANDSHAKE_BYTES: Final = 1024
"""Smallest opening-handshake byte bound accepted (a browser's request is about 0.5–2 KiB)."""


PORT_WILDCARD: Final = ":*"
"""Suffix of an allowed origin that accepts any port of that scheme and host (development servers)."""


def check_allowed_origins(values: Iterable[str]) -> str | None:
    """Return the first ``--allow-origin`` value that is not acceptable, or None.

    Accepted: any exact value without ``*`` (compared as sent: ``file://``,
    ``tauri://localhost``, ``http://localhost:5173``), or ``scheme://host:*`` — an
    explicit host with any port, for development servers that pick their port. A host
    wildcard (``*``, ``http://*``, ``http://*.example.com``, ``http://*:*``), a wildcard
    with a path, user info or an empty host, and ``null`` are refused.
    """
    for value in values:
        if value == "null":
            return value
        if "*" not in value:
            continue
        if not value.endswith(PORT_WILDCARD):
            return value
        base = value.removesuffix(PORT_WILDCARD)
        try:
            parts = urlsplit(base)
            port = parts.port  # ValueError for an unparsable host or a port that is not a number
        except ValueError:
            return value
        if (
            "*" in base
            or not parts.scheme
            or not parts.hostname
            or port is not None
            or "@" in parts.netloc
            or parts.netloc.endswith(":")
            or f"{parts.scheme}://{parts.netloc}" != base
        ):
            return value
    return None


def default_data_dir() -> Path:
    """Return the platform's user data directory for bridge (``platformdirs``)."""
    import platformdirs  # noqa: PLC0415 - only when no data directory is given (start-up time)

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def setting(
    default: Any = MISSING,
    *,
    help: str,  # noqa: A002 - the argparse word, on purpose
    flag: str | None = None,
    metavar: str | None = None,
    default_factory: Any = MISSING,
    default_text: str | None = None,
    repeat: bool = False,
) -> Any:
    """A dataclass field that ``bridge serve`` exposes as a flag.

    Args:
        default: the default value (DESIGN's).
        help: the flag's help text, without the default (the parser appends it).
        flag: the flag, e.g. ``--rate-limit``; default: ``--`` + the field name with dashes.
        metavar: the value's name in ``--help``.
        default_factory: as in :func:`dataclasses.field`.
        default_text: how ``--help`` shows the default when its value is not telling
            (e.g. the platform's data directory).
        repeat: the flag may be given several times; the values form a frozenset.

    Returns:
        A :func:`dataclasses.field` carrying ``flag``, ``help``, ``metavar``,
        ``default_text`` and ``repeat`` in its metadata.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "default_text": default_text,
        "repeat": repeat,
    }
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class InvalidSettingError(ValueError):
    """A setting out of its range.

    Attributes:
        name: the options field, e.g. ``port``.
        requirement: what it must be, e.g. ``between 0 and 65535``.
        value: the value given.
    """

    def __init__(self, name: str, requirement: str, value: object) -> None:
        """Record the setting; the message reads ``port must be between 0 and 65535 (got 99999)``."""
        super().__init__(f"{name} must be {requirement} (got {value!r})")
        self.name = name
        self.requirement = requirement
        self.value = value


def _check(rules: tuple[tuple[str, bool, str], ...], owner: object) -> None:
    for name, ok, requirement in rules:
        if not ok:
            raise InvalidSettingError(name, requirement, getattr(owner, name))


@dataclass(kw_only=True)
class TransportOptions:
    """Transport settings (DESIGN §6): where to listen, whom to accept, limits, timeouts.

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

    Raises:
        InvalidSettingError: a setting out of its range (on construction).
    """

    # Where
    host: str = setting("127.0.0.1", help="interface to bind")
    port: int = setting(0, help="TCP port; 0 picks a free one")
    uds: Path | None = setting(
        None, help="serve on this Unix socket (mode 0600) instead of TCP", metavar="PATH"
    )
    # Whom
    allow_origins: frozenset[str] = setting(
        help="accept this Origin: exact, or a dev-server port wildcard (http://localhost:*); repeat",
        flag="--allow-origin",
        default_factory=frozenset,
        default_text="none",
        repeat=True,
    )
    allow_hosts: frozenset[str] = setting(
        help="accept this Host name besides localhost, 127.0.0.1 and [::1]; repeat for more",
        flag="--allow-host",
        default_factory=frozenset,
        default_text="none",
        repeat=True,
    )
    # Limits
    max_message_bytes: int = setting(256 * 1024, help="largest incoming message, in bytes")
    max_batch: int = setting(100, help="most entries in one batch")
    max_connections: int = setting(64, help="most open connections")
    outbound_cap_bytes: int = setting(1024 * 1024, help="per-connection send buffer cap, in bytes")
    max_reply_bytes: int = setting(
        4 * 1024 * 1024, help="byte budget of one reply frame; past it → 4013 RESPONSE_TOO_LARGE"
    )
    max_handshakes: int = setting(
        128, help="most connections still in their opening handshake; the oldest is dropped past it"
    )
    max_handshakes_per_peer: int = setting(64, help="most connections in their handshake per peer address")
    max_handshake_bytes: int = setting(
        64 * 1024, help="most bytes of an opening handshake (request line and headers); past it → 431"
    )
    rate_limit_per_s: float | None = setting(
        None,
        help="requests per second per connection (burst of the same size); excess → 4029",
        flag="--rate-limit",
        metavar="PER_SECOND",
        default_text="off",
    )
    # Timeouts
    ping_interval_s: float = setting(20.0, help="keepalive ping period, in seconds", flag="--ping-interval")
    ping_timeout_s: float = setting(20.0, help="seconds to wait for a pong", flag="--ping-timeout")
    shutdown_timeout_s: float = setting(
        5.0, help="graceful shutdown bound, in seconds", flag="--shutdown-timeout"
    )
    handshake_timeout_s: float = setting(
        10.0, help="seconds a connection may take to finish its opening handshake", flag="--handshake-timeout"
    )
    close_timeout_s: float = setting(
        5.0, help="seconds to wait for the peer to close TCP after a close frame", flag="--close-timeout"
    )

    def __post_init__(self) -> None:
        """Refuse settings that would leave the server unusable.

        Raises:
            InvalidSettingError: the first setting out of its range (its field name,
                what it must be, and the value given).
        """
        _check(
            (
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
            ),
            self,
        )
        if (bad := check_allowed_origins(sorted(self.allow_origins))) is not None:
            raise InvalidSettingError(
                "allow_origins",
                "an exact origin or an explicit port wildcard such as http://localhost:* "
                "(never a host wildcard, never null)",
                bad,
            )


@dataclass(kw_only=True)
class StoreOptions:
    """Where the configs are kept (DESIGN §3).

    Attributes:
        uri: ``postgresql://…`` to share a PostgreSQL database with other instances;
            None → ``BRIDGE_STORE`` if set, else SQLite ``bridge.db`` in the data directory.
        poll_interval_s: how often other processes' commits are looked for, in seconds.

    Raises:
        InvalidSettingError: ``poll_interval_s`` is not above 0 (on construction).
    """

    uri: str | None = setting(
        None,
        help=f"postgresql://user:password@host:port/db to share a database with other instances "
        f"(else {STORE_ENV})",
        flag="--store",
        metavar="URI",
        default_text="SQLite in the data directory",
    )
    poll_interval_s: float = setting(
        0.2, help="how often other processes' commits are looked for, in seconds", flag="--poll-interval"
    )

    def __post_init__(self) -> None:
        """Refuse a poll interval that is not above 0.

        Raises:
            InvalidSettingError: ``poll_interval_s`` ≤ 0.
        """
        _check((("poll_interval_s", self.poll_interval_s > 0, "above 0"),), self)


@dataclass(kw_only=True)
class SecretOptions:
    """Where the data key that seals API keys comes from (DESIGN §3).

    Attributes:
        backend: ``auto`` (the OS keyring when a real one exists, else the file),
            ``keyring`` or ``file`` (a 0600 ``bridge.key`` in the data directory).
        data_key_file: the data key shared by the instances (else ``BRIDGE_DATA_KEY``);
            required with PostgreSQL, optional with SQLite (replaces the keyring/file).
    """

    backend: SecretBackend = setting(SecretBackend.AUTO, help="data key source", flag="--secret-backend")
    data_key_file: Path | None = setting(
        None,
        help=f"data key shared by the instances (else {DATA_KEY_ENV}); required with --store",
        metavar="PATH",
    )


@dataclass(kw_only=True)
class OutboundOptions:
    """Calls that leave the machine: ``llm-config:test`` reaching a provider.

    Attributes:
        enabled: False → no call ever leaves for a third party: ``llm-config:test``
            answers ``OUTBOUND_DISABLED`` (4003) (``--no-outbound``; shared deployments).
        max_concurrent_tests: most ``llm-config:test`` calls running at once in this
            process (others wait within their own timeout); None → unbounded.

    Raises:
        InvalidSettingError: ``max_concurrent_tests`` below 1 (on construction).
    """

    enabled: bool = setting(
        default=True,
        help="never call a third party: llm-config:test answers OUTBOUND_DISABLED (shared deployments)",
        flag="--no-outbound",
    )
    # The default is bridge.service.tester.MAX_CONCURRENT_DEFAULT (tests/unit/test_cli.py
    # checks they agree): this module stays free of the service's imports.
    max_concurrent_tests: int | None = 4

    def __post_init__(self) -> None:
        """Refuse a concurrency below 1.

        Raises:
            InvalidSettingError: ``max_concurrent_tests`` < 1.
        """
        ok = self.max_concurrent_tests is None or self.max_concurrent_tests >= 1
        _check((("max_concurrent_tests", ok, "at least 1 (or None)"),), self)


@dataclass(kw_only=True)
class BridgeOptions:
    """Everything a bridge can be told, as option groups; the defaults are DESIGN's.

    Attributes:
        data_dir: holds ``bridge.db``, ``bridge.key`` and ``connection.json``; default:
            the platform's user data directory.
        token: bearer token; None → ``BRIDGE_TOKEN`` or a fresh ``token_urlsafe(32)``.
        transport: listening address, handshake allowlists, limits and timeouts.
        store: the store (SQLite in ``data_dir``, or a shared PostgreSQL database).
        secrets: the data key's source.
        outbound: calls that leave the machine (``llm-config:test``).
        check_permissions: refuse a data directory, key, token or database file, or a
            directory holding the connection file or the socket, that another user could
            have planted or can read (DESIGN §6, :mod:`bridge.datadir`);
            False is the opt-out for mounted secrets: the problems are logged at warning,
            and only a path that is not a regular file or directory is still refused.
    """

    data_dir: Path = setting(
        help="data directory", default_factory=default_data_dir, default_text="the platform's user data dir"
    )
    token: str | None = field(default=None, repr=False)
    transport: TransportOptions = field(default_factory=TransportOptions)
    store: StoreOptions = field(default_factory=StoreOptions)
    secrets: SecretOptions = field(default_factory=SecretOptions)
    outbound: OutboundOptions = field(default_factory=OutboundOptions)
    check_permissions: bool = setting(
        default=True,
        help="use a data directory, key, token or database file, or a connection-file or socket "
        "directory, that another user could write or read (mounted secrets); logged at warning. "
        "Default: refuse, like ssh",
        flag="--skip-permission-checks",
    )


class LogLevel(StrEnum):
    """Minimum level of the log lines on stderr."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class EventLoop(StrEnum):
    """Which event loop runs the server: ``auto`` picks uvloop when it is installed."""

    AUTO = "auto"
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


@dataclass(kw_only=True)
class SidecarOptions:
    """How ``bridge serve`` runs as a process (DESIGN §7).

    :func:`bridge.app.serve` uses ``connection_file`` and ``exit_with_parent``;
    :func:`bridge.app.run_sidecar` (``bridge serve``) uses every field.

    Attributes:
        connection_file: where to write the connection file; None →
            ``<data dir>/connection.json``.
        exit_with_parent: shut down when stdin reaches EOF (the sidecar mode); also
            serves ``bridge:shutdown``.
        allow_shutdown: serve ``bridge:shutdown`` (any authenticated connection may
            stop the server) without ``exit_with_parent``.
        token_file: read the bearer token from this file (else ``BRIDGE_TOKEN``, else a
            fresh one per launch).
        log_level: minimum level of the log lines on stderr.
        loop: the event loop: uvloop when installed (``auto``), ``uvloop`` (required)
            or ``asyncio``.
    """

    connection_file: Path | None = setting(
        None,
        help="where to write the connection file",
        metavar="PATH",
        default_text="<data dir>/connection.json",
    )
    exit_with_parent: bool = setting(
        default=False, help="shut down when stdin closes (the sidecar mode); also serves bridge:shutdown"
    )
    allow_shutdown: bool = setting(
        default=False, help="serve bridge:shutdown: any authenticated connection may stop the server"
    )
    token_file: Path | None = setting(
        None,
        help=f"read the token from this file (else {TOKEN_ENV})",
        metavar="PATH",
        default_text="generated",
    )
    log_level: LogLevel = setting(LogLevel.INFO, help="minimum level of the log lines on stderr")
    loop: EventLoop = setting(
        EventLoop.AUTO, help="event loop: uvloop when installed (auto), uvloop (required) or asyncio"
    )
