"""The composition root: ``bridge serve``, ``bridge schemas``, ``bridge call``; ``serve()``.

This is the only module that wires concrete classes together (store, key, service,
dispatcher, server). Applications embedding bridge call :func:`start_bridge` or
:func:`serve` with a :class:`~bridge.api.Registry` holding their own channels.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import platformdirs
import structlog

from bridge import api, datadir, schemas
from bridge.errors import AddressUnavailableError, BridgeError, InsecurePathError, StartupError
from bridge.keystore import (
    DATA_KEY_ENV,
    KEY_FILE_NAME,
    DataKey,
    KeyCipher,
    SecretBackend,
    load_data_key,
    load_shared_data_key,
)
from bridge.log import configure_logging
from bridge.models import EmptyParams, WireModel
from bridge.rpc.dispatch import Dispatcher
from bridge.rpc.server import (
    TOKEN_PATTERN,
    BridgeServer,
    InvalidSettingError,
    ServerSettings,
    TransportOptions,
    raise_descriptor_limit,
)
from bridge.service import LlmConfigService, register_llm_config_channels
from bridge.service.tester import MAX_CONCURRENT_DEFAULT, LlmConfigTester
from bridge.storage import DB_FILE_NAME, ConfigStore, SqliteConfigStore, StoreState

if TYPE_CHECKING:
    from bridge.client import ConnectionInfo

log = structlog.get_logger(__name__)

APP_NAME: Final = "bridge"
CONNECTION_FILE_NAME: Final = "connection.json"
STORE_ENV: Final = "BRIDGE_STORE"
"""Environment variable naming the store: a ``postgresql://`` URI (else SQLite)."""


def server_version() -> str:
    """Return the installed package version (``0+unknown`` from a bare checkout)."""
    try:
        return metadata.version("bridge")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def default_data_dir() -> Path:
    """Return the platform's user data directory for bridge (``platformdirs``)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(kw_only=True)
class BridgeOptions(TransportOptions):
    """Everything ``bridge serve`` can be told; the defaults are DESIGN's.

    The transport fields (host, port, uds, origins, hosts, limits, timeouts) are those of
    :class:`~bridge.rpc.server.TransportOptions`.

    Attributes:
        data_dir: holds ``bridge.db``, ``bridge.key`` and ``connection.json``.
        secret_backend: where the data key lives (``auto``, ``keyring``, ``file``).
        token: bearer token; None → ``BRIDGE_TOKEN`` or a fresh ``token_urlsafe(32)``.
        poll_interval_s: how often other processes' commits are looked for, in seconds.
        store: ``postgresql://…`` to share a PostgreSQL database with other instances;
            None → ``BRIDGE_STORE`` if set, else SQLite ``bridge.db`` in ``data_dir``.
        data_key_file: the data key shared by the instances (else ``BRIDGE_DATA_KEY``);
            required with PostgreSQL, optional with SQLite (replaces the keyring/file).
        outbound: False → no call ever leaves for a third party: ``llm-config:test``
            answers ``OUTBOUND_DISABLED`` (4003) (``--no-outbound``; shared deployments).
        max_concurrent_tests: most ``llm-config:test`` calls running at once in this
            process (others wait within their own timeout); None → unbounded.
        check_permissions: refuse a data directory, key, token or database file that
            another user could have planted or can read (DESIGN §6, :mod:`bridge.datadir`);
            False is the opt-out for mounted secrets: the problems are logged at warning,
            and only a path that is not a regular file or directory is still refused.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    secret_backend: SecretBackend = SecretBackend.AUTO
    token: str | None = field(default=None, repr=False)
    poll_interval_s: float = 0.2
    store: str | None = None
    data_key_file: Path | None = None
    outbound: bool = True
    max_concurrent_tests: int | None = MAX_CONCURRENT_DEFAULT
    check_permissions: bool = True


@dataclass
class Bridge:
    """A running bridge: its URL, token, service and server. Close with :meth:`close`."""

    url: str
    token: str = field(repr=False)
    registry: api.Registry
    service: LlmConfigService
    server: BridgeServer
    store: ConfigStore

    def connection_info(self) -> dict[str, Any]:
        """The ready line / connection file object: ``{event, url, token, pid, socket?}``."""
        info: dict[str, Any] = {
            "event": "ready",
            "url": self.url,
            "token": self.token,
            "pid": os.getpid(),
        }
        if self.server.settings.uds is not None:
            info["socket"] = str(self.server.settings.uds)
        return info

    def notify(self, topic: api.TopicSpec, payload: WireModel) -> None:
        """Send a notification on an application topic to every renderer, now."""
        self.server.notify(topic, payload.model_dump(mode="json"))

    async def close(self) -> None:
        """Graceful shutdown (DESIGN §7), then close the service and the store."""
        await self.server.shutdown()
        await self.service.close()
        await self.store.close()


def _resolve_token(explicit: str | None) -> str:
    token = explicit or os.environ.get("BRIDGE_TOKEN") or secrets.token_urlsafe(32)
    if not TOKEN_PATTERN.match(token):
        raise StartupError("The token must match [A-Za-z0-9_-]{32,}")
    return token


async def start_bridge(options: BridgeOptions | None = None, registry: api.Registry | None = None) -> Bridge:
    """Open the store, load the data key, and start serving.

    Args:
        options: settings; defaults to :class:`BridgeOptions` ().
        registry: a registry holding the application's own channels and topics; the
            ``llm-config:*``, ``bridge:hello`` and ``rpc.discover`` channels are added.

    Returns:
        The running :class:`Bridge`.

    Raises:
        InsecurePathError: the data directory or a key or database file fails the checks
            of DESIGN §6 (see ``check_permissions``).
        StartupError: the data key is lost while ciphertexts exist, or the token is malformed.
        OSError: the port is busy.
    """
    options = options or BridgeOptions()
    registry = registry or api.Registry()
    token = _resolve_token(options.token)
    _check_paths(options)
    store = _make_store(options)
    try:
        await store.open()
    except BaseException:
        await store.close()
        raise
    try:
        key = await _load_key(options, store)
    except BaseException:
        await store.close()
        raise
    if key.backend == "file" and not _is_shared(options):
        log.warning("secret_backend_file", detail="data key kept in a 0600 file, not the OS keyring")
    service = LlmConfigService(store, KeyCipher(key))
    tester = LlmConfigTester(service, enabled=options.outbound, max_concurrent=options.max_concurrent_tests)
    register_llm_config_channels(registry, service, tester)
    initial = await _load_once(store)

    document: dict[str, Any] = {}

    async def hello(_: EmptyParams) -> api.HelloResult:
        await service.initialize()
        info = service.cache_info()
        return api.HelloResult(
            server_version=server_version(),
            protocol_version=api.PROTOCOL_VERSION,
            schema_hash=document_hash,
            channels=registry.names(),
            revision=info.revision,
            secret_backend=key.backend,
            recovered_from=store.recovered_from,
            quarantined=[api.QuarantinedRow(id=q.id, reason=q.reason) for q in service.quarantined()],
            cache=api.CacheStats(count=info.count, bytes=info.bytes),
            degraded="load_failed" if info.load_failed else None,
        )

    async def discover(_: EmptyParams) -> dict[str, Any]:
        return document

    # Inline (bridge.rpc.eager): none of them needs a task; they answer without suspending.
    registry.add(api.BRIDGE_HELLO, hello, inline=True)
    registry.add(api.RPC_DISCOVER, discover, inline=True)
    registry.add(api.RPC_ON, api.subscription_handler(registry), inline=True)
    registry.add(api.RPC_OFF, api.subscription_handler(registry), inline=True)
    document.update(schemas.openrpc_document(registry.channels, registry.topics))
    document_hash = schemas.schema_hash(document)

    transport = {f.name: getattr(options, f.name) for f in fields(TransportOptions)}
    settings = ServerSettings(token=token, **transport)
    server = BridgeServer(
        Dispatcher(registry, max_batch=options.max_batch, max_reply_bytes=options.max_reply_bytes), settings
    )
    service.events.subscribe(lambda event: server.notify(api.LLM_CONFIG_CHANGED, event.to_wire()))
    try:
        await service.start(initial)
        try:
            await server.start()
        except OSError as exc:
            raise AddressUnavailableError(f"cannot listen: {exc.strerror}") from None
    except BaseException:
        await service.close()
        await store.close()
        raise
    return Bridge(server.url, token, registry, service, server, store)


def _store_uri(options: BridgeOptions) -> str | None:
    uri = options.store or os.environ.get(STORE_ENV) or None
    if uri is None or uri.startswith(("postgresql://", "postgres://")):
        return uri
    raise StartupError("The store must be a postgresql:// URI (or unset for the embedded SQLite store)")


def _is_shared(options: BridgeOptions) -> bool:
    return _store_uri(options) is not None


def _check_paths(options: BridgeOptions) -> None:
    """Check the data directory and the files about to be opened, before any is (DESIGN §6).

    With SQLite the directory is created first (0700), so nobody can slip their own in
    between the check and its first use.
    """
    sqlite = not _is_shared(options)
    if not options.check_permissions:
        log.warning("permission_checks_skipped", data_dir=str(options.data_dir))
    if sqlite:
        options.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    findings = datadir.check_data_dir(
        options.data_dir,
        database=options.data_dir / DB_FILE_NAME if sqlite else None,
        key_file=options.data_dir / KEY_FILE_NAME,
        secret_files=[] if options.data_key_file is None else [options.data_key_file],
    )
    datadir.enforce(findings, strict=options.check_permissions)


def _make_store(options: BridgeOptions) -> ConfigStore:
    """Return the configured store: PostgreSQL for a ``postgresql://`` URI, else SQLite."""
    uri = _store_uri(options)
    if uri is None:
        return SqliteConfigStore(options.data_dir / DB_FILE_NAME, poll_interval_s=options.poll_interval_s)
    try:
        from bridge.storage.postgres import PostgresConfigStore  # noqa: PLC0415 - optional extra
    except ImportError:
        raise StartupError("The PostgreSQL store needs asyncpg: pip install 'bridge[postgresql]'") from None
    return PostgresConfigStore(uri)


async def _load_once(store: ConfigStore) -> StoreState | None:
    """The start-up's one full read of the store; None when it fails (served degraded)."""
    try:
        return await store.load()
    except Exception:
        log.exception("store_load_failed")
        return None


async def _load_key(options: BridgeOptions, store: ConfigStore) -> DataKey:
    """Return the data key, refusing one that did not seal the stored API keys (DESIGN §3).

    A shared key (``--data-key-file`` / ``BRIDGE_DATA_KEY``) is required with PostgreSQL:
    every instance must open what the others sealed. Each ciphertext starts with the id
    of its key, so a wrong key is refused here, before any row is read for use or changed:
    refused when no stored ciphertext names one of the given keys. Rows naming an unknown
    key beside rows the key opens are quarantined by the service (``UNKNOWN_KEY_ID``).
    """
    shared = load_shared_data_key(
        options.data_key_file, os.environ.get(DATA_KEY_ENV), strict=options.check_permissions
    )
    if shared is not None:
        key = shared
    elif _is_shared(options):
        raise StartupError(
            f"A PostgreSQL store is shared by instances: give them one data key with --data-key-file "
            f"or {DATA_KEY_ENV}"
        )
    else:
        key = await asyncio.to_thread(
            load_data_key,
            options.data_dir,
            options.secret_backend,
            must_exist=await store.has_ciphertexts(),
        )
    stored = await store.key_ids()
    if stored and not stored & key.key_ids:
        foreign = sorted(k.hex() for k in stored)
        raise StartupError(
            f"The store holds API keys sealed with data key id {', '.join(foreign)} but the given key's "
            f"id is {key.key_id.hex()}; start with the key the other instances use (nothing was changed)"
        )
    return key


def _write_connection_file(path: Path, data: bytes) -> None:
    """Write ``data`` (the connection file's JSON) atomically to ``path`` with mode 0600.

    Through an unguessable temporary name opened ``O_EXCL|O_NOFOLLOW``: a link planted in
    a shared directory never receives the token (:func:`bridge.datadir.write_private_file`).
    """
    datadir.write_private_file(path, data)


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def serve(
    options: BridgeOptions | None = None,
    registry: api.Registry | None = None,
    *,
    connection_file: Path | None = None,
    exit_with_parent: bool = False,
    on_ready: Callable[[Bridge], Awaitable[None] | None] | None = None,
) -> None:
    """Run a bridge until SIGTERM/SIGINT (or stdin EOF with ``exit_with_parent``).

    Writes the connection file (0600, atomic; removed on exit) and calls ``on_ready``
    once listening. See :func:`start_bridge` for ``options`` and ``registry``.
    """
    options = options or BridgeOptions()
    bridge = await start_bridge(options, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.info("event_loop_selected", loop=f"{type(loop).__module__}.{type(loop).__name__}")
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if exit_with_parent:
        _watch_stdin(loop, stop)
    conn_path = connection_file or options.data_dir / CONNECTION_FILE_NAME
    try:
        _warn_if_taking_over(conn_path)
        _write_connection_file(conn_path, orjson.dumps(bridge.connection_info()))
        if on_ready is not None:
            maybe = on_ready(bridge)
            if maybe is not None:
                await maybe
        await stop.wait()
        log.info("shutdown_started")
    finally:
        # Removed first, so no client re-reads it and dials a server that is going away;
        # and only if it is still ours (another instance may have replaced it).
        _remove_connection_file(conn_path, os.getpid())
        await bridge.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _connection_file_pid(path: Path) -> int | None:
    """The ``pid`` the connection file at ``path`` names; None when absent or unreadable.

    Read without blocking: a FIFO planted under that name is not a connection file.
    """
    try:
        info = orjson.loads(datadir.read_small_file(path, None))
    except (OSError, orjson.JSONDecodeError, InsecurePathError):
        return None
    pid = info.get("pid") if isinstance(info, dict) else None
    return pid if type(pid) is int else None


def _warn_if_taking_over(path: Path) -> None:
    """Log when the connection file names another running server (a shared data dir).

    The file names the server started last; when that one stops, the file is removed
    even if the other still runs. Servers sharing a data directory should each get their
    own ``--connection-file``.
    """
    pid = _connection_file_pid(path)
    if pid is None or pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent; raises when there is no such process
    except (ProcessLookupError, OverflowError):
        return
    except PermissionError:
        pass  # it exists, owned by another user
    log.warning("connection_file_taken_over", path=str(path), previous_pid=pid)


def _remove_connection_file(path: Path, pid: int) -> None:
    """Delete the connection file at ``path`` if it still names process ``pid``."""
    if _connection_file_pid(path) == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches EOF: the parent app is gone (sidecar pattern)."""

    def wait_for_eof() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, name="exit-with-parent", daemon=True).start()


# ---- command line -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Serve LLM provider configs to renderers over JSON-RPC 2.0 / WebSocket "
        "(an Electron/Tauri sidecar, or a local service).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    srv = sub.add_parser("serve", help="serve renderers over JSON-RPC 2.0 / WebSocket")
    srv.add_argument("--data-dir", type=Path, help="data directory (default: the platform's user data dir)")
    srv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    srv.add_argument("--uds", type=Path, help="serve on this Unix socket (mode 0600) instead of TCP")
    srv.add_argument("--token-file", type=Path, help="read the token from this file (else BRIDGE_TOKEN)")
    srv.add_argument("--connection-file", type=Path, help="where to write the connection file")
    srv.add_argument(
        "--store",
        help=f"postgresql://user:password@host:port/db to share a database with other instances "
        f"(else {STORE_ENV}; default: SQLite in the data directory)",
    )
    srv.add_argument(
        "--data-key-file",
        type=Path,
        help=f"data key shared by the instances (else {DATA_KEY_ENV}); required with --store",
    )
    srv.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="accept this Origin: exact, or a port wildcard for dev servers (http://localhost:*)",
    )
    srv.add_argument("--allow-host", action="append", default=[], help="accept this Host name")
    srv.add_argument(
        "--secret-backend",
        choices=[b.value for b in SecretBackend],
        default="auto",
        help="data key source",
    )
    srv.add_argument("--max-connections", type=int, default=64)
    srv.add_argument("--max-message-bytes", type=int, default=256 * 1024)
    srv.add_argument("--max-batch", type=int, default=100)
    srv.add_argument(
        "--outbound-cap-bytes", type=int, default=1024 * 1024, help="per-connection send buffer cap"
    )
    srv.add_argument(
        "--max-reply-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="byte budget of one reply frame; past it → 4013 (default 4 MiB)",
    )
    srv.add_argument(
        "--max-handshakes",
        type=int,
        default=128,
        help="most connections still in their opening handshake; the oldest is dropped past it",
    )
    srv.add_argument("--max-handshakes-per-peer", type=int, default=64, help="the same, per peer address")
    srv.add_argument(
        "--max-handshake-bytes",
        type=int,
        default=64 * 1024,
        help="most bytes of an opening handshake (request line and headers); past it → 431",
    )
    srv.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="PER_SECOND",
        help="requests per second per connection (burst of the same size); excess → 4029 (default: off)",
    )
    srv.add_argument(
        "--no-outbound",
        dest="outbound",
        action="store_false",
        help="never call a third party: llm-config:test answers OUTBOUND_DISABLED (shared deployments)",
    )
    srv.add_argument("--shutdown-timeout", type=float, default=5.0, help="graceful shutdown bound, seconds")
    srv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    srv.add_argument("--exit-with-parent", action="store_true", help="shut down when stdin closes")
    srv.add_argument(
        "--skip-permission-checks",
        action="store_true",
        help="use a data directory, key, token or database file that another user could write or "
        "read (mounted secrets); logged at warning. Default: refuse, like ssh",
    )
    srv.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop: uvloop when installed (auto, the default), uvloop (required) or asyncio",
    )

    sch = sub.add_parser("schemas", help="write (or --check) the generated schemas")
    sch.add_argument("--out", type=Path, default=Path("schemas"), help="output directory (default schemas/)")
    sch.add_argument("--check", action="store_true", help="exit 1 if the files differ from the code")

    call = sub.add_parser("call", help="invoke a channel on a running server and print the result")
    call.add_argument("channel")
    call.add_argument("params", nargs="?", help="JSON object of params")
    call.add_argument("--connection-file", type=Path, help="connection file of the running server")
    call.add_argument("--data-dir", type=Path, help="data directory holding connection.json")
    call.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    _add_doctor_parser(sub)
    _add_rotate_key_parser(sub)
    return parser


def _add_store_flags(cmd: argparse.ArgumentParser) -> None:
    """The flags that locate a store and its data keys, as ``bridge serve`` takes them."""
    cmd.add_argument("--data-dir", type=Path, help="data directory (default: the platform's user data dir)")
    cmd.add_argument(
        "--secret-backend", choices=[b.value for b in SecretBackend], default="auto", help="data key source"
    )
    cmd.add_argument(
        "--store", help=f"postgresql://… URI of a shared store (else {STORE_ENV}; default SQLite)"
    )
    cmd.add_argument(
        "--data-key-file", type=Path, help=f"data key file shared by the instances (else {DATA_KEY_ENV})"
    )


def _add_doctor_parser(sub: Any) -> None:
    doc = sub.add_parser(
        "doctor", help="list quarantined rows and structural findings of a SQLite store (no server started)"
    )
    doc.add_argument("--data-dir", type=Path, help="data directory (default: the platform's user data dir)")
    doc.add_argument(
        "--secret-backend", choices=[b.value for b in SecretBackend], default="auto", help="data key source"
    )
    doc.add_argument(
        "--data-key-file", type=Path, help=f"data key file (else {DATA_KEY_ENV} or the data dir's)"
    )


def _add_rotate_key_parser(sub: Any) -> None:
    rot = sub.add_parser(
        "rotate-key",
        help="add a new data key, re-seal every API key with it in one transaction, retire the old key",
    )
    _add_store_flags(rot)
    rot.add_argument(
        "--stage",
        action="store_true",
        help="only add the new key to the key source (then restart every instance, then rotate)",
    )


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return the event loop factory for ``--loop`` (None: asyncio's default loop).

    ``auto`` picks uvloop when it is installed (the ``uvloop`` extra), else asyncio.

    Raises:
        StartupError: ``uvloop`` was asked for and is not installed.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        if choice == "uvloop":
            raise StartupError(
                "--loop uvloop: uvloop is not installed (pip install 'bridge[uvloop]')"
            ) from None
        return None
    return uvloop.new_event_loop


def _serve_command(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    # Room for many sockets: the handshake caps are derived from this limit (DESIGN §6).
    raise_descriptor_limit()
    try:
        factory = loop_factory(args.loop)
    except StartupError as exc:
        _emit({"event": "error", "error": exc.code, "message": exc.message})
        return 2
    try:
        token = _read_token_file(args.token_file, strict=not args.skip_permission_checks)
    except StartupError as exc:
        _emit({"event": "error", "error": exc.code, "message": exc.message, **(exc.context or {})})
        return 2
    try:
        options = _options_from(args, token)
    except InvalidSettingError as exc:
        flag = _FLAGS.get(exc.name, "--" + exc.name.replace("_", "-"))
        _emit(
            {
                "event": "error",
                "error": StartupError.code,
                "message": f"invalid {flag}: must be {exc.requirement} (got {exc.value!r})",
            }
        )
        return 2

    def announce(bridge: Bridge) -> None:
        _emit(bridge.connection_info())

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(
                serve(
                    options,
                    connection_file=args.connection_file,
                    exit_with_parent=args.exit_with_parent,
                    on_ready=announce,
                )
            )
    except StartupError as exc:
        _emit({"event": "error", "error": exc.code, "message": exc.message, **(exc.context or {})})
        return 2
    except Exception as exc:
        # Anything else that stops start-up (an unwritable data directory, an unreachable
        # database...) still ends in one JSON line, as the sidecar contract promises; the
        # traceback goes to the log.
        log.exception("startup_failed")
        _emit({"event": "error", "error": StartupError.code, "message": f"cannot start: {_describe(exc)}"})
        return 2
    return 0


def _read_token_file(path: Path | None, *, strict: bool) -> str | None:
    """The token in ``path`` (None without one), read without blocking and checked (DESIGN §6).

    Raises:
        InsecurePathError: the file is not a regular file, or (with ``strict``) another
            user owns it or can read or write it.
        StartupError: it cannot be read.
    """
    if path is None:
        return None
    try:
        raw = datadir.read_small_file(path, datadir.Kind.SECRET, strict=strict)
    except OSError as exc:
        raise StartupError(f"cannot read the token file: {exc.strerror}") from None
    return raw.decode("utf-8", errors="replace").strip()


_FLAGS: Final = {
    "rate_limit_per_s": "--rate-limit",
    "shutdown_timeout_s": "--shutdown-timeout",
    "allow_origins": "--allow-origin",
}
"""``bridge serve`` flags whose name is not the setting's with dashes."""


def _describe(exc: BaseException) -> str:
    """A start-up failure for the error line: the OS error and its path, else the type.

    Only an ``OSError``'s own parts are shown (its text and the path involved): other
    exceptions may carry a database URI with its password, so they give their type only.
    """
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return f"{type(exc).__name__} ({exc.strerror}){where}"
    return type(exc).__name__


def _options_from(args: argparse.Namespace, token: str | None) -> BridgeOptions:
    """The :class:`BridgeOptions` of ``bridge serve``'s flags.

    Raises:
        InvalidSettingError: a flag's value is out of range.
    """
    return BridgeOptions(
        data_dir=args.data_dir or default_data_dir(),
        secret_backend=SecretBackend(args.secret_backend),
        token=token,
        host=args.host,
        port=args.port,
        uds=args.uds,
        allow_origins=frozenset(args.allow_origin),
        allow_hosts=frozenset(h.lower() for h in args.allow_host),
        max_message_bytes=args.max_message_bytes,
        max_batch=args.max_batch,
        max_connections=args.max_connections,
        outbound_cap_bytes=args.outbound_cap_bytes,
        max_reply_bytes=args.max_reply_bytes,
        max_handshakes=args.max_handshakes,
        max_handshakes_per_peer=args.max_handshakes_per_peer,
        max_handshake_bytes=args.max_handshake_bytes,
        rate_limit_per_s=args.rate_limit,
        shutdown_timeout_s=args.shutdown_timeout,
        store=args.store,
        data_key_file=args.data_key_file,
        outbound=args.outbound,
        check_permissions=not args.skip_permission_checks,
    )


def _schemas_command(args: argparse.Namespace) -> int:
    from bridge.schemas import write_schemas  # noqa: PLC0415 - only this command needs it

    return write_schemas(args.out, check=args.check)


def _load_connection(path: Path) -> ConnectionInfo | dict[str, str]:
    """The connection file at ``path``, or the error (``code``, ``message``) to print."""
    from bridge.client import read_connection_file  # noqa: PLC0415

    try:
        return read_connection_file(path)
    except FileNotFoundError:
        message = f"no connection file at {path} (is bridge serve running with this data directory?)"
        return {"code": "UNREACHABLE", "message": message}
    except OSError as exc:
        return {"code": "UNREACHABLE", "message": f"cannot read {path}: {exc.strerror}"}
    except ValueError:  # not JSON, or not a connection file
        return {"code": "BAD_CONNECTION_FILE", "message": f"{path} is not a bridge connection file"}


def _call_command(args: argparse.Namespace) -> int:
    from bridge.client import BridgeClient  # noqa: PLC0415

    path = args.connection_file or (args.data_dir or default_data_dir()) / CONNECTION_FILE_NAME
    try:
        params = None if args.params is None else json.loads(args.params)
    except json.JSONDecodeError as exc:
        _emit({"error": {"code": "INVALID_PARAMS_JSON", "message": f"params are not JSON: {exc.msg}"}})
        return 2

    info = _load_connection(path)
    if isinstance(info, dict):
        _emit({"error": info})
        return 1

    async def run() -> Any:
        async with BridgeClient(info.url, info.token, unix_socket=info.socket) as client:
            return await asyncio.wait_for(client.invoke(args.channel, params), args.timeout)

    try:
        result = asyncio.run(run())
    except BridgeError as exc:
        _emit({"error": {"code": exc.rpc_code, "message": exc.message, "data": exc.to_data()}})
        return 1
    except (OSError, TimeoutError) as exc:
        _emit(
            {
                "error": {
                    "code": "UNREACHABLE",
                    "message": f"cannot reach the server: {type(exc).__name__}",
                }
            }
        )
        return 1
    _emit({"result": result})
    return 0


def _doctor_command(args: argparse.Namespace) -> int:
    """``bridge doctor``: examine ``bridge.db`` read-only; exit 0 when clean, 1 with findings."""
    from bridge.service.maintenance import examine_rows  # noqa: PLC0415
    from bridge.storage.sqlite import examine_file  # noqa: PLC0415

    configure_logging("warning")
    data_dir: Path = args.data_dir or default_data_dir()
    path = data_dir / DB_FILE_NAME
    try:
        exam = examine_file(path)
    except (OSError, sqlite3.Error) as exc:
        _emit(
            {
                "event": "error",
                "error": StartupError.code,
                "message": f"cannot examine {path}: {_describe(exc)}",
            }
        )
        return 2
    key_problem = None
    key = None
    if exam.rows:
        try:
            key = load_shared_data_key(args.data_key_file, os.environ.get(DATA_KEY_ENV)) or load_data_key(
                data_dir, SecretBackend(args.secret_backend), must_exist=True
            )
        except StartupError as exc:
            key_problem = exc.message
    findings = examine_rows(exam.rows, key)
    report = {
        "event": "doctor",
        "database": str(path),
        "schemaVersion": exam.schema_version,
        "damage": exam.damage,
        "structure": exam.repairable,
        "fatal": exam.fatal,
        "dataKey": key_problem,
        "rows": len(exam.rows),
        "quarantined": [{"id": f.id, "reason": f.reason} for f in findings],
    }
    _emit(report)
    clean = not (exam.damage or exam.repairable or exam.fatal or key_problem or findings)
    return 0 if clean else 1


def _rotate_key_command(args: argparse.Namespace) -> int:
    """``bridge rotate-key``: see :func:`bridge.service.maintenance.rotate_data_key`."""
    configure_logging("warning")
    try:
        return asyncio.run(_rotate_key(args))
    except StartupError as exc:
        _emit({"event": "error", "error": exc.code, "message": exc.message})
        return 2
    except Exception as exc:
        log.exception("rotate_key_failed")
        _emit({"event": "error", "error": StartupError.code, "message": f"cannot rotate: {_describe(exc)}"})
        return 2


async def _rotate_key(args: argparse.Namespace) -> int:
    from bridge.keystore import write_data_key, write_key_file  # noqa: PLC0415
    from bridge.service.maintenance import rotate_data_key, stage_data_key  # noqa: PLC0415

    options = BridgeOptions(
        data_dir=args.data_dir or default_data_dir(),
        secret_backend=SecretBackend(args.secret_backend),
        store=args.store,
        data_key_file=args.data_key_file,
    )
    if args.data_key_file is None and os.environ.get(DATA_KEY_ENV):
        raise StartupError(f"rotate-key cannot write {DATA_KEY_ENV}: keep the keys in a --data-key-file")

    def save(key: DataKey) -> None:
        if options.data_key_file is not None:
            write_key_file(options.data_key_file, key)
        else:
            write_data_key(options.data_dir, key)

    store = _make_store(options)
    await store.open()
    try:
        key = await _load_key(options, store)
        if args.stage:
            staged = stage_data_key(key, save)
            _emit({"event": "staged", "sealingKeyId": staged.key_id.hex()})
            return 0
        report = await rotate_data_key(store, key, save)
    finally:
        await store.close()
    _emit(
        {
            "event": "rotated",
            "sealingKeyId": report.sealing_key_id,
            "resealed": report.resealed,
            "unopened": report.unopened,
            "retired": report.retired,
            "kept": report.kept,
        }
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bridge`` command; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve_command(args)
    if args.command == "schemas":
        return _schemas_command(args)
    if args.command == "doctor":
        return _doctor_command(args)
    if args.command == "rotate-key":
        return _rotate_key_command(args)
    return _call_command(args)
