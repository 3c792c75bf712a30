"""``BridgeClient``: a Python renderer for a bridge server (DESIGN §8).

It speaks JSON-RPC 2.0 over one WebSocket, matches responses to calls by id, delivers
notifications to ``on(event, callback)`` subscribers, and rebuilds the server's errors
as the classes of :mod:`bridge.errors` from ``error.data.code``.

With ``reconnect=True`` it survives server restarts: exponential backoff with jitter,
URL and token re-read from the provider on every attempt, ``protocolVersion`` checked
from ``bridge:hello``, and a resync through ``llm-config:snapshot`` whose differences
with the last known view set are delivered as ``llm-config:changed`` events. Calls in
flight when the connection drops fail with :class:`ConnectionLostError` and are never
retried (a write may or may not have been applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import orjson
import structlog
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge import api
from bridge.errors import (
    AuthenticationError,
    BridgeError,
    ConnectionLostError,
    ProtocolMismatchError,
    error_from_wire,
)
from bridge.models import (
    LlmConfigInput,
    LlmConfigPatch,
    LlmConfigView,
    Snapshot,
)

log = structlog.get_logger(__name__)

R = TypeVar("R")

ProgressCallback = Callable[[Any], None]
"""Receives one ``$/progress`` value: ``{kind: "begin"|"report"|"end", message?, percentage?}``."""

HTTP_UNAUTHORIZED = 401
HTTP_FORBIDDEN = 403
CLOSE_POLICY_VIOLATION = 1008


@dataclass(frozen=True)
class ConnectionInfo:
    """What a client needs to reach a server: ``url``, ``token`` and maybe a Unix ``socket``."""

    url: str
    token: str = field(repr=False)
    socket: str | None = None


def read_connection_file(path: str | os.PathLike[str]) -> ConnectionInfo:
    """Read the connection file written by ``bridge serve`` (DESIGN §7).

    Args:
        path: the file, e.g. ``<data dir>/connection.json``.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not a connection file (``orjson.JSONDecodeError`` is one).
    """
    path = Path(path)
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict) or "url" not in data or "token" not in data:
        raise ValueError(f"{path} is not a bridge connection file")
    return ConnectionInfo(str(data["url"]), str(data["token"]), data.get("socket"))


Callback = Callable[[Any], None]
ConnectionProvider = Callable[[], "ConnectionInfo | Awaitable[ConnectionInfo]"]
"""Returns where to connect; called before every attempt (e.g. re-reads the connection file)."""


class BridgeClient:
    """One logical connection to a bridge server, optionally self-healing.

    Args:
        url: ``ws://127.0.0.1:PORT`` (the ready line's ``url``); or give ``provider``.
        token: the server's bearer token (sent in ``Authorization``, never logged).
        provider: called before every connection attempt for fresh ``ConnectionInfo``
            (see :meth:`from_connection_file`); overrides ``url``/``token``.
        unix_socket: path of the server's Unix socket, when it serves one.
        reconnect: reconnect after the connection drops, and resync.
        backoff_initial_s: first reconnect delay, in seconds (doubles each attempt).
        backoff_max_s: largest reconnect delay, in seconds; each delay is scaled by a
            random factor in [0.5, 1] (jitter) so clients of a restarted server spread out.
        max_auth_attempts: consecutive handshakes refused with 401/403 (or closes with
            1008) before giving up with :class:`AuthenticationError`.
        open_timeout_s: bound on the opening handshake, in seconds.
        max_message_bytes: largest incoming message accepted, in bytes.

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
    ) -> None:
        """Configure the client; :meth:`connect` opens the connection."""
        if provider is None:
            if url is None or token is None:
                raise ValueError("give url and token, or a provider")
            fixed = ConnectionInfo(url, token, unix_socket)

            def provider() -> ConnectionInfo:
                return fixed

        self.url = url or ""
        self._provider: ConnectionProvider = provider
        self._reconnect = reconnect
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._max_auth_attempts = max_auth_attempts
        self._open_timeout_s = open_timeout_s
        self._max_message_bytes = max_message_bytes
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # workDoneToken → the on_progress callback of a call in flight.
        self._progress: dict[str, ProgressCallback] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._subscribers: defaultdict[str, list[Callback]] = defaultdict(list)
        self._closed_by_user = False
        self._connecting = False
        self._connected = asyncio.Event()
        self._failure: BridgeError | None = None
        # The view set the subscribers have been told about (reconnect mode only).
        self._views: dict[str, dict[str, Any]] = {}
        self._revision = 0
        self._resyncing = False
        self._held: list[dict[str, Any]] = []
        self.close_code: int | None = None
        """Close code of the last connection that ended (1001: server shutting down)."""
        self.attempts = 0
        """Connection attempts made so far (handshakes tried)."""

    @classmethod
    def from_connection_file(cls, path: Path, **options: Any) -> BridgeClient:
        """A client that re-reads ``path`` (written by ``bridge serve``) before every attempt."""
        return cls(provider=lambda: read_connection_file(path), **options)

    def __repr__(self) -> str:
        """Show the URL, never the token."""
        return f"BridgeClient(url={self.url!r})"

    # ---- connection -----------------------------------------------------------------

    async def connect(self) -> None:
        """Open the WebSocket, check the protocol version and (with reconnect) take a snapshot.

        With ``reconnect=True``, transient failures (server not up yet) are retried with
        backoff; terminal ones are raised.

        Raises:
            AuthenticationError: the handshake was refused (401/403) ``max_auth_attempts`` times.
            ProtocolMismatchError: the server's ``protocolVersion`` is not ours.
            OSError: the server cannot be reached (without ``reconnect``).
        """
        self._closed_by_user = False
        if self._reconnect:
            await self._connect_with_backoff()
        else:
            await self._open_once()
            await self._after_open()

    async def _open_once(self) -> None:
        info = self._provider()
        if not isinstance(info, ConnectionInfo):
            info = await info
        self.url = info.url
        self.attempts += 1
        options: dict[str, Any] = {
            "additional_headers": {"Authorization": f"Bearer {info.token}"},
            "compression": None,
            "max_size": self._max_message_bytes,
            "open_timeout": self._open_timeout_s,
        }
        try:
            if info.socket is not None:
                ws = await unix_connect(info.socket, info.url, **options)
            else:
                ws = await connect(info.url, **options)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in {HTTP_UNAUTHORIZED, HTTP_FORBIDDEN}:
                raise AuthenticationError(f"The server refused the handshake with HTTP {status}") from None
            raise
        self._ws = ws
        self.close_code = None
        self._reader = asyncio.create_task(self._read(ws), name="bridge-client-reader")

    async def _after_open(self) -> None:
        """Check the protocol, then resync (reconnect mode); mark the client connected."""
        hello = await self.hello()
        if hello.protocol_version != api.PROTOCOL_VERSION:
            await self._drop()
            raise ProtocolMismatchError(
                f"The server speaks protocol {hello.protocol_version}, this client {api.PROTOCOL_VERSION}",
                context={"server": hello.protocol_version, "client": api.PROTOCOL_VERSION},
            )
        if self._reconnect:
            await self._resync()
        self._connected.set()

    async def _connect_with_backoff(self) -> None:
        self._connecting = True
        try:
            await self._connect_loop()
        finally:
            self._connecting = False

    async def _connect_loop(self) -> None:
        auth_failures = 0
        delay = self._backoff_initial_s
        while not self._closed_by_user:
            try:
                await self._open_once()
                await self._after_open()
            except AuthenticationError as exc:
                auth_failures += 1
                if auth_failures >= self._max_auth_attempts:
                    self._fail(exc)
                    raise
            except ProtocolMismatchError as exc:
                self._fail(exc)
                raise
            except (OSError, TimeoutError, ValueError, InvalidStatus, ConnectionClosed, ConnectionLostError):
                # Server down, connection file missing or half-written, 503, dropped
                # during the resync: all transient.
                await self._drop()
            else:
                if self.close_code == CLOSE_POLICY_VIOLATION:  # pragma: no cover - races
                    continue
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
            delay = min(self._backoff_max_s, delay * 2)

    def _fail(self, exc: BridgeError) -> None:
        """Give up for good: remember why, so waiters and later calls see it."""
        self._failure = exc
        self._connected.set()
        log.warning("client_gave_up", error=exc.code)

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        self._connected.clear()
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until connected (and resynced); raise the terminal error if the client gave up.

        Raises:
            AuthenticationError, ProtocolMismatchError: the client gave up.
            TimeoutError: not connected within ``timeout_s`` seconds.
        """
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()
        if self._failure is not None:
            raise self._failure

    async def close(self) -> None:
        """Close the connection and stop reconnecting; pending calls fail with ConnectionLostError."""
        self._closed_by_user = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError, BridgeError):
                await self._reconnector
            self._reconnector = None
        await self._drop()

    async def __aenter__(self) -> Self:
        """Connect."""
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close."""
        await self.close()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                self._receive(frame)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            if self._ws is ws:
                self._ws = None
                self._connected.clear()
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(ConnectionLostError())
            if self._reconnect and not (self._closed_by_user or self._connecting or self._reconnector):
                self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_in_background())

    async def _reconnect_in_background(self) -> None:
        try:
            if self.close_code == CLOSE_POLICY_VIOLATION:
                self._fail(AuthenticationError("The server closed the connection with 1008 (policy)"))
                return
            await self._connect_with_backoff()
        except BridgeError:
            pass  # recorded by _fail; surfaced by wait_connected() and invoke()
        finally:
            self._reconnector = None

    # ---- notifications and resync ---------------------------------------------------

    def _receive(self, frame: str | bytes) -> None:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            log.warning("client_frame_unparsable")  # one bad frame must not end the reader
            return
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, dict):
                continue
            if "method" in item and "id" not in item:
                self._notification(item["method"], item.get("params"))
                continue
            future = self._pending.pop(item.get("id"), None)  # type: ignore[arg-type]
            if future is None or future.done():
                continue
            if "error" in item:
                future.set_exception(error_from_wire(item["error"]))
            else:
                future.set_result(item.get("result"))

    def _notification(self, method: str, params: Any) -> None:
        if method == api.PROGRESS and isinstance(params, dict):
            callback = self._progress.get(params.get("token"))  # type: ignore[arg-type]
            if callback is not None:
                try:
                    callback(params.get("value"))
                except Exception:
                    log.exception("client_callback_failed", event=method)
                return
        if self._reconnect and method == api.LLM_CONFIG_CHANGED.name and isinstance(params, dict):
            if self._resyncing:
                self._held.append(params)
                return
            if not self._track(params):
                return  # already reflected in the snapshot: drop the duplicate
        self._deliver(method, params)

    def _track(self, event: dict[str, Any]) -> bool:
        """Apply a change event to the known view set; False when it is stale."""
        revision = event.get("revision")
        if not isinstance(revision, int) or revision <= self._revision:
            return False
        self._revision = revision
        if event.get("type") == "deleted":
            self._views.pop(str(event.get("id")), None)
        elif isinstance(event.get("config"), dict):
            self._views[str(event.get("id"))] = event["config"]
        return True

    def _deliver(self, method: str, params: Any) -> None:
        for callback in tuple(self._subscribers.get(method, ())):
            try:
                callback(params)
            except Exception:
                log.exception("client_callback_failed", event=method)

    async def _resync(self) -> None:
        """Take a snapshot; deliver what changed while away; drop held stale notifications.

        Notifications that arrive while the snapshot is in flight are held; those with
        a revision ≤ the snapshot's are dropped, later ones delivered after the diff.
        """
        first = not self._views and self._revision == 0
        self._resyncing = True
        try:
            snapshot = await self.invoke(api.LLM_CONFIG_SNAPSHOT.name)
        finally:
            self._resyncing = False
            held, self._held = self._held, []
        revision: int = snapshot["revision"]
        fresh = {view["id"]: view for view in snapshot["configs"]}
        old, self._views = self._views, dict(fresh)
        if not first and revision != self._revision:
            topic = api.LLM_CONFIG_CHANGED.name
            for config_id in old.keys() - fresh.keys():
                self._deliver(topic, {"type": "deleted", "id": config_id, "revision": revision})
            for config_id, view in fresh.items():
                if config_id not in old:
                    self._deliver(
                        topic, {"type": "created", "id": config_id, "revision": revision, "config": view}
                    )
                elif old[config_id] != view:
                    self._deliver(
                        topic, {"type": "updated", "id": config_id, "revision": revision, "config": view}
                    )
        self._revision = revision
        for event in held:
            if self._track(event):
                self._deliver(api.LLM_CONFIG_CHANGED.name, event)

    # ---- calls ----------------------------------------------------------------------

    async def invoke(
        self,
        channel: str,
        params: dict[str, Any] | list[Any] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Call ``channel`` and return its JSON result.

        Cancelling the task that awaits this sends ``$/cancelRequest`` for the call (LSP;
        the server answers a long-running request -32800 and aborts its work, and ignores
        the others) and raises ``asyncio.CancelledError`` here at once.

        Args:
            channel: the channel (JSON-RPC method) name.
            params: by-name params (a dict), positional params (a list) or None.
            on_progress: called with each ``$/progress`` value of this call
                (``{kind: "begin"|"report"|"end", message?, percentage?}``); the params
                then carry a fresh ``workDoneToken`` (they must be a dict or None).
                Channels without progress never call it.

        Raises:
            BridgeError: the server's error, rebuilt as its class (``ValidationError``...).
            ConnectionLostError: not connected, or the connection dropped before the
                response (the call is not retried: a write may or may not have happened).
            AuthenticationError, ProtocolMismatchError: the client gave up reconnecting.
        """
        if self._failure is not None:
            raise self._failure
        ws = self._ws
        if ws is None:
            raise ConnectionLostError("Not connected")
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": channel}
        token: str | None = None
        if on_progress is not None:
            if isinstance(params, list):
                raise TypeError("on_progress needs by-name params (a dict or None)")
            token = f"py-{id(self):x}-{request_id}"
            params = {**(params or {}), api.WORK_DONE_TOKEN: token}
            self._progress[token] = on_progress
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            try:
                await ws.send(orjson.dumps(message), text=True)
            except ConnectionClosed:
                self._pending.pop(request_id, None)
                raise ConnectionLostError from None
            try:
                return await future
            except asyncio.CancelledError:
                if self._pending.pop(request_id, None) is not None:
                    self._send_in_background(
                        ws, {"jsonrpc": "2.0", "method": api.CANCEL_REQUEST, "params": {"id": request_id}}
                    )
                raise
        finally:
            if token is not None:
                self._progress.pop(token, None)

    def _send_in_background(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        """Send ``message`` without waiting (a cancelled caller cannot await it); failures are ignored."""

        async def send() -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(orjson.dumps(message), text=True)

        task = asyncio.get_running_loop().create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def call(self, spec: api.ChannelSpec[Any, R], params: Any = None) -> R:
        """Call a channel through its spec; params may be a model; the result is typed."""
        result = await self.invoke(spec.name, _wire(params))
        return spec.result_adapter.validate_python(result)  # type: ignore[no-any-return]

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(params)`` for every ``event`` notification; returns an unsubscriber."""
        self._subscribers[event].append(callback)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers[event].remove(callback)

        return off

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
