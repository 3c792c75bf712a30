"""``BridgeClient``: a Python renderer for a bridge server (DESIGN §8).

It speaks JSON-RPC 2.0 over one WebSocket, matches responses to calls by id, delivers
notifications to ``on(event, callback)`` subscribers, and rebuilds the server's errors
as the classes of :mod:`bridge.errors` from ``error.data.code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import orjson
import structlog
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge import api
from bridge.errors import AuthenticationError, BridgeError, ConnectionLostError, error_from_wire
from bridge.models import (
    LlmConfigInput,
    LlmConfigPatch,
    LlmConfigView,
    Snapshot,
)

log = structlog.get_logger(__name__)

R = TypeVar("R")

HTTP_UNAUTHORIZED = 401
HTTP_FORBIDDEN = 403


@dataclass(frozen=True)
class ConnectionInfo:
    """What a client needs to reach a server: ``url``, ``token`` and maybe a Unix ``socket``."""

    url: str
    token: str
    socket: str | None = None


def read_connection_file(path: Path) -> ConnectionInfo:
    """Read the connection file written by ``bridge serve`` (DESIGN §7).

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not a connection file.
    """
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict) or "url" not in data or "token" not in data:
        raise ValueError(f"{path} is not a bridge connection file")
    return ConnectionInfo(str(data["url"]), str(data["token"]), data.get("socket"))


Callback = Callable[[Any], None]


class BridgeClient:
    """One connection to a bridge server.

    Args:
        url: ``ws://127.0.0.1:PORT`` (the ready line's ``url``).
        token: the server's bearer token (sent in ``Authorization``).
        unix_socket: path of the server's Unix socket, when it serves one.
        open_timeout_s: bound on the opening handshake, in seconds.
        max_message_bytes: largest incoming message accepted, in bytes.

    Use as ``async with BridgeClient(url, token) as client: ...``.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        unix_socket: str | None = None,
        open_timeout_s: float = 10.0,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        """Configure the client; :meth:`connect` opens the connection."""
        self.url = url
        self._token = token
        self._unix_socket = unix_socket
        self._open_timeout_s = open_timeout_s
        self._max_message_bytes = max_message_bytes
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subscribers: defaultdict[str, list[Callback]] = defaultdict(list)

    def __repr__(self) -> str:
        """Show the URL, never the token."""
        return f"BridgeClient(url={self.url!r})"

    # ---- connection -----------------------------------------------------------------

    async def connect(self) -> None:
        """Open the WebSocket.

        Raises:
            AuthenticationError: the server refused the handshake (401/403).
            OSError: the server cannot be reached.
        """
        options: dict[str, Any] = {
            "additional_headers": {"Authorization": f"Bearer {self._token}"},
            "compression": None,
            "max_size": self._max_message_bytes,
            "open_timeout": self._open_timeout_s,
        }
        try:
            if self._unix_socket is not None:
                self._ws = await unix_connect(self._unix_socket, self.url, **options)
            else:
                self._ws = await connect(self.url, **options)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in {HTTP_UNAUTHORIZED, HTTP_FORBIDDEN}:
                raise AuthenticationError(f"The server refused the handshake with HTTP {status}") from None
            raise
        self._reader = asyncio.create_task(self._read(self._ws), name="bridge-client-reader")

    async def close(self) -> None:
        """Close the connection; pending calls fail with ConnectionLostError."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

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
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(ConnectionLostError())

    def _receive(self, frame: str | bytes) -> None:
        message = orjson.loads(frame)
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, dict):
                continue
            if "method" in item and "id" not in item:
                for callback in tuple(self._subscribers.get(item["method"], ())):
                    try:
                        callback(item.get("params"))
                    except Exception:
                        log.exception("client_callback_failed", event=item["method"])
                continue
            future = self._pending.pop(item.get("id"), None)  # type: ignore[arg-type]
            if future is None or future.done():
                continue
            if "error" in item:
                future.set_exception(error_from_wire(item["error"]))
            else:
                future.set_result(item.get("result"))

    # ---- calls ----------------------------------------------------------------------

    async def invoke(self, channel: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """Call ``channel`` and return its JSON result.

        Raises:
            BridgeError: the server's error, rebuilt as its class (``ValidationError``...).
            ConnectionLostError: the connection dropped before the response.
        """
        ws = self._ws
        if ws is None:
            raise ConnectionLostError("Not connected")
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": channel}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await ws.send(orjson.dumps(message), text=True)
        except ConnectionClosed:
            self._pending.pop(request_id, None)
            raise ConnectionLostError from None
        return await future

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
    "read_connection_file",
]
