"""``BridgeClient``: a Python renderer for a bridge server (DESIGN §8).

It is a :class:`~bridge.client.connection.Connection` (the transport: one WebSocket,
calls matched to responses by id, the server's errors rebuilt as the classes of
:mod:`bridge.errors`, reconnect with backoff) plus collection mirrors
(:class:`~bridge.client.mirror.CollectionMirror`: the items of a collection the
subscribers know, resynced through ``<name>:snapshot`` after every reconnect, the
differences delivered as ``<name>:changed`` events) — the LLM configs' with
``reconnect=True``, any collection's through :meth:`BridgeClient.collection` — ``on(event,
callback)`` subscriptions and typed helpers.

Every connection is checked with ``bridge:hello``: another ``protocolVersion`` is
terminal (:class:`ProtocolMismatchError`); another ``schemaHash`` than the one the caller's
types come from (bridge's built-in document unless ``schema_hash`` says otherwise) is
reported — logged, and given to ``on_schema_mismatch`` or else raised as a
:class:`SchemaMismatchWarning` through :func:`warnings.warn` — once per announced hash, and
the connection proceeds (DESIGN §8: contract drift is never silent). Calls in flight when the connection drops
fail with :class:`ConnectionLostError` and are never retried (a write may or may not have
been applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection

from bridge import api
from bridge.client.connection import Connection, ConnectionProvider, ProgressCallback
from bridge.client.mirror import CollectionMirror, LlmConfigMirror, collection_channels
from bridge.connection_file import ConnectionInfo, read_connection_file
from bridge.errors import BridgeError, ConnectionLostError, ProtocolMismatchError
from bridge.log import cap_library_loggers, library_logger
from bridge.models import (
    LlmConfigInput,
    LlmConfigPatch,
    LlmConfigView,
    Snapshot,
)

log = library_logger(__name__)

R = TypeVar("R")

Callback = Callable[[Any], None]


ANNOUNCED_SCHEMA: Final = "announced"
"""``schema_hash=ANNOUNCED_SCHEMA``: the expected ``schemaHash`` is the one the first
``bridge:hello`` announces (for a client whose types are the server's own at run time,
e.g. a Python client of an application's sidecar); a later one that differs (a server
upgraded while the client reconnects) is reported as any drift."""


def builtin_schema_hash() -> str:
    """Return the ``schemaHash`` of bridge's built-in OpenRPC document (``sha256:<hex>``).

    Read once from the package data ``bridge/openrpc.json``, whose bytes are canonical
    (DESIGN §5): the hash a stock ``bridge serve`` announces in ``bridge:hello``.
    """
    return api.builtin_openrpc()[1]


class SchemaMismatchWarning(UserWarning):
    """``bridge:hello`` announced another ``schemaHash`` than the caller's types come from.

    Args:
        expected: the hash the client expected (``schema_hash``, else
            :func:`builtin_schema_hash`), ``sha256:<hex>``.
        actual: the hash the server announced, ``sha256:<hex>``.
    """

    def __init__(self, expected: str, actual: str) -> None:
        """Keep both hashes; the message names them."""
        super().__init__(
            f"The server announces schemaHash {actual}, the client's types come from {expected}: "
            "the channels or their shapes changed; regenerate the types or update bridge-ipc"
        )
        self.expected = expected
        self.actual = actual


class BridgeClient:
    """One logical connection to a bridge server, optionally self-healing.

    Args:
        url: ``ws://127.0.0.1:PORT`` (the ready line's ``url``); or give ``provider``.
        token: the server's bearer token (sent in ``Authorization``, never logged).
        provider: called before every connection attempt for fresh ``ConnectionInfo``
            (see :meth:`from_connection_file`); overrides ``url``/``token``.
        unix_socket: path of the server's Unix socket, when it serves one.
        reconnect: reconnect after the connection drops, and resync.
        backoff_initial_s: ceiling of the first reconnect delay, in seconds (doubles each
            attempt).
        backoff_max_s: largest ceiling, in seconds. Each delay is uniform between 0 and
            its ceiling (full jitter, :func:`bridge.backoff.backoff_delays`, as the
            PostgreSQL listener) so clients of a restarted server spread out.
        max_auth_attempts: consecutive handshakes refused with 401/403 (or closes with
            1008) before giving up with :class:`AuthenticationError`.
        open_timeout_s: bound on the opening handshake, in seconds.
        max_message_bytes: largest incoming message accepted, in bytes.
        schema_hash: ``schemaHash`` (``sha256:<hex>``) of the OpenRPC document the
            caller's types come from; None → bridge's built-in one
            (:func:`builtin_schema_hash`). An application serving its own channels gives
            its document's (``bridge.schemas.schema_hash``, or ``Bridge.schema_hash()``),
            or :data:`ANNOUNCED_SCHEMA` to take the first ``bridge:hello``'s.
        on_schema_mismatch: called with a :class:`SchemaMismatchWarning` when
            ``bridge:hello`` announces another hash (once per announced hash); None →
            :func:`warnings.warn` it. Either way a ``schema_hash_mismatch`` warning is logged.

    Use as ``async with BridgeClient(url, token) as client: ...``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        provider: ConnectionProvider | None = None,
        unix_socket: str | None = None,
        reconnect: bool = False,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_auth_attempts: int = 2,
        open_timeout_s: float = 10.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        schema_hash: str | None = None,
        on_schema_mismatch: Callable[[SchemaMismatchWarning], None] | None = None,
    ) -> None:
        """Configure the client; :meth:`connect` opens the connection.

        Logging: the client's lines go, redacted, to the standard library's :mod:`logging`
        (``bridge.client.*``), never to stdout, and leave the program's structlog
        configuration alone (:func:`bridge.log.library_logger`); ``websockets`` is capped at
        WARNING when its level is unset (at DEBUG it prints the handshake's
        ``Authorization`` header): :func:`bridge.log.cap_library_loggers`.
        """
        cap_library_loggers()
        if provider is None:
            if url is None or token is None:
                raise ValueError("give url and token, or a provider")
            fixed = ConnectionInfo(url, token, unix_socket)

            def provider() -> ConnectionInfo:
                return fixed

        self._subscribers: defaultdict[str, list[Callback]] = defaultdict(list)
        # The LLM-config views the subscribers have been told about: followed from the start
        # in reconnect mode, else once asked for (``collection("llm-config")``).
        self._mirror = LlmConfigMirror(self._deliver) if reconnect else None
        # Every mirror by its topic, resynced in this order at each (re)connect.
        self._mirrors: dict[str, CollectionMirror] = {}
        if self._mirror is not None:
            self._mirrors[self._mirror.topic] = self._mirror
        self._connection = Connection(
            provider,
            on_open=self._after_open,
            on_notification=self._notification,
            reconnect=reconnect,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            max_auth_attempts=max_auth_attempts,
            open_timeout_s=open_timeout_s,
            max_message_bytes=max_message_bytes,
        )
        self._initial_url = url or ""
        self._expected_schema_hash = schema_hash
        self._on_schema_mismatch = on_schema_mismatch
        self._schema_mismatch: SchemaMismatchWarning | None = None
        self._unwarned: SchemaMismatchWarning | None = None

    @classmethod
    def from_connection_file(cls, path: Path, **options: Any) -> BridgeClient:
        """A client that re-reads ``path`` (written by ``bridge serve``) before every attempt."""
        return cls(provider=lambda: read_connection_file(path), **options)

    def __repr__(self) -> str:
        """Show the URL, never the token."""
        return f"BridgeClient(url={self.url!r})"

    # ---- connection -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """URL of the last connection attempt (the given ``url`` before the first)."""
        return self._connection.url or self._initial_url

    @property
    def close_code(self) -> int | None:
        """Close code of the last connection that ended (1001: server shutting down)."""
        return self._connection.close_code

    @property
    def schema_mismatch(self) -> SchemaMismatchWarning | None:
        """The mismatch found by the last ``bridge:hello``; None when the hashes agree."""
        return self._schema_mismatch

    @property
    def attempts(self) -> int:
        """Connection attempts made so far (handshakes tried)."""
        return self._connection.attempts

    @property
    def _ws(self) -> ClientConnection | None:
        """The open WebSocket, if any (tests inject faults through it)."""
        return self._connection.websocket

    @property
    def _reader(self) -> asyncio.Task[None] | None:
        """The task reading the open WebSocket, if any (it ends when the connection does)."""
        return self._connection.reader

    async def connect(self) -> None:
        """Open the WebSocket, check the protocol version and (with reconnect) take a snapshot.

        With ``reconnect=True``, transient failures (server not up yet) are retried with
        backoff; terminal ones are raised.

        Raises:
            AuthenticationError: the handshake was refused (401/403) ``max_auth_attempts`` times.
            ProtocolMismatchError: the server's ``protocolVersion`` is not ours.
            OSError: the server cannot be reached (without ``reconnect``).

        Warns:
            SchemaMismatchWarning: the server announces another ``schemaHash`` (without
                ``on_schema_mismatch``); warned once connected, so a filter that raises it
                (``-W error``) raises it from here with the connection open.
        """
        await self._connection.connect()
        # Warned only now, connected, and at the caller's line: a warnings filter that
        # raises (``-W error``) then cannot fail the connection itself.
        self._warn_schema_mismatch(stacklevel=2)

    def _warn_schema_mismatch(self, stacklevel: int = 1) -> None:
        """``warnings.warn`` the mismatch not yet warned, if any; ``stacklevel`` counts from the caller."""
        mismatch, self._unwarned = self._unwarned, None
        if mismatch is not None:
            warnings.warn(mismatch, stacklevel=stacklevel + 1)

    async def _after_open(self) -> None:
        """Check the protocol, then resync (reconnect mode)."""
        hello = await self.hello()
        if hello.protocol_version != api.PROTOCOL_VERSION:
            raise ProtocolMismatchError(
                f"The server speaks protocol {hello.protocol_version}, this client {api.PROTOCOL_VERSION}",
                context={"server": hello.protocol_version, "client": api.PROTOCOL_VERSION},
            )
        self._check_schema(hello.schema_hash)
        for mirror in tuple(self._mirrors.values()):
            if mirror is self._mirror:
                await self._resync(mirror)
                continue
            try:
                await self._resync(mirror)
            except ConnectionLostError:
                raise  # transient: the reconnect loop tries again
            except BridgeError as exc:
                # The server no longer serves that collection (or its snapshot failed): the
                # connection itself is fine; the mirror keeps what it knew.
                log.warning("collection_resync_failed", topic=mirror.topic, error=exc.code)
        if self._unwarned is not None:
            # After a background reconnect no caller waits: warned once the connection is
            # marked connected (this hook returns first), outside it.
            asyncio.get_running_loop().call_soon(self._warn_schema_mismatch)

    async def _resync(self, mirror: CollectionMirror) -> None:
        await mirror.resync(lambda: self.invoke(mirror.snapshot_channel))

    def _check_schema(self, actual: str) -> None:
        """Report ``actual`` when it is not the expected ``schemaHash`` (once per announced hash)."""
        if self._expected_schema_hash == ANNOUNCED_SCHEMA:
            self._expected_schema_hash = actual  # pinned by the first hello
        expected = self._expected_schema_hash or builtin_schema_hash()
        if actual == expected:
            self._schema_mismatch = None
            return
        if self._schema_mismatch is not None and self._schema_mismatch.actual == actual:
            return
        mismatch = self._schema_mismatch = SchemaMismatchWarning(expected, actual)
        log.warning("schema_hash_mismatch", expected=expected, actual=actual)
        if self._on_schema_mismatch is None:
            self._unwarned = mismatch  # warned once connected (see connect)
            return
        try:
            self._on_schema_mismatch(mismatch)
        except Exception:  # a subscriber's bug must not break the connection
            log.exception("client_callback_failed", callback="on_schema_mismatch")

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until connected (and resynced); raise the terminal error if the client gave up.

        Raises:
            AuthenticationError, ProtocolMismatchError: the client gave up.
            TimeoutError: not connected within ``timeout_s`` seconds.
        """
        await self._connection.wait_connected(timeout_s)

    async def close(self) -> None:
        """Close the connection and stop reconnecting; pending calls fail with ConnectionLostError."""
        await self._connection.close()

    async def __aenter__(self) -> Self:
        """Connect."""
        await self._connection.connect()
        try:
            self._warn_schema_mismatch(stacklevel=2)  # at the ``async with`` line
        except BaseException:
            await self.close()  # a filter raised it: the block never runs, nor __aexit__
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close."""
        await self.close()

    # ---- notifications ----------------------------------------------------------------

    def _notification(self, method: str, params: Any) -> None:
        mirror = self._mirrors.get(method)
        if mirror is not None and isinstance(params, dict):
            mirror.receive(params)  # delivers it unless stale (or held during a resync)
            return
        self._deliver(method, params)

    def _deliver(self, method: str, params: Any) -> None:
        for callback in tuple(self._subscribers.get(method, ())):
            try:
                callback(params)
            except Exception:
                log.exception("client_callback_failed", topic=method)

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(params)`` for every ``event`` notification; returns an unsubscriber.

        For the topic of a followed collection (``llm-config:changed`` with
        ``reconnect=True``, ``<name>:changed`` after :meth:`collection`), the events are the
        mirror's: stale and repeated notifications dropped, the differences found by a
        resync after a reconnect delivered.
        """
        self._subscribers[event].append(callback)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers[event].remove(callback)

        return off

    async def collection(self, name: str) -> CollectionMirror:
        """Follow collection ``name``: a live mirror of its items, resynced after every reconnect.

        The mirror holds the items (wire JSON by id, in creation order) and the revision
        they reflect; it follows ``<name>:changed`` by revision and, at every (re)connect,
        takes ``<name>:snapshot`` (``{revision, items}``) and delivers what changed while
        away as ``created``/``updated``/``deleted`` events at the snapshot's revision
        (DESIGN §8), to :meth:`CollectionMirror.on` listeners and to ``on(<name>:changed)``
        subscribers. The first snapshot delivers no event. ``llm-config`` gives the
        LLM-config mirror (``config``/``configs`` keys). Calling it again for the same name
        returns the same mirror.

        Args:
            name: the collection's name, e.g. ``"prompt-template"``.

        Returns:
            The mirror; loaded now when connected, else at the next connect.

        Raises:
            MethodNotFoundError: the server serves no such collection (not followed then).
            ConnectionLostError: the connection dropped during the first snapshot; the
                mirror stays followed and loads at the next (re)connect.
        """
        topic, snapshot_channel = collection_channels(name)
        mirror = self._mirrors.get(topic)
        if mirror is not None:
            return mirror
        if topic == api.LLM_CONFIG_CHANGED.name:
            mirror = self._mirror = LlmConfigMirror(self._deliver)
        else:
            mirror = CollectionMirror(topic, snapshot_channel, self._deliver)
        self._mirrors[topic] = mirror
        if self._connection.websocket is not None:
            try:
                await self._resync(mirror)
            except ConnectionLostError:
                raise
            except BaseException:
                del self._mirrors[topic]
                if mirror is self._mirror:
                    self._mirror = None
                raise
        return mirror

    # ---- calls ----------------------------------------------------------------------

    async def invoke(
        self,
        channel: str,
        params: dict[str, Any] | list[Any] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Call ``channel`` and return its JSON result (see :meth:`Connection.invoke`).

        ``on_progress`` receives each ``$/progress`` value of this call; cancelling the
        awaiting task sends ``$/cancelRequest`` and raises ``asyncio.CancelledError``.

        Raises:
            BridgeError: the server's error, rebuilt as its class (``ValidationError``...).
            ConnectionLostError: not connected, or the connection dropped before the
                response (the call is not retried: a write may or may not have happened).
            AuthenticationError, ProtocolMismatchError: the client gave up reconnecting.
        """
        return await self._connection.invoke(channel, params, on_progress=on_progress)

    async def call(self, spec: api.ChannelSpec[Any, R], params: Any = None) -> R:
        """Call a channel through its spec; params may be a model; the result is typed."""
        result = await self.invoke(spec.name, _wire(params))
        return spec.result_adapter.validate_python(result)  # type: ignore[no-any-return]

    # ---- typed helpers for llm-config:* ---------------------------------------------

    async def create_config(self, config: LlmConfigInput | dict[str, Any]) -> LlmConfigView:
        """``llm-config:create``; returns the new config's view."""
        return await self.call(api.LLM_CONFIG_CREATE, {"config": _wire(config)})

    async def read_config(self, config_id: str) -> LlmConfigView | None:
        """``llm-config:read``; None when unknown."""
        return await self.call(api.LLM_CONFIG_READ, {"id": config_id})

    async def update_config(
        self,
        config_id: str,
        updates: LlmConfigPatch | dict[str, Any],
        expected_version: int | None = None,
    ) -> LlmConfigView:
        """``llm-config:update``; returns the updated view."""
        params: dict[str, Any] = {"id": config_id, "updates": _wire(updates)}
        if expected_version is not None:
            params["expectedVersion"] = expected_version
        return await self.call(api.LLM_CONFIG_UPDATE, params)

    async def delete_config(self, config_id: str, expected_version: int | None = None) -> bool:
        """``llm-config:delete``; False when the id was unknown."""
        params: dict[str, Any] = {"id": config_id}
        if expected_version is not None:
            params["expectedVersion"] = expected_version
        return (await self.call(api.LLM_CONFIG_DELETE, params)).deleted

    async def list_configs(self) -> list[LlmConfigView]:
        """``llm-config:list``: every view in creation order."""
        return await self.call(api.LLM_CONFIG_LIST)

    async def snapshot(self) -> Snapshot:
        """``llm-config:snapshot``: every view and the revision they reflect."""
        return await self.call(api.LLM_CONFIG_SNAPSHOT)

    async def hello(self) -> api.HelloResult:
        """``bridge:hello``: versions, schema hash, channels, revision."""
        return await self.call(api.BRIDGE_HELLO)


def _wire(value: Any) -> Any:
    """Models → wire dicts (only the fields that were set, camelCase); the rest as is."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return value


__all__ = [
    "BridgeClient",
    "BridgeError",
    "ConnectionInfo",
    "ConnectionProvider",
    "read_connection_file",
]
