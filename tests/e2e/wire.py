"""Helpers for wire-level tests: an in-process bridge, raw frames, hand-made handshakes."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import RootModel
from websockets.asyncio.client import ClientConnection, connect

from bridge import api
from bridge.app import Bridge, BridgeOptions, SecretOptions, TransportOptions, start_bridge
from bridge.keystore import SecretBackend
from bridge.models import EmptyParams

TIMEOUT = 10.0

G = TypeVar("G")
C = TypeVar("C")


class SumParams(RootModel[list[int]]):
    """Positional params (a RootModel of a list), like ``rpc.on``'s ``["event"]``."""


SUM: api.ChannelSpec[SumParams, int] = api.ChannelSpec(
    "test:sum", SumParams, int, "Sum of an array of integers."
)
BOOM: api.ChannelSpec[EmptyParams, int] = api.ChannelSpec(
    "test:boom", EmptyParams, int, "Always fails unexpectedly."
)
SECRET_DETAIL = "internal detail sk-never-shown-to-clients"


def make_registry() -> api.Registry:
    """A registry with the test-only channels ``test:sum`` (array params) and ``test:boom``."""
    registry = api.Registry()

    async def total(params: SumParams) -> int:
        return sum(params.root)

    async def boom(_: EmptyParams) -> int:
        raise RuntimeError(SECRET_DETAIL)

    registry.add(SUM, total)
    registry.add(BOOM, boom)
    return registry


@asynccontextmanager
async def running_bridge(data_dir: Path, **options: Any) -> AsyncIterator[Bridge]:
    """Start an in-process bridge on 127.0.0.1 port 0 with the test channels; close it after.

    ``options`` are :class:`TransportOptions` fields.
    """
    bridge = await start_bridge(
        BridgeOptions(
            data_dir=data_dir,
            secrets=SecretOptions(backend=SecretBackend.FILE),
            transport=TransportOptions(port=0, **options),
        ),
        make_registry(),
    )
    try:
        yield bridge
    finally:
        await bridge.close()


@asynccontextmanager
async def connected_bridge(
    data_dir: Path,
    register: Callable[[Bridge], G],
    connect: Callable[[Bridge], AbstractAsyncContextManager[C]],
    **options: Any,
) -> AsyncIterator[tuple[Bridge, G, C]]:
    """:func:`running_bridge` with test channels added by ``register`` and one connection.

    Yields ``(bridge, register(bridge), connection)``: ``register`` returns what the test
    waits on (its gates); ``connect`` opens the connection (e.g. :func:`raw_connection`
    or :func:`ws_connection`), closed when the block ends.
    """
    async with running_bridge(data_dir, **options) as bridge:
        gates = register(bridge)
        async with connect(bridge) as connection:
            yield bridge, gates, connection


def port_of(bridge: Bridge) -> int:
    """The TCP port ``bridge`` listens on (it was started on port 0)."""
    assert bridge.server.port is not None
    return bridge.server.port


def authorized(bridge: Bridge) -> dict[str, str]:
    """The Authorization header for ``bridge``."""
    return {"Authorization": f"Bearer {bridge.token}"}


async def open_ws(bridge: Bridge, **kwargs: Any) -> ClientConnection:
    """A plain websockets client connection to ``bridge``, authorized."""
    return await connect(bridge.url, additional_headers=authorized(bridge), compression=None, **kwargs)


@asynccontextmanager
async def ws_connection(bridge: Bridge) -> AsyncIterator[ClientConnection]:
    """:func:`open_ws` to ``bridge``, closed when the block ends."""
    ws = await open_ws(bridge)
    try:
        yield ws
    finally:
        await ws.close()


async def recv_json(ws: ClientConnection) -> Any:
    """The next frame, parsed; fails the test after TIMEOUT seconds."""
    return orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def recv_text(ws: ClientConnection) -> str:
    """The next frame as text, exactly as sent."""
    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(frame, str)
    return frame


def request(method: str, params: Any = None, request_id: Any = 1) -> str:
    """A JSON-RPC request frame."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    return orjson.dumps(message).decode()


def cancel(request_id: Any) -> str:
    """A ``$/cancelRequest`` notification frame for ``request_id`` (DESIGN §5)."""
    return orjson.dumps(
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": request_id}}
    ).decode()


def handshake_bytes(port: int, headers: list[tuple[str, str | bytes]], path: str = "/") -> bytes:
    """An HTTP/1.1 WebSocket upgrade request with exactly ``headers`` added (RFC 6455 §4.1)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1".encode(),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}".encode(),
        b"Sec-WebSocket-Version: 13",
    ]
    del port
    for name, value in headers:
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def handshake(
    port: int, headers: list[tuple[str, str | bytes]], path: str = "/"
) -> tuple[int, dict[str, list[str]], asyncio.StreamWriter]:
    """Send a hand-made upgrade request; return (status, response headers, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(handshake_bytes(port, headers, path))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response: dict[str, list[str]] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            response.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), response, writer


def raw_socket(port: int, token: str, rcvbuf_bytes: int | None = None) -> socket.socket:
    """A raw TCP socket that has completed the WebSocket handshake by hand (blocking).

    ``SO_RCVBUF``, when given, is set before ``connect`` so the kernel's receive window
    stays small.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(handshake_bytes(port, [("Host", f"127.0.0.1:{port}"), ("Authorization", f"Bearer {token}")]))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: read nothing past the 101 response
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@asynccontextmanager
async def raw_connection(bridge: Bridge) -> AsyncIterator[socket.socket]:
    """A :func:`raw_socket` to ``bridge`` (opened off the event loop), closed when the block ends."""
    sock = await asyncio.to_thread(raw_socket, port_of(bridge), bridge.token)
    try:
        yield sock
    finally:
        sock.close()


async def send_frames(sock: socket.socket, *frames: str) -> None:
    """Send ``frames`` as masked text frames in one TCP write (one read on the server's side)."""
    await asyncio.to_thread(sock.sendall, b"".join(masked_text_frame(f.encode()) for f in frames))


async def receive_json(sock: socket.socket) -> Any:
    """The next frame from ``sock``, which must be a text frame, parsed."""
    opcode, payload = await asyncio.to_thread(read_frame, sock)
    assert opcode == 1, (opcode, payload)
    return orjson.loads(payload)


def stalled_socket(port: int, token: str, rcvbuf_bytes: int = 4096) -> socket.socket:
    """A :func:`raw_socket` with a small receive window, for tests that never read it."""
    return raw_socket(port, token, rcvbuf_bytes)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "server closed the connection"
        data += chunk
    return data


def _parse_frame(take: Callable[[int], bytes]) -> tuple[int, bytes]:
    """One unmasked server → client frame (RFC 6455 §5.2) from ``take(n)``: ``(opcode, payload)``."""
    first, second = take(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(take(2), "big")
    elif length == 127:
        length = int.from_bytes(take(8), "big")
    return first & 0x0F, take(length)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one server → client frame from ``sock``: ``(opcode, payload)``."""
    return _parse_frame(lambda size: _recv_exactly(sock, size))


def frames_in(data: bytes) -> list[Any]:
    """The JSON messages of the text frames in ``data`` (bytes one server write sent)."""
    stream = io.BytesIO(data)
    messages: list[Any] = []
    while stream.tell() < len(data):
        opcode, payload = _parse_frame(stream.read)
        if opcode == 1:
            messages.append(orjson.loads(payload))
    return messages


def masked_frame(payload: bytes, *, opcode: int = 1, fin: bool = True) -> bytes:
    """A client → server frame, masked with a zero key (RFC 6455 §5.2); text by default."""
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = bytes([first, 0x80 | length])
    elif length < 2**16:
        header = bytes([first, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def masked_text_frame(payload: bytes) -> bytes:
    """A complete client → server text frame (FIN, opcode 1)."""
    return masked_frame(payload)
