"""The embedding API and composition root: :class:`Bridge`, :func:`start_bridge`, :func:`serve`.

This is the only module that wires concrete classes together (store, key, service,
dispatcher, server). Applications embedding bridge call :func:`start_bridge` or
:func:`serve` with a :class:`~bridge.api.Registry` holding their own channels::

    registry = bridge.Registry()
    registry.add(MY_CHANNEL, my_handler)
    await bridge.serve(bridge.BridgeOptions(transport=bridge.TransportOptions(port=0)), registry)

``bridge serve`` (:mod:`bridge.cli`) is a thin layer over :func:`run_sidecar`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog

from bridge import __version__, api, datadir, sidecar
from bridge.connection_file import CONNECTION_FILE_NAME, ConnectionInfo
from bridge.errors import AddressUnavailableError, ConfigOperationFailedError, StartupError
from bridge.keystore import (
    DATA_KEY_ENV,
    KEY_FILE_NAME,
    DataKey,
    KeyCipher,
    SecretBackend,
    load_data_key,
    load_shared_data_key,
)
from bridge.llm_config import LLM_CONFIG
from bridge.log import configure_library_logging, configure_logging
from bridge.models import EmptyParams, WireModel
from bridge.options import (
    STORE_ENV,
    TOKEN_ENV,
    BridgeOptions,
    OutboundOptions,
    SecretOptions,
    SidecarOptions,
    StoreOptions,
    TransportOptions,
)
from bridge.rpc.dispatch import Dispatcher
from bridge.rpc.server import TOKEN_PATTERN, BridgeServer, ServerSettings, raise_descriptor_limit
from bridge.service import LlmConfigService, register_llm_config_channels
from bridge.service.tester import LlmConfigTester
from bridge.state import printable_id
from bridge.storage import DB_FILE_NAME, ConfigStore, SqliteConfigStore, StoreState

if TYPE_CHECKING:
    from bridge.collection.protocol import CollectionStore
    from bridge.collection.rules import Rules
    from bridge.collection.service import CollectionService, Referenced

log = structlog.get_logger(__name__)

COLLECTIONS_DB_FILE_NAME = "collections.db"
"""The SQLite file of the application's collections, beside ``bridge.db`` in the data directory."""

__all__ = [
    "Bridge",
    "BridgeOptions",
    "OutboundOptions",
    "SecretOptions",
    "SidecarOptions",
    "StoreOptions",
    "TransportOptions",
    "published_document",
    "run_doctor",
    "run_rotate_key",
    "run_sidecar",
    "serve",
    "server_version",
    "start_bridge",
]


def server_version() -> str:
    """Return the package version, ``bridge.__version__`` (``bridge:hello`` ``serverVersion``)."""
    return __version__


@dataclass
class Bridge:
    """A running bridge: its URL, token, service and server. Close with :meth:`close`."""

    url: str
    token: str = field(repr=False)
    registry: api.Registry
    service: LlmConfigService
    server: BridgeServer
    store: ConfigStore
    channels: BridgeChannels = field(repr=False)
    """The ``bridge:hello`` and ``rpc.discover`` handlers (they cache the document)."""
    collections: dict[str, CollectionService] = field(default_factory=dict, repr=False)
    """The service of each collection the registry serves, by collection name."""
    collection_store: CollectionStore | None = field(default=None, repr=False)
    """The store of the collections (``collections.db``); None without collections."""

    def connection_info(self) -> ConnectionInfo:
        """Where clients reach this bridge: the ready line / connection file's content."""
        uds = self.server.settings.uds
        return ConnectionInfo(self.url, self.token, None if uds is None else str(uds), os.getpid())

    def schema_hash(self) -> str:
        """The ``schemaHash`` this bridge announces in ``bridge:hello`` (``sha256:<hex>``).

        What a client's ``schema_hash`` option should be when its types describe this
        registry (:func:`published_document`; generated once, for a registry with channels
        of its own, and shared with ``rpc.discover``).
        """
        return self.channels.document()[1]

    def notify(self, topic: api.TopicSpec, payload: WireModel) -> None:
        """Send a notification on an application topic to every renderer (held while a batch runs)."""
        self.server.notify(topic, payload.model_dump(mode="json"))

    _resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack, repr=False)
    """What start-up opened, closed in reverse order: the server (graceful shutdown), the
    collections, the service, the stores."""

    async def close(self) -> None:
        """Graceful shutdown (DESIGN §7), then close the services and the stores.

        Every one is closed even when an earlier step raises (the shutdown included); the
        first failure is then raised, after the rest are closed.
        """
        await self._resources.aclose()


def _published(registry: api.Registry) -> list[api.ChannelSpec[Any, Any]]:
    """The registry's channels the OpenRPC document describes: all but the process-control ones."""
    return [spec for spec in registry.channels if spec not in api.OPTIONAL_CHANNELS]


def _is_stock(registry: api.Registry) -> bool:
    """True when ``registry`` publishes exactly a stock ``bridge serve``'s channels and topics."""
    channels = {spec.name: spec for spec in _published(registry)}
    topics = {topic.name: topic for topic in registry.topics}
    return (
        len(channels) == len(api.BUILTIN_CHANNELS)
        and all(channels.get(spec.name) is spec for spec in api.BUILTIN_CHANNELS)
        and len(topics) == len(api.BUILTIN_TOPICS)
        and all(topics.get(topic.name) is topic for topic in api.BUILTIN_TOPICS)
    )


def published_document(registry: api.Registry) -> tuple[dict[str, Any], str]:
    """Return the OpenRPC 1.3 document ``rpc.discover`` serves for ``registry``, and its ``schemaHash``.

    A stock registry's is read from the package data file ``bridge/openrpc.json`` (the
    committed ``schemas/openrpc.json``); a registry with channels of its own is generated
    (:func:`bridge.schemas.openrpc_document`). The process-control channels
    (``bridge:shutdown``) are left out, so neither depends on the mode.

    Returns:
        ``(document, "sha256:<hex>")`` — the hash of the document's canonical bytes (DESIGN §5).
    """
    if _is_stock(registry):
        raw, digest = api.builtin_openrpc()
        return orjson.loads(raw), digest
    from bridge import schemas  # noqa: PLC0415 - generated only when asked for

    document = schemas.openrpc_document(_published(registry), registry.topics)
    return document, schemas.schema_hash(document)


class ShutdownChannel:
    """The handler of ``bridge:shutdown``: asks :func:`serve` to stop, as SIGTERM does.

    Args:
        stop: the event :func:`serve` waits on; set once the response is on its way.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        """Remember the stop event."""
        self.stop = stop

    async def shutdown(self, _: EmptyParams) -> api.ShutdownResult:
        """``bridge:shutdown``: start the graceful shutdown (DESIGN §7); this response is sent first.

        The event is set on the next loop turn, after the dispatcher has the result: the
        shutdown then waits for the in-flight requests, this one included.
        """
        log.info("shutdown_requested", via=api.BRIDGE_SHUTDOWN.name)
        asyncio.get_running_loop().call_soon(self.stop.set)
        return api.ShutdownResult()


class BridgeChannels:
    """The handlers of ``bridge:hello`` and ``rpc.discover`` for one running bridge.

    The OpenRPC document is made on first use, not at start-up: a stock registry's is
    read from the package data file ``bridge/openrpc.json`` (the committed
    ``schemas/openrpc.json``); a registry with channels of its own is generated from it,
    once.

    Args:
        registry: the registry being served (its names are listed by ``bridge:hello``).
        service: the LLM-config service (initialized by ``bridge:hello``).
        store: the store (its ``recovered_from`` is reported).
        secret_backend: ``keyring`` or ``file``: where the data key came from.
    """

    def __init__(
        self, registry: api.Registry, service: LlmConfigService, store: ConfigStore, secret_backend: str
    ) -> None:
        """Remember what ``bridge:hello`` reports."""
        self.registry = registry
        self.service = service
        self.store = store
        self.secret_backend = secret_backend
        self._document: dict[str, Any] | None = None
        self._hash = ""

    def document(self) -> tuple[dict[str, Any], str]:
        """The OpenRPC 1.3 document of the registry and its ``schemaHash`` (``sha256:<hex>``)."""
        if self._document is None:
            self._document, self._hash = published_document(self.registry)
        return self._document, self._hash

    async def hello(self, _: EmptyParams) -> api.HelloResult:
        """``bridge:hello``: versions, schema hash, channels, revision (DESIGN §5)."""
        await self.service.initialize()
        info = self.service.cache_info()
        return api.HelloResult(
            server_version=server_version(),
            protocol_version=api.PROTOCOL_VERSION,
            schema_hash=self.document()[1],
            channels=self.registry.names(),
            revision=info.revision,
            secret_backend=self.secret_backend,
            recovered_from=self.store.recovered_from,
            quarantined=[api.QuarantinedRow(id=q.id, reason=q.reason) for q in self.service.quarantined()],
            cache=api.CacheStats(count=info.count, bytes=info.bytes),
            degraded="load_failed" if info.load_failed else None,
        )

    async def discover(self, _: EmptyParams) -> dict[str, Any]:
        """``rpc.discover``: the OpenRPC 1.3 document of every registered channel and topic."""
        return self.document()[0]


def _resolve_token(explicit: str | None) -> str:
    token = explicit or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    if not TOKEN_PATTERN.match(token):
        raise StartupError("The token must match [A-Za-z0-9_-]{32,}")
    return token


async def start_bridge(options: BridgeOptions | None = None, registry: api.Registry | None = None) -> Bridge:
    """Open the store, load the data key, and start serving.

    Args:
        options: settings; defaults to :class:`BridgeOptions` ().
        registry: a registry holding the application's own channels and topics; the
            ``llm-config:*``, ``bridge:hello`` and ``rpc.discover`` channels are added.

    Logging: unless the program has configured structlog, bridge's lines go, redacted,
    to the standard library's :mod:`logging` (``bridge.*`` loggers), never to stdout
    (:func:`bridge.log.configure_library_logging`).

    Returns:
        The running :class:`Bridge`.

    Raises:
        InsecurePathError: the data directory, a key or database file, or a directory
            holding the ``uds`` socket fails the checks of DESIGN §6 (see
            ``check_permissions``).
        StartupError: the data key is lost while ciphertexts exist, or the token is malformed.
        AddressUnavailableError: the address cannot be listened on (e.g. the port is busy).
    """
    configure_library_logging()
    options = options or BridgeOptions()
    registry = registry or api.Registry()
    token = _resolve_token(options.token)
    _check_paths(options)
    # Each step's undo is pushed as soon as the step is done: a failure or a cancellation
    # anywhere below closes what was opened, in reverse order. On success the stack is
    # handed to the Bridge, whose close() unwinds it.
    async with contextlib.AsyncExitStack() as opened:
        store = _make_store(options)
        opened.push_async_callback(store.close)
        await store.open()
        collection_store = await _open_collection_store(options, registry)
        if collection_store is not None:
            opened.push_async_callback(collection_store.close)
        key = await _load_key(options, store, collection_store)
        if key.backend == "file" and not _is_shared(options.store):
            log.warning("secret_backend_file", detail="data key kept in a 0600 file, not the OS keyring")
        service = LlmConfigService(store, KeyCipher(key))
        opened.push_async_callback(service.close)
        tester = LlmConfigTester(
            service, enabled=options.outbound.enabled, max_concurrent=options.outbound.max_concurrent_tests
        )
        register_llm_config_channels(registry, service, tester)
        initial = await _load_once(store)

        builtin = BridgeChannels(registry, service, store, key.backend)
        # Inline (bridge.rpc.eager): none of them needs a task; they answer without suspending.
        registry.add(api.BRIDGE_HELLO, builtin.hello, inline=True)
        registry.add(api.RPC_DISCOVER, builtin.discover, inline=True)
        registry.add(api.RPC_ON, api.subscription_handler(registry), inline=True)
        registry.add(api.RPC_OFF, api.subscription_handler(registry), inline=True)

        # The RPC layer takes one flat settings object: the transport options plus the token.
        server = BridgeServer(
            Dispatcher(
                registry,
                max_batch=options.transport.max_batch,
                max_reply_bytes=options.transport.max_reply_bytes,
            ),
            ServerSettings(token=token, **_shallow_fields(options.transport)),
        )
        service.events.subscribe(lambda event: server.notify(api.LLM_CONFIG_CHANGED, event.to_wire()))
        await service.start(initial)
        collections: dict[str, CollectionService] = {}
        if collection_store is not None:
            collections = await _start_collections(
                registry, collection_store, KeyCipher(key), service, server
            )
            for collection in collections.values():
                opened.push_async_callback(collection.close)
        # Pushed before start(): a listener bound when start-up fails or is cancelled is
        # closed; and the graceful shutdown is the first step Bridge.close() unwinds.
        opened.push_async_callback(lambda: server.shutdown())  # noqa: PLW0108 - looked up at close
        try:
            await server.start()
        except OSError as exc:
            raise AddressUnavailableError(f"cannot listen: {exc.strerror}") from None
        return Bridge(
            server.url,
            token,
            registry,
            service,
            server,
            store,
            builtin,
            collections,
            collection_store,
            _resources=opened.pop_all(),
        )


def _notifier(server: BridgeServer, topic: api.TopicSpec) -> Callable[[Any], None]:
    """A subscriber sending each event of a collection as a ``topic`` notification."""

    def notify(event: Any) -> None:
        server.notify(topic, event.model_dump(mode="json"))

    return notify


def _follow_references(svc: CollectionService, sources: dict[str, Referenced]) -> None:
    """A referenced item's deletion (here, or by another process) sets ``svc``'s fields holding it to null.

    Deletion is the row leaving the store (the service's ``removed``), whether it was served
    or held in quarantine. An item sent as ``deleted`` because it went into quarantine is
    not deleted (an update may restore it): references to it are kept.
    """
    for target in {ref.target for ref in svc.rules.references.values()}:
        source = sources[target]

        def on_removed(item_id: str, target: str = target, source: Referenced = source) -> None:
            task = svc.on_deleted(target, item_id)
            if task is not None:
                # The deleting service awaits it: the set-null events precede its response.
                source.events.follow_up(task)

        source.removed.subscribe(on_removed)


async def _open_collection_store(options: BridgeOptions, registry: api.Registry) -> CollectionStore | None:
    """Open the collections' store when the registry serves collections; None otherwise.

    ``collections.db`` in the data directory with the embedded SQLite store; the same
    PostgreSQL database as the configs (tables ``bridge_item*``, ``bridge_collection_*``)
    with a ``postgresql://`` store.

    Raises:
        StartupError: the PostgreSQL server cannot be reached.
        SchemaTooNewError: the collections' schema is newer than this bridge.
    """
    if not registry.collections:
        return None
    return await _collection_store(options)


async def _collection_store(options: BridgeOptions) -> CollectionStore:
    """Open the collections' store of ``options`` (created when missing)."""
    store: CollectionStore
    uri = _store_uri(options.store)
    if uri is not None:
        from bridge.collection.postgres import PostgresCollectionStore  # noqa: PLC0415 - optional extra

        store = PostgresCollectionStore(uri, poll_interval_s=options.store.poll_interval_s)
    else:
        from bridge.collection.sqlite import SqliteCollectionStore  # noqa: PLC0415 - only with collections

        store = SqliteCollectionStore(
            options.data_dir / COLLECTIONS_DB_FILE_NAME,
            poll_interval_s=options.store.poll_interval_s,
        )
    try:
        await store.open()
    except BaseException:
        await store.close()
        raise
    return store


def _check_targets(bindings: list[Any]) -> None:
    """Raise StartupError when a reference names a collection that is not served."""
    known = {b.rules.name for b in bindings} | {"llm-config"}
    for binding in bindings:
        rules = binding.rules
        for field_name, ref in rules.references.items():
            if ref.target not in known:
                raise StartupError(
                    f"{rules.name}.{field_name} references {ref.target!r}, which is not served"
                )


async def _start_collections(
    registry: api.Registry,
    store: CollectionStore,
    cipher: KeyCipher,
    configs: LlmConfigService,
    server: BridgeServer,
) -> dict[str, CollectionService]:
    """Start a service per collection, wire its events, references and channels; repair dangling references.

    Raises:
        StartupError: a reference names a collection that is not served.
    """
    from bridge.collection.channels import CollectionChannels  # noqa: PLC0415 - only with collections
    from bridge.collection.service import CollectionService  # noqa: PLC0415

    bindings: list[CollectionChannels] = registry.collections
    services: dict[str, CollectionService] = {}
    _check_targets(bindings)

    # Every collection a reference may name, llm-config (the first collection) included.
    sources: dict[str, Referenced] = {LLM_CONFIG.name: configs}

    async def resolve(target: str, item_id: str) -> bool:
        source = sources.get(target)
        if source is None:
            return False
        if source.load_failed:
            # Served degraded (empty): an absent item is not a deleted one.
            raise ConfigOperationFailedError(f"{target} could not be loaded; references cannot be checked")
        # A quarantined item is still stored (an update may restore it): not a dangling reference.
        return await source.fetch(item_id) is not None or source.holds(item_id)

    for binding in bindings:
        services[binding.rules.name] = CollectionService(binding.rules, store, cipher, resolve=resolve)
    sources.update(services)
    try:
        for binding in bindings:
            svc = services[binding.rules.name]
            svc.events.subscribe(_notifier(server, binding.topic))
            binding.attach(svc)
            await svc.start()
        for svc in services.values():
            _follow_references(svc, sources)
            await svc.repair_references()
    except BaseException:
        # The ones started already follow the store: stop them before it closes.
        for svc in services.values():
            await svc.close()
        raise
    return services


def _shallow_fields(options: TransportOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def _store_uri(store: StoreOptions) -> str | None:
    uri = store.uri or os.environ.get(STORE_ENV) or None
    if uri is None or uri.startswith(("postgresql://", "postgres://")):
        return uri
    raise StartupError("The store must be a postgresql:// URI (or unset for the embedded SQLite store)")


def _is_shared(store: StoreOptions) -> bool:
    return _store_uri(store) is not None


def _check_paths(options: BridgeOptions) -> None:
    """Check the data directory and the files about to be opened, before any is (DESIGN §6).

    With SQLite the directory is created first (0700), so nobody can slip their own in
    between the check and its first use; so is the ``--uds`` socket's directory, whose
    directories up to the home directory are checked as OpenSSH checks a key's
    (:func:`bridge.datadir.check_parent_dirs`) when it is outside the data directory.
    """
    sqlite = not _is_shared(options.store)
    if not options.check_permissions:
        log.warning("permission_checks_skipped", data_dir=str(options.data_dir))
    if sqlite:
        options.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_key_file = options.secrets.data_key_file
    findings = datadir.check_data_dir(
        options.data_dir,
        database=options.data_dir / DB_FILE_NAME if sqlite else None,
        key_file=options.data_dir / KEY_FILE_NAME,
        secret_files=[] if data_key_file is None else [data_key_file],
    )
    if sqlite:
        # The collections' file (bridge.collection) gets the checks bridge.db gets.
        for suffix in datadir.DB_COMPANIONS:
            findings += datadir.check_path(
                Path(f"{options.data_dir / COLLECTIONS_DB_FILE_NAME}{suffix}"), datadir.Kind.FILE
            )
    uds = options.transport.uds
    if uds is not None:
        uds.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        findings += datadir.check_parent_dirs(uds, trusted=options.data_dir)
    datadir.enforce(findings, strict=options.check_permissions)


def _read_token_file(path: Path, *, strict: bool) -> str:
    """The token in ``path``, read without blocking and checked (DESIGN §6).

    Raises:
        InsecurePathError: the file is not a regular file, or (with ``strict``) another
            user owns it or can read or write it.
        StartupError: it cannot be read.
    """
    try:
        raw = datadir.read_small_file(path, datadir.Kind.SECRET, strict=strict)
    except OSError as exc:
        raise StartupError(f"cannot read the token file: {exc.strerror}") from None
    return raw.decode("utf-8", errors="replace").strip()


async def _load_once(store: ConfigStore) -> StoreState | None:
    """The start-up's one full read of the store; None when it fails (served degraded)."""
    try:
        return await store.load()
    except Exception:
        log.exception("store_load_failed")
        return None


def _make_store(options: BridgeOptions) -> ConfigStore:
    """Return the configured store: PostgreSQL for a ``postgresql://`` URI, else SQLite."""
    uri = _store_uri(options.store)
    if uri is None:
        return SqliteConfigStore(
            options.data_dir / DB_FILE_NAME, poll_interval_s=options.store.poll_interval_s
        )
    try:
        from bridge.storage.postgres import PostgresConfigStore  # noqa: PLC0415 - optional extra
    except ImportError:
        raise StartupError(
            "The PostgreSQL store needs asyncpg: pip install 'bridge-ipc[postgresql]'"
        ) from None
    return PostgresConfigStore(uri)


async def _load_key(
    options: BridgeOptions, store: ConfigStore, collection_store: CollectionStore | None = None
) -> DataKey:
    """Return the data key, refusing one that did not seal the stored API keys (DESIGN §3).

    A shared key (``--data-key-file`` / ``BRIDGE_DATA_KEY``) is required with PostgreSQL:
    every instance must open what the others sealed. Each ciphertext starts with the id
    of its key, so a wrong key is refused here, before any row is read for use or changed:
    refused when no stored ciphertext names one of the given keys. Rows naming an unknown
    key beside rows the key opens are quarantined by the service (``UNKNOWN_KEY_ID``).
    """
    secret_options: SecretOptions = options.secrets
    shared = load_shared_data_key(
        secret_options.data_key_file, os.environ.get(DATA_KEY_ENV), strict=options.check_permissions
    )
    if shared is not None:
        key = shared
    elif _is_shared(options.store):
        raise StartupError(
            f"A PostgreSQL store is shared by instances: give them one data key with --data-key-file "
            f"or {DATA_KEY_ENV}"
        )
    else:
        key = await asyncio.to_thread(
            load_data_key,
            options.data_dir,
            secret_options.backend,
            must_exist=await store.has_ciphertexts()
            or (collection_store is not None and await collection_store.has_ciphertexts()),
        )
    stored = await store.key_ids()
    if collection_store is not None:
        stored |= await collection_store.key_ids()
    if stored and not stored & key.key_ids:
        foreign = sorted(k.hex() for k in stored)
        raise StartupError(
            f"The store holds API keys sealed with data key id {', '.join(foreign)} but the given key's "
            f"id is {key.key_id.hex()}; start with the key the other instances use (nothing was changed)"
        )
    return key


async def serve(
    options: BridgeOptions | None = None,
    registry: api.Registry | None = None,
    *,
    sidecar_options: SidecarOptions | None = None,
    on_ready: Callable[[Bridge], Awaitable[None] | None] | None = None,
) -> None:
    """Run a bridge until SIGTERM/SIGINT, ``bridge:shutdown``, or stdin EOF with ``exit_with_parent``.

    Writes the connection file (0600, atomic; removed on exit) and calls ``on_ready``
    once listening. See :func:`start_bridge` for ``options`` and ``registry``.
    ``bridge:shutdown`` is registered only with ``sidecar_options.exit_with_parent`` or
    ``sidecar_options.allow_shutdown``: any authenticated connection may then stop the
    server (for hosts that cannot close its stdin, e.g. Tauri's JavaScript API).

    Args:
        options: the bridge's settings.
        registry: the application's own channels and topics.
        sidecar_options: the process contract's settings (connection file, exit with
            the parent); default :class:`SidecarOptions` ().
        on_ready: called (and awaited when it returns an awaitable) once the connection
            file is written.

    Raises:
        InsecurePathError: a directory holding the connection file (outside the data
            directory) fails the checks of :func:`bridge.datadir.check_parent_dirs`;
            otherwise as :func:`start_bridge`.
        StartupError, AddressUnavailableError: as :func:`start_bridge`.
        OSError: the connection file cannot be written.
    """
    options = options or BridgeOptions()
    process = sidecar_options or SidecarOptions()
    registry = registry or api.Registry()
    stop = asyncio.Event()
    if process.allow_shutdown or process.exit_with_parent:
        registry.add(api.BRIDGE_SHUTDOWN, ShutdownChannel(stop).shutdown)
    conn_path = process.connection_file or options.data_dir / CONNECTION_FILE_NAME
    # Outside the data directory, the connection file's directories are checked too
    # (DESIGN §6): whoever could rename it could hand clients a URL and token of theirs.
    # They are created (0700) before the check, so no other user can create one of them
    # between the check and the write (as ``/tmp/app`` in sticky ``/tmp``).
    datadir.make_private_dirs(conn_path.parent)
    datadir.enforce(
        datadir.check_parent_dirs(conn_path, trusted=options.data_dir), strict=options.check_permissions
    )
    bridge = await start_bridge(options, registry)
    try:
        # Checked again right before the write: fail closed if anything changed meanwhile
        # (what the opt-out waives was logged by the first check; not logged twice).
        again = datadir.check_parent_dirs(conn_path, trusted=options.data_dir)
        datadir.enforce([f for f in again if options.check_permissions or not f.waivable], strict=True)
    except BaseException:
        await bridge.close()
        raise
    loop = asyncio.get_running_loop()
    log.info("event_loop_selected", loop=f"{type(loop).__module__}.{type(loop).__name__}")
    # The signal handlers stay during the shutdown: a second SIGTERM must not kill it midway.
    with sidecar.stop_on_signals(stop, exit_with_parent=process.exit_with_parent):
        try:
            with sidecar.connection_file_lease(conn_path, bridge.connection_info()):
                if on_ready is not None:
                    maybe = on_ready(bridge)
                    if maybe is not None:
                        await maybe
                await stop.wait()
                log.info("shutdown_started")
        finally:
            await bridge.close()


def run_sidecar(options: BridgeOptions, process: SidecarOptions, registry: api.Registry | None = None) -> int:
    """Run ``bridge serve``: logging, event loop, ready line, and the exit code (DESIGN §7).

    Every failure to start ends in one JSON error line on stdout.

    Args:
        options: the bridge's settings (``token`` is replaced by ``process.token_file``'s
            content when given).
        process: the process contract's settings, log level and event loop.
        registry: the application's own channels and topics.

    Returns:
        The exit code: 0 after a graceful shutdown, 2 when start-up failed.
    """
    configure_logging(process.log_level)
    # Room for many sockets: the handshake caps are derived from this limit (DESIGN §6).
    raise_descriptor_limit()
    try:
        factory = sidecar.loop_factory(process.loop)
        if process.token_file is not None:
            token = _read_token_file(process.token_file, strict=options.check_permissions)
            options = dataclasses.replace(options, token=token)
    except StartupError as exc:
        sidecar.emit_error(exc.code, exc.message, exc.context)
        return sidecar.EXIT_STARTUP_FAILED

    def announce(bridge: Bridge) -> None:
        sidecar.emit(bridge.connection_info().to_ready_line())

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(options, registry, sidecar_options=process, on_ready=announce))
    except StartupError as exc:
        sidecar.emit_error(exc.code, exc.message, exc.context)
        return sidecar.EXIT_STARTUP_FAILED
    except Exception as exc:
        # Anything else that stops start-up (an unwritable data directory, an unreachable
        # database...) still ends in one JSON line, as the sidecar contract promises; the
        # traceback goes to the log.
        log.exception("startup_failed")
        sidecar.emit_error(StartupError.code, f"cannot start: {sidecar.describe_startup_failure(exc)}")
        return sidecar.EXIT_STARTUP_FAILED
    return 0


# ---- maintenance commands (bridge doctor, bridge rotate-key) -------------------------------


def run_doctor(
    data_dir: Path,
    secret_backend: SecretBackend,
    data_key_file: Path | None,
    registry: api.Registry | None = None,
) -> int:
    """``bridge doctor``: examine ``bridge.db`` and ``collections.db`` read-only; print one JSON line.

    The verdicts are the services' own (:func:`bridge.state.service.admit`: the same
    checks, unique-key claims and repairs the server runs when it loads), played on the
    rows read without writing: ``quarantined`` ``[{id, reason}]`` the configs it would
    hold, ``repairs`` ``[{id, reason: "STALE_DERIVED_FIELDS"}]`` those it would rewrite at
    start and serve (not a finding).

    ``collections`` is null without ``collections.db``; else ``{database, damage,
    schemaVersion, rows, quarantined: [{collection, id, reason}]}``. A collection of
    ``registry`` (an application's own CLI: ``bridge.cli.main(registry=...)``) is checked
    with its model, unique keys and secret fields exactly as its service loads it
    (:func:`bridge.collection.service.examine_collection`); any other, as plain ``bridge
    doctor`` does, by its stored form only (undecodable fields, secrets no key opens, a
    secret in plain text or a preview without its secret:
    :func:`bridge.collection.service.examine_items`). ``collectionRules`` says which:
    ``{"model": [names], "storedForm": [names]}``. No value is printed.

    Returns:
        0 when clean (repairs alone included), 1 with findings, 2 when the database
        cannot be examined.
    """
    import sqlite3  # noqa: PLC0415 - maintenance only

    from bridge.service.maintenance import examine_rows  # noqa: PLC0415
    from bridge.storage.sqlite import examine_file  # noqa: PLC0415

    configure_logging("warning")
    path = data_dir / DB_FILE_NAME
    try:
        exam = examine_file(path)
    except (OSError, sqlite3.Error) as exc:
        message = f"cannot examine {path}: {sidecar.describe_startup_failure(exc)}"
        sidecar.emit_error(StartupError.code, message)
        return sidecar.EXIT_STARTUP_FAILED
    key_problem = None
    key = None
    if exam.rows:
        try:
            key = load_shared_data_key(data_key_file, os.environ.get(DATA_KEY_ENV)) or load_data_key(
                data_dir, secret_backend, must_exist=True
            )
        except StartupError as exc:
            key_problem = exc.message
    collections, collections_problem, sealed = _examine_collections(data_dir)
    if key is None and key_problem is None and sealed:
        try:
            key = load_shared_data_key(data_key_file, os.environ.get(DATA_KEY_ENV)) or load_data_key(
                data_dir, secret_backend, must_exist=True
            )
        except StartupError as exc:
            key_problem = exc.message
    rows = examine_rows(exam.rows, key)
    defined = {binding.rules.name: binding.rules for binding in (registry.collections if registry else [])}
    collection_findings, rules_used = _collection_findings(collections, key, defined)
    sidecar.emit(
        {
            "event": "doctor",
            "database": str(path),
            "schemaVersion": exam.schema_version,
            "damage": exam.damage,
            "structure": exam.repairable,
            "fatal": exam.fatal,
            "dataKey": key_problem,
            "rows": len(exam.rows),
            "quarantined": [{"id": f.id, "reason": f.reason} for f in rows.quarantined],
            "repairs": [{"id": f.id, "reason": f.reason} for f in rows.repaired],
            "collections": None
            if collections is None and collections_problem is None
            else {
                "database": str(data_dir / COLLECTIONS_DB_FILE_NAME),
                "damage": collections_problem,
                "schemaVersion": None if collections is None else collections[0],
                "rows": 0 if collections is None else len(collections[1]),
                "quarantined": [{"collection": c, "id": i, "reason": r} for c, i, r in collection_findings],
            },
            "collectionRules": rules_used,
        }
    )
    clean = not (
        exam.damage
        or exam.repairable
        or exam.fatal
        or key_problem
        or rows.quarantined
        or collections_problem
        or collection_findings
    )
    return 0 if clean else 1


def _examine_collections(data_dir: Path) -> tuple[tuple[int, list[Any]] | None, str | None, bool]:
    """``collections.db`` read-only: ``((schema version, rows) or None, damage or None, holds secrets)``."""
    import sqlite3  # noqa: PLC0415 - maintenance only

    from bridge.collection.protocol import sealed_values  # noqa: PLC0415
    from bridge.collection.sqlite import examine_collections  # noqa: PLC0415

    path = data_dir / COLLECTIONS_DB_FILE_NAME
    if not path.exists():
        return None, None, False
    try:
        found = examine_collections(path)
    except (OSError, sqlite3.Error) as exc:
        return None, sidecar.describe_startup_failure(exc), False
    return found, None, any(sealed_values(item.data) for _, item in found[1])


STORED_FORM_ONLY: Final = (
    "collections in storedForm are checked by their stored form only: their model's rules "
    "(fields, unique keys, secret fields) need the application's own CLI "
    "(bridge.cli.main(registry=...), e.g. python myapp.py doctor)"
)
"""``collectionRules.note`` when some collection's rows were checked without its definition."""


def _collection_findings(
    collections: tuple[int, list[Any]] | None, key: DataKey | None, defined: dict[str, Rules]
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """``([(collection, id, reason)] in creation order, collectionRules)`` of ``collections.db``'s rows."""
    if collections is None:
        return [], {"model": sorted(defined), "storedForm": []}
    from bridge.collection.service import examine_collection, examine_items  # noqa: PLC0415 - maintenance only

    items: list[tuple[Any, Any]] = collections[1]
    own: dict[str, list[Any]] = {name: [] for name in defined}
    others: list[tuple[Any, Any]] = []
    for collection, item in items:
        if isinstance(collection, str) and collection in own:
            own[collection].append(item)
        else:
            others.append((collection, item))
    found: dict[tuple[str, str], str] = {}
    if own:
        # Without the data keys, a cipher that knows no key: every secret is UNKNOWN_KEY_ID.
        cipher = KeyCipher(key if key is not None else DataKey(secrets.token_bytes(32), "none"))
        for name, rows in own.items():
            found.update(
                ((name, row_id), reason) for row_id, reason in examine_collection(defined[name], cipher, rows)
            )
    # The collection name is as read, like the id: another program may have stored a BLOB.
    for collection, item_id, reason in examine_items(others, None if key is None else KeyCipher(key)):
        found[(printable_id(collection), item_id)] = reason
    # One list in creation order (the file's), whichever check found them.
    ordered = [(printable_id(c), printable_id(item.id)) for c, item in items]
    findings = [(c, i, found[(c, i)]) for c, i in ordered if (c, i) in found]
    undefined = sorted({printable_id(c) for c, _ in others})
    rules_used: dict[str, Any] = {"model": sorted(defined), "storedForm": undefined}
    if undefined:
        rules_used["note"] = STORED_FORM_ONLY
    return findings, rules_used


def run_rotate_key(options: BridgeOptions, *, stage: bool) -> int:
    """``bridge rotate-key``: see :func:`bridge.service.maintenance.rotate_data_key`; one JSON line.

    Returns:
        0 when rotated (or staged), 2 when it cannot be done.
    """
    configure_logging("warning")
    try:
        return asyncio.run(_rotate_key(options, stage=stage))
    except StartupError as exc:
        sidecar.emit_error(exc.code, exc.message)
        return sidecar.EXIT_STARTUP_FAILED
    except Exception as exc:
        log.exception("rotate_key_failed")
        sidecar.emit_error(StartupError.code, f"cannot rotate: {sidecar.describe_startup_failure(exc)}")
        return sidecar.EXIT_STARTUP_FAILED


async def _rotate_key(options: BridgeOptions, *, stage: bool) -> int:
    from bridge.collection.service import reseal_secrets  # noqa: PLC0415
    from bridge.keystore import write_data_key, write_key_file  # noqa: PLC0415
    from bridge.service.maintenance import rotate_data_key, stage_data_key  # noqa: PLC0415

    data_key_file = options.secrets.data_key_file
    if data_key_file is None and os.environ.get(DATA_KEY_ENV):
        raise StartupError(f"rotate-key cannot write {DATA_KEY_ENV}: keep the keys in a --data-key-file")

    def save(key: DataKey) -> None:
        if data_key_file is not None:
            write_key_file(data_key_file, key)
        else:
            write_data_key(options.data_dir, key)

    store = _make_store(options)
    await store.open()
    collections: CollectionStore | None = None
    try:
        # The collections' secrets are re-sealed too, and their keys count as in use.
        if _is_shared(options.store) or (options.data_dir / COLLECTIONS_DB_FILE_NAME).exists():
            collections = await _collection_store(options)
        key = await _load_key(options, store, collections)
        if stage:
            staged = stage_data_key(key, save)
            sidecar.emit({"event": "staged", "sealingKeyId": staged.key_id.hex()})
            return 0
        more = None if collections is None else functools.partial(reseal_secrets, collections)
        report = await rotate_data_key(store, key, save, more=more)
    finally:
        if collections is not None:
            await collections.close()
        await store.close()
    sidecar.emit(
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
