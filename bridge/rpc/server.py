"""``BridgeServer``: the WebSocket side (RFC 6455) of bridge, on ``websockets``' asyncio API.

Handshake checks run before the upgrade, in this order (DESIGN §6): Host (403) → Origin
(403) → token (401) → capacity (503). Per connection, frames are handled one at a time
in arrival order; replies and notifications are written to the transport synchronously
in the order they are produced, so a change notification always precedes the response
to the request that caused it. A connection whose outbound buffer passes the cap is
closed with 1013 (or aborted when it stops draining) and never delays anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.api import TopicSpec
from bridge.errors import ServiceUnavailableError
from bridge.rpc.dispatch import Dispatcher, notification_frame

log = structlog.get_logger(__name__)

SUBPROTOCOL: Final = "bridge.v1"
TOKEN_SUBPROTOCOL_PREFIX: Final = "bridge.v1.token."  # noqa: S105 - a prefix, not a secret
TOKEN_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{32,}\Z")
CLOSE_GOING_AWAY: Final = 1001
CLOSE_TRY_AGAIN_LATER: Final = 1013


@dataclass
class ServerSettings:
    """Transport settings; defaults are those of DESIGN §6.

    Attributes:
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free one.
        uds: serve on this Unix socket path (mode 0600) instead of TCP.
        token: the bearer token every client must present (``[A-Za-z0-9_-]{32,}``).
        allow_origins: exact ``Origin`` values accepted (``null`` never is).
        allow_hosts: extra ``Host`` names accepted besides localhost/127.0.0.1/[::1].
        max_message_bytes: largest incoming message, in bytes (larger → close 1009).
        max_batch: most entries in one batch.
        max_connections: most open connections (more → HTTP 503).
        outbound_cap_bytes: most bytes buffered for one connection before it is closed.
        ping_interval_s: keepalive ping period, in seconds.
        ping_timeout_s: seconds to wait for a pong.
        shutdown_timeout_s: bound on graceful shutdown, in seconds.
    """

    token: str
    host: str = "127.0.0.1"
    port: int = 0
    uds: Path | None = None
    allow_origins: frozenset[str] = field(default_factory=frozenset)
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    max_message_bytes: int = 256 * 1024
    max_batch: int = 100
    max_connections: int = 64
    outbound_cap_bytes: int = 1024 * 1024
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    shutdown_timeout_s: float = 5.0


def _refuse(status: http.HTTPStatus, reason: str) -> Response:
    body = f"{status.value} {status.phrase}: {reason}\n".encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


def _offered_subprotocols(request: Request) -> list[str]:
    return [
        item.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for item in value.split(",")
        if item.strip()
    ]


def presented_token(request: Request) -> str | None:
    """Return the token a client presented: Bearer header, subprotocol pair or ``?token=``."""
    auth = request.headers.get("Authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    for item in _offered_subprotocols(request):
        if item.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return item[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    values = parse_qs(urlsplit(request.path).query).get("token")
    return values[0] if values else None


class BridgeServer:
    """Serves a :class:`Dispatcher` over WebSocket and fans out notifications.

    Args:
        dispatcher: answers frames.
        settings: transport settings.
    """

    def __init__(self, dispatcher: Dispatcher, settings: ServerSettings) -> None:
        """Configure the server; call :meth:`start` to listen."""
        if not TOKEN_PATTERN.match(settings.token):
            raise ValueError("token must match [A-Za-z0-9_-]{32,}")
        self.dispatcher = dispatcher
        dispatcher.refuse = self.refusal
        self.settings = settings
        self._token = settings.token.encode()
        self._server: Server | None = None
        self._connections: set[ServerConnection] = set()
        self._closing = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.port: int | None = None

    # ---- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT`` (or ``ws://localhost`` over a Unix socket)."""
        if self.settings.uds is not None:
            return "ws://localhost"
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}"

    def refusal(self) -> ServiceUnavailableError | None:
        """The dispatcher's gate: 5003 once shutdown has begun."""
        return ServiceUnavailableError() if self._closing else None

    async def start(self) -> None:
        """Listen; afterwards :attr:`port` holds the bound port.

        Raises:
            OSError: the address is in use or cannot be bound.
        """
        s = self.settings
        common: dict[str, Any] = {
            "process_request": self._check_handshake,
            "select_subprotocol": self._select_subprotocol,
            "compression": None,
            "max_size": s.max_message_bytes,
            "ping_interval": s.ping_interval_s,
            "ping_timeout": s.ping_timeout_s,
            "close_timeout": s.shutdown_timeout_s,
            "server_header": None,
        }
        if s.uds is not None:
            s.uds.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                s.uds.unlink()
            self._server = await unix_serve(self._serve_connection, path=str(s.uds), **common)
            s.uds.chmod(0o600)
        else:
            self._server = await serve(self._serve_connection, s.host, s.port, **common)
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("server_listening", url=self.url)

    async def shutdown(self) -> None:
        """Stop accepting, answer new requests with 5003, finish in-flight work, close 1001.

        Bounded by ``settings.shutdown_timeout_s`` seconds.
        """
        if self._server is None:
            return
        self._closing = True
        server = self._server
        # Stop accepting new connections; keep the open ones until in-flight work is done.
        server.close(close_connections=False)
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.shutdown_timeout_s)
        except TimeoutError:
            log.warning("shutdown_in_flight_timeout", in_flight=self._in_flight)
        await asyncio.gather(
            *(ws.close(CLOSE_GOING_AWAY, "server shutting down") for ws in list(self._connections)),
            return_exceptions=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), self.settings.shutdown_timeout_s)
        if self.settings.uds is not None:
            with contextlib.suppress(FileNotFoundError):
                self.settings.uds.unlink()
        log.info("server_stopped")

    # ---- handshake ------------------------------------------------------------------

    def _host_allowed(self, host: str | None) -> bool:
        if self.settings.uds is not None:
            return True  # no browser can reach a Unix socket: no DNS rebinding
        if host is None:
            return False
        host = host.strip().lower()
        names = {"localhost", "127.0.0.1", "[::1]"}
        if host in {f"{name}:{self.port}" for name in names}:
            return True
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return host in self.settings.allow_hosts or bare in self.settings.allow_hosts

    def _token_ok(self, token: str | None) -> bool:
        if token is None or not TOKEN_PATTERN.match(token):
            return False
        return hmac.compare_digest(token.encode(), self._token)

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        del connection
        if not self._host_allowed(request.headers.get("Host")):
            log.info("handshake_refused", status=403, reason="host")
            return _refuse(http.HTTPStatus.FORBIDDEN, "Host not allowed")
        origin = request.headers.get("Origin")
        if origin is not None and (origin == "null" or origin not in self.settings.allow_origins):
            log.info("handshake_refused", status=403, reason="origin")
            return _refuse(http.HTTPStatus.FORBIDDEN, "Origin not allowed")
        if not self._token_ok(presented_token(request)):
            log.info("handshake_refused", status=401, reason="token")
            return _refuse(http.HTTPStatus.UNAUTHORIZED, "missing or invalid token")
        if len(self._connections) >= self.settings.max_connections or self._closing:
            log.info("handshake_refused", status=503, reason="capacity")
            return _refuse(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections")
        return None

    def _select_subprotocol(self, connection: ServerConnection, offered: list[str]) -> str | None:
        del connection
        # Never echo the token-carrying entry: the 101 selects exactly bridge.v1.
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    # ---- connections ----------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        self._connections.add(ws)
        log.info("connection_opened", connections=len(self._connections))
        try:
            async for frame in ws:
                self._begin()
                try:
                    reply = await self.dispatcher.handle_frame(frame)
                finally:
                    self._end()
                if reply is not None:
                    self._write([ws], reply)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)
            log.info("connection_closed", code=ws.close_code, connections=len(self._connections))

    def _begin(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _end(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def _write(self, connections: Iterable[ServerConnection], frame: bytes) -> None:
        """Write ``frame`` now to each connection; enforce the outbound cap."""
        targets = list(connections)
        broadcast(targets, frame, text=True)
        cap = self.settings.outbound_cap_bytes
        for ws in targets:
            transport = ws.transport
            if transport is None or transport.is_closing():
                continue
            buffered = transport.get_write_buffer_size()
            if buffered > cap:
                self._overflow(ws, buffered)

    def _overflow(self, ws: ServerConnection, buffered: int) -> None:
        self._connections.discard(ws)
        log.warning(
            "connection_overflowed",
            buffered_bytes=buffered,
            cap_bytes=self.settings.outbound_cap_bytes,
        )
        # The close frame would queue behind the unread backlog: abort the transport.
        ws.transport.abort()

    def notify(self, topic: TopicSpec, payload: dict[str, Any]) -> None:
        """Send ``payload`` as a ``topic`` notification to every open connection, now."""
        self._write(self._connections, notification_frame(topic.name, payload))

    @property
    def connection_count(self) -> int:
        """Number of open connections."""
        return len(self._connections)
