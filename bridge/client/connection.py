"""``Connection``: one logical JSON-RPC 2.0 connection to a bridge server, optionally self-healing.

The transport half of the Python client (DESIGN §8): it opens the WebSocket (the
provider is asked where before every attempt), matches responses to calls by id, hands
every notification to one callback, and rebuilds the server's errors as the classes of
:mod:`bridge.errors`. With ``reconnect=True`` it reconnects after a drop with
:func:`bridge.backoff.backoff_delays` (capped exponential, full jitter); handshakes
refused with 401/403 (or a close with 1008) are terminal after ``max_auth_attempts``.
Calls in flight when the connection drops fail with :class:`ConnectionLostError` and are
never retried. It knows nothing of channels: the ``on_open`` hook (e.g. a protocol check
and a resync) runs after every (re)open, before the connection counts as connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge import api
from bridge.backoff import backoff_delays
from bridge.connection_file import ConnectionInfo
from bridge.errors import (
    AuthenticationError,
    BridgeError,
    ConnectionLostError,
    ProtocolMismatchError,
    error_from_wire,
)
from bridge.log import library_logger

log = library_logger(__name__)

ProgressCallback = Callable[[Any], None]
"""Receives one ``$/progress`` value: ``{kind: "begin"|"report"|"end", message?, percentage?}``."""

HTTP_UNAUTHORIZED = 401
HTTP_FORBIDDEN = 403
CLOSE_POLICY_VIOLATION = 1008

ConnectionProvider = Callable[[], "ConnectionInfo | Awaitable[ConnectionInfo]"]
"""Returns where to connect; called before every attempt (e.g. re-reads the connection file)."""


class Connection:
    """Transport, pending calls and reconnection for one logical connection.

    Args:
        provider: called before every connection attempt for fresh ``ConnectionInfo``.
        on_open: awaited after every (re)open, before :meth:`wait_connected` returns; its
            exception fails the attempt (and drops the socket).
        on_notification: called with ``(method, params)`` for every notification frame.
        reconnect: reconnect after the connection drops.
        backoff_initial_s: ceiling of the first reconnect delay, in seconds.
        backoff_max_s: largest ceiling, in seconds (each delay is uniform below its ceiling).
        max_auth_attempts: consecutive handshakes refused with 401/403 before giving up
            with :class:`AuthenticationError`.
        open_timeout_s: bound on the opening handshake, in seconds.
        max_message_bytes: largest incoming message accepted, in bytes.
    """

    def __init__(
        self,
        provider: ConnectionProvider,
        *,
        on_open: Callable[[], Awaitable[None]],
        on_notification: Callable[[str, Any], None],
        reconnect: bool = False,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_auth_attempts: int = 2,
        open_timeout_s: float = 10.0,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        """Configure; :meth:`connect` opens the connection."""
        self._provider = provider
        self._on_open = on_open
        self._on_notification = on_notification
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
        self._closed_by_user = False
        self._connecting = False
        self._connected = asyncio.Event()
        self._failure: BridgeError | None = None
        self.url = ""
        """URL of the last connection attempt."""
        self.close_code: int | None = None
        """Close code of the last connection that ended (1001: server shutting down)."""
        self.attempts = 0
        """Connection attempts made so far (handshakes tried)."""

    @property
    def websocket(self) -> ClientConnection | None:
        """The open WebSocket; None while disconnected."""
        return self._ws

    @property
    def reader(self) -> asyncio.Task[None] | None:
        """The task reading the open WebSocket (it ends when the connection does); None while disconnected."""
        return self._reader

    async def connect(self) -> None:
        """Open the WebSocket and run ``on_open``; with ``reconnect``, retry transient failures.

        Raises:
            AuthenticationError: the handshake was refused (401/403) ``max_auth_attempts`` times.
            ProtocolMismatchError: raised by ``on_open``: terminal.
            OSError: the server cannot be reached (without ``reconnect``).
        """
        self._closed_by_user = False
        if self._reconnect:
            await self._connect_with_backoff()
        else:
            await self._open_and_prepare()

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

    async def _open_and_prepare(self) -> None:
        """Open, run ``on_open`` (dropping the socket if it fails), mark connected."""
        await self._open_once()
        try:
            await self._on_open()
        except ProtocolMismatchError:
            await self._drop()
            raise
        self._connected.set()

    async def _connect_with_backoff(self) -> None:
        self._connecting = True
        try:
            await self._connect_loop()
        finally:
            self._connecting = False

    async def _connect_loop(self) -> None:
        auth_failures = 0
        delay = backoff_delays(base_s=self._backoff_initial_s, cap_s=self._backoff_max_s)
        while not self._closed_by_user:
            try:
                await self._open_and_prepare()
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
            await asyncio.sleep(delay())

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
        """Wait until connected (and ``on_open`` done); raise the terminal error if it gave up.

        Raises:
            AuthenticationError, ProtocolMismatchError: the connection gave up.
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
                self._route_notification(item["method"], item.get("params"))
                continue
            future = self._pending.pop(item.get("id"), None)  # type: ignore[arg-type]
            if future is None or future.done():
                continue
            if "error" in item:
                future.set_exception(error_from_wire(item["error"]))
            else:
                future.set_result(item.get("result"))

    def _route_notification(self, method: str, params: Any) -> None:
        """``$/progress`` of a call in flight goes to its ``on_progress``; the rest to ``on_notification``."""
        if method == api.PROGRESS and isinstance(params, dict):
            callback = self._progress.get(params.get("token"))  # type: ignore[arg-type]
            if callback is not None:
                try:
                    callback(params.get("value"))
                except Exception:
                    log.exception("client_callback_failed", topic=method)
                return
        self._on_notification(method, params)

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
            AuthenticationError, ProtocolMismatchError: the connection gave up reconnecting.
            TypeError: ``on_progress`` with positional params.
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
