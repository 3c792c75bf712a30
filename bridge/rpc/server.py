"""``BridgeServer``: the WebSocket side (RFC 6455) of bridge, on ``websockets``' asyncio API.

Handshake checks run before the upgrade, in this order (DESIGN §6): Host (403) → Origin
(403) → token (401) → capacity (503). Per connection, frames are handled one at a time
in arrival order, and everything sent on a connection goes through its one protocol
buffer, in the order produced. A change notification is written to every connection at
once, before the response to the request that caused it. Replies are coalesced: while
websockets already holds more received frames for a connection (a renderer pipelining
requests), replies wait in the buffer and the batch leaves in one write once those frames
are handled (16 pipelined reads: one ``send``, not 16), at the end of the event-loop turn
at the latest; a lone request's reply is written at once. A connection whose outbound
buffer passes the cap is closed with 1013 (or aborted when it stops draining) and never
delays anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import SEND_EOF, State

from bridge.api import TopicSpec
from bridge.errors import BridgeError, RateLimitedError, ServiceUnavailableError
from bridge.options import TransportOptions
from bridge.rpc.dispatch import Dispatcher, notification_frame

log = structlog.get_logger(__name__)

SUBPROTOCOL: Final = "bridge.v1"
TOKEN_SUBPROTOCOL_PREFIX: Final = "bridge.v1.token."  # noqa: S105 - a prefix, not a secret
TOKEN_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{32,}\Z")
CLOSE_GOING_AWAY: Final = 1001
CLOSE_TRY_AGAIN_LATER: Final = 1013
CLOSE_FRAME_ROOM: Final = 64
"""Bytes kept free under the cap for a close frame (header + code + short reason)."""
FLUSH_AT_BYTES: Final = 64 * 1024
"""A connection's queued frames are written at once when they reach this many bytes."""


@dataclass(kw_only=True)
class ServerSettings(TransportOptions):
    """Everything :class:`BridgeServer` needs: the transport options and the token.

    Attributes:
        token: the bearer token every client must present (``[A-Za-z0-9_-]{32,}``).
    """

    token: str = field(repr=False)


def _refuse(status: http.HTTPStatus, reason: str) -> Response:
    body = f"{status.value} {status.phrase}: {reason}\n".encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


class TokenBucket:
    """A token bucket: ``rate_per_s`` tokens per second, holding at most ``burst``.

    Args:
        rate_per_s: refill rate, in tokens per second.
        burst: capacity, in tokens (starts full).
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Start full."""
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _single(headers: Headers, name: str) -> str | None:
    """The header's value when sent exactly once; None when absent; "" when repeated."""
    values = headers.get_all(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else ""


def _write_queued(ws: ServerConnection) -> None:
    """Write what ``ws``'s protocol has queued in one ``transport.write``.

    The same as websockets' ``Connection.send_data`` (``SEND_EOF`` half-closes the TCP
    connection, or closes it where that is impossible), except that consecutive frames are
    joined into one write instead of one write (and one ``send`` system call) each.
    """
    transport = ws.transport
    chunks = ws.protocol.data_to_send()
    if transport is None or transport.is_closing() or not chunks:
        return
    if SEND_EOF not in chunks:
        transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        return
    for chunk in chunks:  # a close handshake ended: rare, no joining
        if chunk:
            transport.write(chunk)
        elif transport.can_write_eof():
            with contextlib.suppress(Exception):  # uvloop may raise RuntimeError here
                transport.write_eof()
        else:
            transport.close()


def _frames_waiting(ws: ServerConnection) -> bool:
    """True when websockets has already received more data frames for ``ws``.

    Reads the length of the connection's receive queue (``recv_messages.frames``, an
    attribute of websockets' asyncio ``Connection``; the one-write test in
    ``tests/e2e/test_transport.py`` fails if an upgrade removes it). Without it, every
    frame is written at once.
    """
    try:
        return len(ws.recv_messages.frames) > 0
    except AttributeError:  # pragma: no cover - another websockets layout
        return False


def _offered_subprotocols(request: Request) -> list[str]:
    return [
        item.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for item in value.split(",")
        if item.strip()
    ]


def presented_token(request: Request) -> str | None:
    """Return the token a client presented: Bearer header, subprotocol pair or ``?token=``.

    Returns:
        The presented string (maybe malformed; "" for a non-Bearer or repeated
        ``Authorization``), or None when no token was presented at all.
    """
    auth = _single(request.headers, "Authorization")
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

    Raises:
        ValueError: the token does not match ``[A-Za-z0-9_-]{32,}``.
    """

    def __init__(self, dispatcher: Dispatcher, settings: ServerSettings) -> None:
        """Configure the server; call :meth:`start` to listen."""
        if not TOKEN_PATTERN.match(settings.token):
            raise ValueError("token must match [A-Za-z0-9_-]{32,}")
        self.dispatcher = dispatcher
        dispatcher.refuse = self.refusal
        self.settings = settings
        self._token = settings.token.encode()
        self._allow_hosts = frozenset(name.strip().lower() for name in settings.allow_hosts)
        self._server: Server | None = None
        # Open connections that receive notifications; a connection leaves it as soon as
        # it overflows or closes, before its handler finishes.
        self._connections: set[ServerConnection] = set()
        # Accepted by the handshake checks, not yet served (or never: the handshake may
        # still fail); counted against max_connections so a burst cannot pass it.
        self._admitted: set[ServerConnection] = set()
        self._closing = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections with frames queued in this turn of the event loop → bytes queued.
        self._queued: dict[ServerConnection, int] = {}
        self._flush_scheduled = False
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
        """Graceful shutdown (DESIGN §7), bounded by ``settings.shutdown_timeout_s`` seconds.

        In order: stop accepting connections; answer new requests with 5003; wait for
        the requests in flight to finish and their responses to be written; close every
        connection with 1001 (aborting those that do not complete the closing handshake
        before the deadline); wait for the handlers to end.
        """
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout_s
        self._closing = True
        server, self._server = self._server, None
        server.close(close_connections=False)
        try:
            async with asyncio.timeout_at(deadline):
                await self._idle.wait()
        except TimeoutError:
            log.warning("shutdown_in_flight_timeout", in_flight=self._in_flight)
        targets = [*self._connections, *(ws for ws in server.connections if ws not in self._connections)]
        self._connections.clear()
        await asyncio.gather(
            *(
                self._close_or_abort(ws, CLOSE_GOING_AWAY, "server shutting down", deadline - loop.time())
                for ws in targets
            )
        )
        try:
            async with asyncio.timeout_at(deadline + 1):
                await server.wait_closed()
        except TimeoutError:
            log.warning("shutdown_handlers_timeout")
        if self.settings.uds is not None:
            with contextlib.suppress(FileNotFoundError):
                self.settings.uds.unlink()
        log.info("server_stopped")

    # ---- handshake ------------------------------------------------------------------

    def _host_allowed(self, host: str | None) -> bool:
        if self.settings.uds is not None:
            return True  # no browser can reach a Unix socket: no DNS rebinding
        if not host:
            return False
        host = host.strip().lower()
        names = {"localhost", "127.0.0.1", "[::1]"}
        if host in {f"{name}:{self.port}" for name in names}:
            return True
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return host in self._allow_hosts or bare in self._allow_hosts

    def _token_ok(self, token: str | None) -> bool:
        # The shape check comes first, so only ASCII reaches the comparison; the
        # comparison is on bytes (compare_digest on str raises for non-ASCII).
        if token is None or not TOKEN_PATTERN.match(token):
            return False
        return hmac.compare_digest(token.encode("ascii"), self._token)

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """``process_request`` hook: Host (403) → Origin (403) → token (401) → capacity (503).

        Runs before the 101 response (RFC 6455 §4.2.2); a refused handshake registers
        nothing and logs one INFO line without the path or any header value.
        """
        if not self._host_allowed(_single(request.headers, "Host")):
            log.info("handshake_refused", status=403, reason="host")
            return _refuse(http.HTTPStatus.FORBIDDEN, "Host not allowed")
        origin = _single(request.headers, "Origin")
        if origin is not None and (origin in {"", "null"} or origin not in self.settings.allow_origins):
            log.info("handshake_refused", status=403, reason="origin")
            return _refuse(http.HTTPStatus.FORBIDDEN, "Origin not allowed")
        if not self._token_ok(presented_token(request)):
            log.info("handshake_refused", status=401, reason="token")
            return _refuse(http.HTTPStatus.UNAUTHORIZED, "missing or invalid token")
        if self._closing or len(self._connections) + len(self._admitted) >= self.settings.max_connections:
            log.info("handshake_refused", status=503, reason="capacity")
            return _refuse(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections")
        self._admitted.add(connection)
        # If the handshake fails after this point, the handler never runs: release the
        # slot when the TCP connection goes away.
        connection.connection_lost_waiter.add_done_callback(lambda _: self._admitted.discard(connection))
        return None

    def _select_subprotocol(self, connection: ServerConnection, offered: list[str]) -> str | None:
        del connection
        # Never echo the token-carrying entry: the 101 selects exactly bridge.v1.
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    # ---- connections ----------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        self._admitted.discard(ws)
        self._connections.add(ws)
        log.info("connection_opened", connections=len(self._connections))
        admit = self._rate_gate()
        try:
            handle_frame = self.dispatcher.handle_frame
            async for frame in ws:
                self._begin()
                try:
                    reply = await handle_frame(frame, admit=admit)
                finally:
                    self._end()
                if reply is not None:
                    self._send(ws, reply, coalesce=True)
                if ws.paused:  # over the write limit (rare): no coroutine per frame otherwise
                    await self._wait_drained(ws)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)
            log.info("connection_closed", code=ws.close_code, connections=len(self._connections))

    def _rate_gate(self) -> Callable[[], BridgeError | None] | None:
        rate = self.settings.rate_limit_per_s
        if rate is None:
            return None
        bucket = TokenBucket(rate, max(1.0, rate))

        def admit() -> BridgeError | None:
            return None if bucket.take() else RateLimitedError(context={"limitPerSecond": rate})

        return admit

    async def _wait_drained(self, ws: ServerConnection) -> None:
        """Stop reading from ``ws`` while its outbound buffer is over websockets' write limit.

        A client that floods requests without reading the responses thus only slows
        itself: its requests wait in its own TCP window. If the buffer does not drain
        within ``ping_timeout_s`` seconds, the connection is closed with 1013 (or aborted).
        """
        transport = ws.transport
        if not ws.paused or transport is None or transport.is_closing():
            return  # under the write limit (the transport has not paused writing)
        try:
            await asyncio.wait_for(ws.drain(), self.settings.ping_timeout_s)
        except TimeoutError:
            self._overflow(ws, transport.get_write_buffer_size() + self._queued.get(ws, 0), reason="stalled")

    def _begin(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _end(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def _send(self, ws: ServerConnection, frame: bytes, *, coalesce: bool = False) -> None:
        """Queue ``frame`` on ``ws`` and write it, unless that would pass the outbound cap.

        With ``coalesce`` (replies), while websockets already holds more received frames
        for ``ws`` (a pipelining renderer), the frame stays queued and goes out with the
        replies to those frames: at the latest at the end of this turn of the event loop
        (:meth:`_flush`), at once past ``FLUSH_AT_BYTES``. Without it (notifications), the
        frame and anything queued before it are written now. Order is kept: everything
        goes through the connection's one protocol buffer, which websockets' own writes
        (pongs, close frames) flush first. A frame larger than the cap is still written
        onto an empty buffer (a response that big could never be delivered otherwise);
        any other frame that would pass the cap is dropped and the connection closed
        (DESIGN §6).
        """
        transport = ws.transport
        if ws.protocol.state is not State.OPEN or transport is None or transport.is_closing():
            return
        cap = self.settings.outbound_cap_bytes
        queued = self._queued.pop(ws, 0)
        if queued and transport.get_write_buffer_size() + queued + len(frame) > cap:
            # Hand what is queued to the transport first, so the cap is judged as if every
            # frame had been written at once (an oversized frame onto an empty buffer).
            _write_queued(ws)
            queued = 0
        buffered = transport.get_write_buffer_size() + queued
        if buffered and buffered + len(frame) > cap:
            self._overflow(ws, buffered, reason="outbound_cap")
            return
        ws.protocol.send_text(frame)  # sans-I/O: serializes the frame into protocol.writes
        queued += len(frame)
        if coalesce and queued < FLUSH_AT_BYTES and _frames_waiting(ws):
            self._queued[ws] = queued
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
            return
        _write_queued(ws)

    def _flush(self) -> None:
        """End of a turn of the event loop: write every connection's queued frames."""
        self._flush_scheduled = False
        queued, self._queued = self._queued, {}
        for ws in queued:
            try:
                _write_queued(ws)
            except Exception:  # one broken transport must not hold back the others
                log.exception("flush_failed")

    def _write(self, connections: Iterable[ServerConnection], frame: bytes) -> None:
        """Write ``frame`` now to each connection; each one is checked against the cap.

        A connection whose write fails is skipped and logged (as websockets'
        ``broadcast`` does): the others still get the frame.
        """
        for ws in list(connections):
            try:
                self._send(ws, frame)
            except Exception:
                log.exception("notify_failed")

    def _overflow(self, ws: ServerConnection, buffered: int, *, reason: str) -> None:
        """Take ``ws`` out of the fan-out and close it with 1013, or abort it."""
        self._connections.discard(ws)
        self._queued.pop(ws, None)
        log.warning(
            "connection_overflowed",
            reason=reason,
            buffered_bytes=buffered,
            cap_bytes=self.settings.outbound_cap_bytes,
        )
        if buffered + CLOSE_FRAME_ROOM > self.settings.outbound_cap_bytes:
            # Even the close frame would pass the cap: drop the connection at once.
            ws.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(
            self._close_or_abort(
                ws, CLOSE_TRY_AGAIN_LATER, "outbound buffer full", self.settings.ping_timeout_s
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_or_abort(self, ws: ServerConnection, code: int, reason: str, timeout_s: float) -> None:
        """Close ``ws`` with ``code``; abort the transport if that takes over ``timeout_s`` seconds.

        websockets' ``close()`` can wait forever for a buffer that never drains
        (websockets issue #1527), hence the outer bound.
        """
        try:
            async with asyncio.timeout(max(timeout_s, 0.0)):
                await ws.close(code, reason)
        except TimeoutError:
            log.info("connection_aborted", code=code)
        finally:
            if ws.transport is not None and ws.protocol.state is not State.CLOSED:
                ws.transport.abort()

    def notify(self, topic: TopicSpec, payload: dict[str, Any]) -> None:
        """Send ``payload`` as a ``topic`` notification to every open connection, now.

        Written to every connection's transport before this returns (with any replies
        queued on it before), so it precedes the response to the request that caused it
        everywhere; a connection whose buffer would pass the cap is closed instead
        (DESIGN §6).
        """
        self._write(self._connections, notification_frame(topic.name, payload))

    @property
    def connection_count(self) -> int:
        """Number of open connections that receive notifications."""
        return len(self._connections)
