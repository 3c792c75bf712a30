"""``BridgeServer``: listens (TCP or a Unix socket), keeps the connection registry, fans out.

Each accepted socket gets its own :class:`~bridge.rpc.connection.Connection` (an
``asyncio.Protocol`` driving websockets' sans-I/O ``ServerProtocol``), which runs the
handshake checks of :mod:`bridge.rpc.handshake` and answers frames. The server only
knows which connections are handshaking (capped overall and per peer: the oldest is
dropped past a cap) and which are open, counts requests running in
tasks for graceful shutdown, and writes notifications to every open connection at once
(each within its own outbound cap).

The settings (:mod:`bridge.rpc.settings`) and the rate limiter
(:mod:`bridge.rpc.ratelimit`) live in their own modules; their public names are
re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import sys
from collections.abc import Callable, Iterator
from typing import Any, Final

import structlog
from websockets.protocol import State

from bridge.api import TopicSpec
from bridge.errors import BridgeError, RateLimitedError, ServiceUnavailableError
from bridge.rpc.connection import CLOSE_GOING_AWAY, Connection, RefusalLog
from bridge.rpc.dispatch import Dispatcher, Gate, notification_frame
from bridge.rpc.handshake import SUBPROTOCOL, TOKEN_PATTERN, HandshakePolicy, presented_token
from bridge.rpc.ratelimit import TokenBucket
from bridge.rpc.settings import InvalidSettingError, ServerSettings, TransportOptions

__all__ = [
    "SUBPROTOCOL",
    "TOKEN_PATTERN",
    "BridgeServer",
    "InvalidSettingError",
    "ServerSettings",
    "TokenBucket",
    "TransportOptions",
    "presented_token",
]

if sys.platform != "win32":
    import resource

log = structlog.get_logger(__name__)

RESERVED_DESCRIPTORS: Final = 32
"""Descriptors kept for everything but sockets (store, logs, the event loop, listeners)."""
MIN_HANDSHAKE_SLOTS: Final = 4
"""Handshakes admitted at once even under the tightest descriptor limit."""
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts served on both 127.0.0.1 and [::1] (DESIGN §6)."""
PORT_ATTEMPTS: Final = 16
"""Tries to find a port 0 choice whose [::1] twin is free too."""
_NO_IPV6: Final = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})
HOLD_MAX_S: Final = 1.0
"""Longest a notification is held while batches run, in seconds (then the list is written).

50 writes of one batch committed in 45–600 ms on the test machine (one fsync each), so
a batch's changes usually leave in one burst; a batch slowed down (a locked store, a slow
``llm-config:test`` element) cannot keep everyone's notifications from renderers longer.
"""


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit where allowed (POSIX).

    Returns:
        The (soft, hard) limits in force afterwards; ``RLIM_INFINITY`` is reported as is
        (-1, -1 on Windows, which has no such limit).
    """
    if sys.platform == "win32":
        return -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. macOS refuses above OPEN_MAX
            log.warning("descriptor_limit_not_raised", soft=soft, hard=hard)
    return soft, hard


def handshake_slots(settings: TransportOptions) -> int:
    """How many connections may be in their opening handshake at once.

    ``max_handshakes``, lowered so that the open connections plus the handshakes fit
    under the soft descriptor limit with ``RESERVED_DESCRIPTORS`` to spare: a flood of
    idle sockets then never exhausts descriptors (the server would stop accepting,
    real clients included).
    """
    if sys.platform == "win32":
        return settings.max_handshakes
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.max_handshakes
    room = soft - RESERVED_DESCRIPTORS - settings.max_connections
    return max(MIN_HANDSHAKE_SLOTS, min(settings.max_handshakes, room))


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
        dispatcher.hold = self.holding
        self.settings = settings
        self.policy = HandshakePolicy(
            token=settings.token.encode(),
            port=None,
            uds=settings.uds is not None,
            allow_hosts=frozenset(name.strip().lower() for name in settings.allow_hosts),
            allow_origins=frozenset(settings.allow_origins),
        )
        self._listeners: list[asyncio.Server] = []
        self.refusals = RefusalLog()
        # Open connections that receive notifications; a connection leaves it as soon as
        # it overflows or starts closing, before TCP is gone.
        self._connections: set[Connection] = set()
        # TCP connections whose opening handshake has not finished, oldest first, overall
        # and per peer address (both capped: the oldest is evicted past a cap).
        self._handshaking: dict[Connection, None] = {}
        self._handshaking_by_peer: dict[str, dict[Connection, None]] = {}
        self.handshake_slots = settings.max_handshakes
        # Every connection until TCP is gone (graceful shutdown closes them all).
        self._alive: set[Connection] = set()
        self._closing = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.port: int | None = None
        # The fan-out hold (module docstring): running batches, the frames held, the
        # sequence number of the first of them, and how many notifications were made.
        self._holds = 0
        self._held: list[bytes] = []
        self._held_base = 0
        self._sequence = 0
        self._hold_timer: asyncio.TimerHandle | None = None

    # ---- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT`` (or ``ws://localhost`` over a Unix socket)."""
        if self.settings.uds is not None:
            return "ws://localhost"
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}"

    @property
    def closing(self) -> bool:
        """True once graceful shutdown has begun."""
        return self._closing

    def refusal(self) -> ServiceUnavailableError | None:
        """The dispatcher's gate: 5003 once shutdown has begun."""
        return ServiceUnavailableError() if self._closing else None

    async def start(self) -> None:
        """Listen; afterwards :attr:`port` holds the bound port (TCP).

        Raises:
            OSError: the address is in use or cannot be bound.
        """
        loop = asyncio.get_running_loop()
        s = self.settings
        # Each listener is bound without serving and recorded at once: whatever fails or
        # is cancelled afterwards, shutdown() closes it (asyncio's own start of serving
        # awaits, and a cancellation there would lose a bound socket).
        if s.uds is not None:
            s.uds.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                s.uds.unlink()
            listener = await loop.create_unix_server(
                lambda: Connection(self), path=str(s.uds), start_serving=False
            )
            self._listeners.append(listener)
            s.uds.chmod(0o600)
        else:
            self.port = await self._listen_tcp(lambda: Connection(self))
            self.policy = dataclasses.replace(self.policy, port=self.port)
        for listener in self._listeners:
            await listener.start_serving()
        self.handshake_slots = handshake_slots(s)
        if self.handshake_slots < s.max_handshakes:
            log.warning("handshakes_capped_by_descriptor_limit", max_handshakes=self.handshake_slots)
        log.info("server_listening", url=self.url)

    async def _bind(self, factory: Callable[[], Connection], host: str, port: int) -> asyncio.Server:
        """Bind one TCP listener, not serving yet, and record it (closed by :meth:`shutdown`)."""
        listener = await asyncio.get_running_loop().create_server(factory, host, port, start_serving=False)
        self._listeners.append(listener)
        return listener

    async def _listen_tcp(self, factory: Callable[[], Connection]) -> int:
        """Bind the TCP listeners, recorded and not serving: on loopback, 127.0.0.1 and [::1] (DESIGN §6).

        Returns:
            The bound port.

        Raises:
            OSError: a bind failed; for a given port, also when [::1]:PORT is taken
                (a squatter there would receive what clients send to ``localhost``).
        """
        s = self.settings
        if s.host not in LOOPBACK_HOSTS:
            listener = await self._bind(factory, s.host, s.port)
            return int(listener.sockets[0].getsockname()[1])
        first, second = ("::1", "127.0.0.1") if s.host == "::1" else ("127.0.0.1", "::1")
        attempts = PORT_ATTEMPTS if s.port == 0 else 1
        for attempt in range(1, attempts + 1):
            primary = await self._bind(factory, first, s.port)
            port: int = primary.sockets[0].getsockname()[1]
            try:
                await self._bind(factory, second, port)
            except OSError as exc:
                if second == "::1" and exc.errno in _NO_IPV6:
                    log.warning("ipv6_loopback_unavailable", port=port, error=exc.strerror)
                    return port
                self._listeners.remove(primary)
                primary.close()
                await primary.wait_closed()
                if exc.errno == errno.EADDRINUSE and attempt < attempts:
                    log.info("loopback_twin_port_taken", port=port, address=second)
                    continue
                raise
            return port
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def shutdown(self) -> None:
        """Graceful shutdown (DESIGN §7), bounded by ``settings.shutdown_timeout_s`` seconds.

        In order: stop accepting connections; answer new requests with 5003; cancel the
        long-running requests (each answered -32800 REQUEST_CANCELLED); wait for the
        requests in flight to finish and their responses to be written; close every
        connection with 1001 (aborting those that do not complete the closing handshake
        before the deadline); wait for TCP to close.
        """
        if not self._listeners:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout_s
        self._closing = True
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        cancelled = sum(connection.cancel_long_running() for connection in list(self._alive))
        if cancelled:
            log.info("shutdown_cancelled_long_running", requests=cancelled)
        try:
            async with asyncio.timeout_at(deadline):
                await self._idle.wait()
        except TimeoutError:
            log.warning("shutdown_in_flight_timeout", in_flight=self._in_flight)
        self.release_notifications()
        targets = list(self._alive)
        for connection in targets:
            connection.close(CLOSE_GOING_AWAY, "server shutting down", deadline - loop.time())
        if targets:
            try:
                async with asyncio.timeout_at(deadline + 1):
                    await asyncio.gather(*(connection.wait_closed() for connection in targets))
            except TimeoutError:
                log.warning("shutdown_handlers_timeout")
                for connection in targets:
                    connection.transport.abort()
        if self.settings.uds is not None:
            with contextlib.suppress(FileNotFoundError):
                self.settings.uds.unlink()
        log.info("server_stopped")

    # ---- the connections' hub -------------------------------------------------------

    def open_count(self) -> int:
        """Open connections (counted against ``max_connections``)."""
        return len(self._connections)

    def rate_gate(self) -> Gate | None:
        """A fresh per-connection rate limit (4029 past it), or None when off."""
        rate = self.settings.rate_limit_per_s
        if rate is None:
            return None
        bucket = TokenBucket(rate, max(1.0, rate))

        def admit() -> BridgeError | None:
            return None if bucket.take() else RateLimitedError(context={"limitPerSecond": rate})

        return admit

    def handshake_started(self, connection: Connection) -> None:
        """Track a TCP connection until its opening handshake ends, within the caps.

        Past ``max_handshakes_per_peer`` for its peer address, or past the overall
        handshake slots, the oldest connection still in its handshake (of that peer,
        or overall) is dropped: a client that sends its request at once is answered
        before a flood of idle sockets can push it out, while idle sockets can never
        pin the server at its descriptor limit.
        """
        self._alive.add(connection)
        peer = _peer_host(connection.remote_address)
        same_peer = self._handshaking_by_peer.setdefault(peer, {})
        if len(same_peer) >= self.settings.max_handshakes_per_peer:
            self._evict(next(iter(same_peer)), "handshakes_per_peer")
        if len(self._handshaking) >= self.handshake_slots:
            self._evict(next(iter(self._handshaking)), "handshakes")
        self._handshaking[connection] = None
        same_peer[connection] = None

    def _evict(self, connection: Connection, reason: str) -> None:
        self._forget_handshake(connection)
        self.refusals.refused(reason, 0)
        connection.evict()

    def _forget_handshake(self, connection: Connection) -> None:
        if connection in self._handshaking:
            del self._handshaking[connection]
            peer = _peer_host(connection.remote_address)
            same_peer = self._handshaking_by_peer.get(peer)
            if same_peer is not None:
                same_peer.pop(connection, None)
                if not same_peer:
                    del self._handshaking_by_peer[peer]

    def handshake_ended(self, connection: Connection) -> None:
        """The handshake was refused or failed: it registers nothing."""
        self._forget_handshake(connection)

    def connection_opened(self, connection: Connection) -> None:
        """The 101 was sent: ``connection`` now receives notifications."""
        self._forget_handshake(connection)
        # Notifications made before it opened (still held) are not its business: what
        # they announce is already in every answer it can get.
        connection.notified_from = self._sequence
        self._connections.add(connection)
        log.info("connection_opened", connections=len(self._connections))

    def connection_dropped(self, connection: Connection) -> None:
        """Take ``connection`` out of the fan-out (it overflowed, failed or is closing)."""
        self._connections.discard(connection)

    def connection_closed(self, connection: Connection) -> None:
        """TCP is gone: forget ``connection``."""
        self._forget_handshake(connection)
        self._alive.discard(connection)
        self._connections.discard(connection)
        if connection.opened:
            sansio = connection.sansio
            # ``code`` is the peer's close code (1006: none came); ``sent`` is bridge's own (1009
            # for an oversized frame, 1001 at shutdown), None when bridge sent none.
            closed = sansio.close_exc if sansio.state is State.CLOSED else None
            sent = None if closed is None or closed.sent is None else closed.sent.code
            log.info(
                "connection_closed", code=sansio.close_code, sent=sent, connections=len(self._connections)
            )

    def request_started(self) -> None:
        """A request is running in a task."""
        self._in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        """A request started with :meth:`request_started` ended."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    # ---- fan-out --------------------------------------------------------------------

    def notify(self, topic: TopicSpec, payload: dict[str, Any]) -> None:
        """Send ``payload`` as a ``topic`` notification to every open connection.

        Written to every connection's transport before this returns (with any replies
        queued on it before), so it precedes the response to the request that caused it
        everywhere — unless a batch is running: the frame then joins the held list
        (:meth:`holding`), which is written before any response leaves any connection.
        A connection whose buffer would pass the cap is closed instead (DESIGN §6). A
        connection whose write fails is skipped and logged: the others still get the
        frame.
        """
        frame = notification_frame(topic.name, payload)
        self._sequence += 1
        if self._holds:
            held = self._held
            if not held:
                self._held_base = self._sequence - 1
                self._hold_timer = asyncio.get_running_loop().call_later(HOLD_MAX_S, self._hold_expired)
            held.append(frame)
            if len(held) >= self.dispatcher.max_batch:
                self.release_notifications()
            return
        for connection in list(self._connections):
            try:
                connection.send_now(frame)
            except Exception:
                log.exception("notify_failed")

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold every notification while the ``with`` block (one batch) runs.

        The dispatcher's hold (``Dispatcher.hold``). On exit — normal, by an exception or
        by cancellation — the held list is written when no other batch still runs;
        otherwise by the next response on any connection (this batch's reply, if it has
        one), the other batch's end, the ``max_batch`` bound or ``HOLD_MAX_S``.
        """
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds:
                self.release_notifications()

    def release_notifications(self) -> None:
        """Write the held notifications to every open connection, in order, one write each.

        Connections call it before every response they send, so no response overtakes a
        notification made before it. A connection opened while they were held gets only
        those made after it opened. Cheap when nothing is held.
        """
        frames = self._held
        if not frames:
            return
        base = self._held_base
        self._held = []
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        for connection in list(self._connections):
            skip = connection.notified_from - base
            try:
                if skip <= 0:
                    connection.send_all(frames)
                elif skip < len(frames):
                    connection.send_all(frames[skip:])
            except Exception:
                log.exception("notify_failed")

    def _hold_expired(self) -> None:
        self._hold_timer = None
        self.release_notifications()

    @property
    def held_count(self) -> int:
        """Number of notifications held while batches run (at most ``max_batch``)."""
        return len(self._held)

    @property
    def handshaking_count(self) -> int:
        """Number of TCP connections still in their opening handshake."""
        return len(self._handshaking)

    @property
    def connection_count(self) -> int:
        """Number of open connections that receive notifications."""
        return len(self._connections)


def _peer_host(address: Any) -> str:
    """The host part of a peer address ("" over a Unix socket or when unknown)."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return ""
