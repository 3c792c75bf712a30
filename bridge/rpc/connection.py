"""One WebSocket connection: websockets' sans-I/O ``ServerProtocol`` driven by an ``asyncio.Protocol``.

The I/O loop is the one websockets documents for integrations ("Integrate the Sans-I/O
layer"): bytes in → ``receive_data`` → ``events_received``; frames out → ``send_*`` →
``data_to_send`` → ``transport.write``; ``close_expected`` → a timer that aborts TCP.

Per connection (DESIGN §5–§6):

- **Framing.** Text messages (fragments reassembled) are decoded as UTF-8 (invalid → close
  1007) and handed to the dispatcher; a binary message is answered -32700. websockets
  closes with 1009 a message over ``max_message_bytes`` and answers pings itself.
- **Inline answers, ordered output.** A frame is dispatched inside ``data_received``:
  when the dispatch completes without suspending (every cache read, every error) its
  reply is queued at once, without a task (a cache read through
  ``Dispatcher.answer_inline``, without a coroutine of the dispatcher's; anything else
  through ``bridge.rpc.eager``). Otherwise the rest runs
  in one task (the connection's *lane*) and the frames behind it wait in arrival order
  until it ends. Everything sent goes through the protocol's one output buffer, so
  notifications and replies leave in the order produced — a change notification
  before the response to the request that caused it. While a batch runs the server
  holds notifications (``BridgeServer.holding``): every response first has the server
  write what it holds, to every connection.
- **Coalescing.** Replies produced while handling one ``data_received`` leave in one
  ``transport.write`` at its end (16 pipelined reads: one write), or earlier once
  ``FLUSH_AT_BYTES`` are waiting.
- **Long-running requests** (``ChannelSpec.long_running``) run beside the lane; their
  responses leave when ready. ``$/cancelRequest {id}`` is acted on as soon as its frame
  is read, even with requests queued ahead of it, and cancels that request (-32800) —
  running, or still queued (it is then answered -32800 as it would start).
- **Backpressure.** While the transport's buffer is over its high-water mark
  (``pause_writing``) no further frame is dispatched and reading is paused; a connection
  that stays so for ``ping_timeout_s`` is closed with 1013. Reading is also paused while
  ``MAX_QUEUED_FRAMES`` frames wait for the lane. A frame that would take the bytes
  buffered for the connection past ``outbound_cap_bytes`` is not sent: the connection is
  closed with 1013, or aborted when even the close frame would pass the cap.
- **Unauthenticated bytes.** More than ``max_handshake_bytes`` before the opening
  handshake completes → 431 and close (websockets' parser alone buffers up to 1 MiB).
- **Timeouts.** Opening handshake: ``handshake_timeout_s``, then abort. Keepalive: a ping
  every ``ping_interval_s``, no pong within ``ping_timeout_s`` → close 1011. Closing
  handshake: ``close_timeout_s`` (or the caller's bound) for the peer to close TCP, then
  abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import random
import struct
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import orjson
import structlog
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import SEND_EOF, State
from websockets.server import ServerProtocol

from bridge.api import CANCEL_REQUEST
from bridge.rpc.dispatch import cancelled_frame
from bridge.rpc.eager import start_eagerly
from bridge.rpc.handshake import (
    Refusal,
    check_capacity,
    check_request,
    refused_value,
    select_subprotocol,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from websockets.typing import Subprotocol

    from bridge.rpc.dispatch import Dispatcher, Gate
    from bridge.rpc.handshake import HandshakePolicy
    from bridge.rpc.settings import ServerSettings

log = structlog.get_logger("bridge.rpc.server")

CLOSE_GOING_AWAY: Final = 1001
CLOSE_TRY_AGAIN_LATER: Final = 1013
CLOSE_FRAME_ROOM: Final = 64
"""Bytes kept free under the cap for a close frame (header + code + short reason)."""
FLUSH_AT_BYTES: Final = 64 * 1024
"""Replies waiting for the end of ``data_received`` are written at once past this many bytes."""
MAX_QUEUED_FRAMES: Final = 64
"""In-flight limit: reading from the socket pauses while this many frames wait for the lane,
or this many long-running requests run, on one connection."""
FRAME_HEADER_BYTES: Final = 10
"""Header bytes of an unmasked server frame of up to 2^64 bytes (RFC 6455 §5.2)."""
REFUSAL_LOG_WINDOW_S: Final = 10.0
"""Refused handshakes are logged at most ``REFUSAL_LOG_BURST`` times per reason in this many seconds."""
REFUSAL_LOG_BURST: Final = 5


class RefusalLog:
    """Rate-limited ``handshake_refused`` lines: per reason, a few per window, then a count.

    A flood of refused handshakes (a web page retrying, a local process probing) must
    not flood the log: past ``REFUSAL_LOG_BURST`` lines of one reason within
    ``REFUSAL_LOG_WINDOW_S`` seconds, lines are suppressed and the next line logged for
    that reason carries ``suppressed`` (how many were left out).
    """

    def __init__(self) -> None:
        """Start with no history."""
        self._windows: dict[str, tuple[float, int, int]] = {}

    def refused(self, reason: str, status: int, **fields: Any) -> None:
        """Log one refusal of ``reason`` (HTTP ``status``) unless its window is full.

        Args:
            reason: the refusal reason (``host``, ``origin``, ``token``, ``capacity``...).
            status: the HTTP status sent (0 when the connection was dropped unanswered).
            fields: extra log fields (the offending Host/Origin value; never a token).
        """
        now = time.monotonic()
        start, logged, suppressed = self._windows.get(reason, (now, 0, 0))
        if now - start >= REFUSAL_LOG_WINDOW_S:
            start, logged = now, 0
        if logged >= REFUSAL_LOG_BURST:
            self._windows[reason] = (start, logged, suppressed + 1)
            return
        if suppressed:
            fields["suppressed"] = suppressed
        self._windows[reason] = (start, logged + 1, 0)
        log.info("handshake_refused", status=status, reason=reason, **fields)


class Hub(Protocol):
    """What a connection needs from its server (implemented by ``BridgeServer``)."""

    settings: ServerSettings
    dispatcher: Dispatcher
    policy: HandshakePolicy
    refusals: RefusalLog

    @property
    def closing(self) -> bool:
        """True once graceful shutdown has begun (new handshakes → 503)."""

    def open_count(self) -> int:
        """Connections counted against ``max_connections``."""

    def rate_gate(self) -> Gate | None:
        """A fresh per-connection rate limit check, or None when off."""

    def handshake_started(self, connection: Connection) -> None:
        """A TCP connection arrived; its opening handshake has not finished."""

    def handshake_ended(self, connection: Connection) -> None:
        """The opening handshake was refused or failed."""

    def connection_opened(self, connection: Connection) -> None:
        """The 101 was sent: the connection receives notifications."""

    def connection_dropped(self, connection: Connection) -> None:
        """Take ``connection`` out of the fan-out (overflowed or closing)."""

    def connection_closed(self, connection: Connection) -> None:
        """TCP is gone."""

    def release_notifications(self) -> None:
        """Write the notifications held while batches run (called before every response)."""

    def request_started(self) -> None:
        """A request began running in a task (graceful shutdown waits for it)."""

    def request_finished(self) -> None:
        """A request started with :meth:`request_started` ended."""


def _select(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    del protocol
    return select_subprotocol(offered)  # type: ignore[return-value]


class Connection(asyncio.Protocol):
    """One client: the WebSocket state machine, its output buffer, lane and timers.

    Attributes:
        sansio: websockets' sans-I/O server protocol (its ``state``, ``close_code``);
            also readable as :attr:`protocol`.
        transport: the asyncio transport, once connected (kept after it closes).
        remote_address: the peer's address (``peername``; "" over a Unix socket).
        opened: True once the 101 was sent.
        notified_from: sequence number of the first notification this connection is
            sent (set by the hub when it opens).
    """

    def __init__(self, hub: Hub) -> None:
        """Prepare the state machine; the transport arrives in :meth:`connection_made`."""
        self.hub = hub
        settings = hub.settings
        self.settings = settings
        self.sansio = ServerProtocol(select_subprotocol=_select, max_size=settings.max_message_bytes)
        # Set in connection_made, before any other callback can run.
        self.transport: asyncio.Transport = cast("asyncio.Transport", None)
        self.remote_address: Any = None
        self.opened = False
        self.notified_from = 0
        self._handshake_bytes = 0
        self._loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._admit: Gate | None = None
        self._fragments: list[bytes] = []
        self._fragment_is_text = False
        # Frames read while the lane is busy or writing is paused, in arrival order.
        self._queue: deque[str | bytes] = deque()
        self._lane: asyncio.Task[bytes | None] | None = None
        self._long: dict[Any, asyncio.Task[bytes]] = {}
        self._long_tasks: set[asyncio.Task[bytes]] = set()
        self._running: dict[str, int] = {}
        # Ids cancelled while frames waited in the queue: a long-running request among
        # them is cancelled as it starts (bounded; emptied whenever the queue is).
        self._early_cancels: set[Any] = set()
        self._unflushed = 0
        self._writing_paused = False
        self._read_pauses: set[str] = set()
        self._ping_payload: bytes | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the opening-handshake clock."""
        # A stream transport (uvloop's is not an asyncio.Transport subclass, hence no check).
        self.transport = cast("asyncio.Transport", transport)
        self.remote_address = transport.get_extra_info("peername")
        self.hub.handshake_started(self)
        self._handshake_timer = self._loop.call_later(
            self.settings.handshake_timeout_s, self._handshake_timed_out
        )

    def data_received(self, data: bytes) -> None:
        """Feed ``data`` to the protocol, act on every event, then write once."""
        protocol = self.sansio
        if protocol.state is State.CONNECTING:
            # Bound what an unauthenticated client can make the parser buffer
            # (websockets alone allows 128 header lines of 8 KiB: 1 MiB).
            self._handshake_bytes += len(data)
            if self._handshake_bytes > self.settings.max_handshake_bytes:
                self._refuse_oversized_handshake()
                return
        try:
            protocol.receive_data(data)
        except EOFError:  # data after EOF: nothing more to parse
            return
        for event in protocol.events_received():
            if type(event) is Frame:
                self._on_frame(event)
            elif isinstance(event, Request):
                self._on_request(event)
        if protocol.state is not State.OPEN:  # failed or closing (1007, 1009, a close frame)
            self.hub.connection_dropped(self)
        self._flush()

    def eof_received(self) -> bool | None:
        """The peer half-closed: let the protocol finish; the transport then closes."""
        self.sansio.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """TCP is gone: stop timers, cancel long requests, drop queued frames."""
        del exc
        self.sansio.receive_eof()
        self.sansio.data_to_send()  # nowhere to send it
        for timer in (
            self._handshake_timer,
            self._ping_timer,
            self._pong_timer,
            self._stall_timer,
            self._close_timer,
        ):
            if timer is not None:
                timer.cancel()
        self._queue.clear()
        for task in self._long_tasks:
            task.cancel()
        # A request in the lane runs to its end (a write that started commits or not on
        # its own terms); its reply is discarded.
        self.hub.connection_closed(self)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: stop dispatching and reading."""
        self._writing_paused = True
        self._pause_reading("writing")
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_later(self.settings.ping_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        """The buffer drained under its low-water mark: dispatch what waits, read again."""
        self._writing_paused = False
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._resume_reading("writing")
        self._run_queue()
        self._flush()

    # ---- public -----------------------------------------------------------------------

    @property
    def protocol(self) -> ServerProtocol:
        """The sans-I/O server protocol of this connection, from websockets (read its ``state``)."""
        return self.sansio

    async def wait_closed(self) -> None:
        """Wait until TCP is closed."""
        await asyncio.shield(self._closed)

    def cancel_long_running(self) -> int:
        """Cancel every long-running request of this connection (each is answered -32800).

        Graceful shutdown calls it first, so long operations end within its bound instead
        of holding it. Requests in the lane (every other channel) are never cancelled: a write that
        started commits or not on its own terms and is answered as such.

        Returns:
            How many requests were cancelled.
        """
        tasks = [task for task in self._long_tasks if not task.done()]
        for task in tasks:
            task.cancel()
        return len(tasks)

    def send_now(self, frame: bytes) -> None:
        """Write ``frame`` (with anything queued before it) now, within the outbound cap."""
        if self._send(frame):
            self._flush()

    def send_all(self, frames: Sequence[bytes]) -> None:
        """Write ``frames`` in order (after anything queued) in one write, within the outbound cap.

        One ``transport.write`` unless they pass ``FLUSH_AT_BYTES``; a frame that would
        pass the cap closes the connection and the rest are not sent.
        """
        for frame in frames:
            if not self._send(frame):
                return
        self._flush()

    def close(self, code: int, reason: str, timeout_s: float) -> None:
        """Start the closing handshake with ``code``; abort TCP after ``timeout_s`` seconds.

        A connection still in its opening handshake is aborted at once.
        """
        state = self.sansio.state
        if state is State.OPEN:
            self.hub.connection_dropped(self)
            self.sansio.send_close(code, reason)
            self._flush()
            self._arm_close_timer(timeout_s)
        elif state is State.CONNECTING:
            self.transport.abort()
        else:
            self._arm_close_timer(timeout_s)

    # ---- handshake --------------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        """Answer the opening handshake: the checks of DESIGN §6, then websockets' own."""
        hub = self.hub
        protocol = self.sansio
        refusal: Refusal | None = check_request(request, hub.policy) or check_capacity(
            hub.open_count(), self.settings.max_connections, closing=hub.closing
        )
        if refusal is not None:
            # One INFO line (rate-limited): the reason, the actual cause (detail) and, for
            # Host/Origin refusals, the offending value (query redacted); never the path or
            # the token.
            self.hub.refusals.refused(
                refusal.reason, refusal.status.value, detail=refusal.detail, **refused_value(request, refusal)
            )
            protocol.send_response(protocol.reject(refusal.status, refusal.text))
            hub.handshake_ended(self)
            return
        response = protocol.accept(request)
        protocol.send_response(response)
        if protocol.state is not State.OPEN:  # websockets refused it (bad upgrade headers)
            hub.handshake_ended(self)
            return
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self._admit = hub.rate_gate()
        self.opened = True
        hub.connection_opened(self)
        self._ping_timer = self._loop.call_later(self.settings.ping_interval_s, self._ping)

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if self.sansio.state is State.CONNECTING:
            log.info("handshake_timed_out")
            self.hub.handshake_ended(self)
            self.transport.abort()

    def _refuse_oversized_handshake(self) -> None:
        """More than ``max_handshake_bytes`` before the handshake completed: 431, then close."""
        self.hub.refusals.refused("handshake_size", http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE.value)
        self.hub.handshake_ended(self)
        transport = self.transport
        if not transport.is_closing():
            transport.pause_reading()
            transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
            transport.close()
        # Nothing more is parsed; what the parser holds (at most the bound) goes with
        # this object once TCP is gone.

    def evict(self) -> None:
        """Drop this connection, still in its opening handshake, to make room (no answer)."""
        if self.sansio.state is State.CONNECTING and not self.transport.is_closing():
            self.transport.abort()

    # ---- incoming frames --------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(frame.data, text=opcode is Opcode.TEXT)
            else:
                self._fragments = [bytes(frame.data)]
                self._fragment_is_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), []
                self._on_message(data, text=self._fragment_is_text)
        elif opcode is Opcode.PONG and self._ping_payload is not None and frame.data == self._ping_payload:
            self._pong_received()
        # PING: websockets queued the pong. CLOSE: websockets echoed it and half-closes.

    def _on_message(self, data: Any, *, text: bool) -> None:
        if self.sansio.state is not State.OPEN or self.transport.is_closing():
            # Closing (RFC 6455 §1.4: data after a close is discarded), or aborted earlier
            # in this read (outbound cap): nothing more runs, no write commits.
            return
        frame: str | bytes
        if text:
            try:
                frame = str(data, "utf-8")
            except UnicodeDecodeError as exc:
                # RFC 6455 §8.1: a text message that is not UTF-8 fails the connection.
                self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
            if CANCEL_REQUEST in frame and self._cancel(frame):
                return
        else:
            frame = bytes(data)
        if self._lane is not None or self._queue or self._writing_paused:
            self._queue.append(frame)
            if len(self._queue) >= MAX_QUEUED_FRAMES:
                self._pause_reading("queue")
            return
        self._dispatch(frame)

    def _cancel(self, frame: str) -> bool:
        """Act on a ``$/cancelRequest`` notification now; False if ``frame`` is not one."""
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return False
        if not (
            type(message) is dict
            and message.get("method") == CANCEL_REQUEST
            and message.get("jsonrpc") == "2.0"
            and "id" not in message
        ):
            return False
        params = message.get("params")
        target = params.get("id") if type(params) is dict else None
        if type(target) in {str, int}:
            task = self._long.get(target)
            if task is not None:
                task.cancel()
            elif self._queue and len(self._early_cancels) < MAX_QUEUED_FRAMES:
                self._early_cancels.add(target)  # its request may still wait in the queue
        return True  # a notification: never answered, even when it matches nothing

    # ---- dispatch ---------------------------------------------------------------------

    def _dispatch(self, frame: str | bytes) -> None:
        """Answer ``frame`` inline, or start the lane task that will."""
        dispatcher = self.hub.dispatcher
        # Every cache read takes the dispatcher's synchronous path: no coroutine of its own.
        answered, outcome = dispatcher.answer_inline(frame, self._admit)
        if answered:
            if type(outcome) is bytes:
                self.hub.release_notifications()
                self._send(outcome)
                return
            task: asyncio.Task[bytes | None] = self._loop.create_task(outcome)
        else:
            coro = dispatcher.handle_frame(
                frame,
                admit=self._admit,
                spawn=self._spawn,
                running=self._running_count,
                emit=self.send_now,
                parsed=outcome,
            )
            done, started = start_eagerly(coro)
            if done:
                if started is not None:
                    self.hub.release_notifications()
                    self._send(started)  # type: ignore[arg-type]
                return
            assert isinstance(started, asyncio.Task)  # start_eagerly's contract
            task = started
        self._lane = task
        self.hub.request_started()
        task.add_done_callback(self._lane_done)

    def _lane_done(self, task: asyncio.Task[bytes | None]) -> None:
        self._lane = None
        self.hub.request_finished()
        reply: bytes | None = None
        if not task.cancelled():
            if (exc := task.exception()) is not None:  # handle_frame never raises: a bug
                log.error("dispatch_failed", exc_info=exc)
            else:
                reply = task.result()
        if reply is not None:
            self.hub.release_notifications()
            self._send(reply)
        self._run_queue()
        self._flush()

    def _run_queue(self) -> None:
        """Dispatch the waiting frames in order until one needs the lane or writing pauses."""
        queue = self._queue
        while queue and self._lane is None and not self._writing_paused:
            if self.sansio.state is not State.OPEN:
                queue.clear()
                break
            self._dispatch(queue.popleft())
        if not queue:
            self._early_cancels.clear()
        if "queue" in self._read_pauses and len(queue) < MAX_QUEUED_FRAMES // 2:
            self._resume_reading("queue")

    def _running_count(self, channel: str) -> int:
        return self._running.get(channel, 0)

    def _spawn(self, request_id: Any, channel: str, reply: Coroutine[Any, Any, bytes]) -> None:
        """Run a long-running request beside the lane; its response leaves when ready."""
        task = self._loop.create_task(reply)
        # A reused id cancels only its latest request; every one counts against the limit.
        self._long[request_id] = task
        self._long_tasks.add(task)
        self._running[channel] = self._running.get(channel, 0) + 1
        self.hub.request_started()
        if len(self._long_tasks) >= MAX_QUEUED_FRAMES:
            self._pause_reading("long")

        def finished(task: asyncio.Task[bytes]) -> None:
            if self._long.get(request_id) is task:
                del self._long[request_id]
            self._long_tasks.discard(task)
            left = self._running[channel] - 1
            if left:
                self._running[channel] = left
            else:
                del self._running[channel]
            self.hub.request_finished()
            if len(self._long_tasks) < MAX_QUEUED_FRAMES // 2:
                self._resume_reading("long")
            if task.cancelled():
                # Cancelled before its coroutine ran (the cancel came in the same read),
                # so it could not answer itself: it is still answered -32800.
                self.hub.release_notifications()
                self.send_now(cancelled_frame(request_id))
            elif task.exception() is None:
                self.hub.release_notifications()
                self.send_now(task.result())

        task.add_done_callback(finished)
        if request_id in self._early_cancels:  # cancelled while it waited in the queue
            self._early_cancels.discard(request_id)
            task.cancel()

    # ---- output -----------------------------------------------------------------------

    def _send(self, frame: bytes) -> bool:
        """Queue ``frame`` in the protocol's output unless that would pass the outbound cap.

        A frame larger than the cap is still written onto an empty buffer (a response
        that big could never be delivered otherwise); any other frame that would pass
        the cap is dropped and the connection closed (DESIGN §6).
        """
        transport = self.transport
        if self.sansio.state is not State.OPEN or transport.is_closing():
            return False
        cap = self.settings.outbound_cap_bytes
        size = len(frame) + FRAME_HEADER_BYTES
        if self._unflushed and transport.get_write_buffer_size() + self._unflushed + size > cap:
            # Hand what is queued to the transport first, so the cap is judged as if every
            # frame had been written at once (an oversized frame onto an empty buffer).
            self._flush()
        buffered = transport.get_write_buffer_size() + self._unflushed
        if buffered and buffered + size > cap:
            self._overflow(buffered, reason="outbound_cap")
            return False
        self.sansio.send_text(frame)
        self._unflushed += size
        if self._unflushed >= FLUSH_AT_BYTES:
            self._flush()
        return True

    def _flush(self) -> None:
        """Write everything the protocol has queued, in one ``transport.write``."""
        chunks = self.sansio.data_to_send()
        self._unflushed = 0
        transport = self.transport
        if chunks and not transport.is_closing():
            if SEND_EOF not in chunks:
                transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            else:
                for chunk in chunks:  # a closing handshake ended: rare, no joining
                    if chunk:
                        transport.write(chunk)
                    elif transport.can_write_eof():
                        with contextlib.suppress(Exception):  # uvloop may raise RuntimeError here
                            transport.write_eof()
                    else:
                        transport.close()
        if self._close_timer is None and self.sansio.close_expected():
            self._arm_close_timer(self.settings.close_timeout_s)

    def _arm_close_timer(self, timeout_s: float) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = self._loop.call_later(max(timeout_s, 0.0), self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if not self.transport.is_closing() or self.sansio.state is not State.CLOSED:
            log.info("connection_aborted", code=self.sansio.close_code)
            self.transport.abort()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket connection (RFC 6455 §7.1.7): close frame, then TCP."""
        self.hub.connection_dropped(self)
        self._queue.clear()
        self.sansio.fail(code, reason)
        self._flush()

    def _overflow(self, buffered: int, *, reason: str) -> None:
        """Take this connection out of the fan-out and close it with 1013, or abort it."""
        self.hub.connection_dropped(self)
        self._queue.clear()
        log.warning(
            "connection_overflowed",
            reason=reason,
            buffered_bytes=buffered,
            cap_bytes=self.settings.outbound_cap_bytes,
        )
        if buffered + CLOSE_FRAME_ROOM > self.settings.outbound_cap_bytes:
            # Even the close frame would pass the cap: drop the connection at once.
            self.transport.abort()
            return
        self.close(CLOSE_TRY_AGAIN_LATER, "outbound buffer full", self.settings.ping_timeout_s)

    def _stalled(self) -> None:
        """Writing stayed paused for ``ping_timeout_s``: the peer stopped reading."""
        self._stall_timer = None
        if self._writing_paused and self.sansio.state is State.OPEN:
            self._overflow(self.transport.get_write_buffer_size() + self._unflushed, reason="stalled")

    def _pause_reading(self, why: str) -> None:
        if not self._read_pauses and not self.transport.is_closing():
            self.transport.pause_reading()
        self._read_pauses.add(why)
        if self._pong_timer is not None:
            # The pong may sit unread behind our own pause: the deadline restarts when
            # reading resumes, so a healthy client is not closed 1011 for our backlog.
            self._pong_timer.cancel()
            self._pong_timer = None

    def _resume_reading(self, why: str) -> None:
        if why not in self._read_pauses:
            return
        self._read_pauses.discard(why)
        if not self._read_pauses and not self.transport.is_closing():
            self.transport.resume_reading()
            if self._ping_payload is not None:  # a ping still waits for its pong
                self._arm_pong_timer()

    # ---- keepalive --------------------------------------------------------------------

    def _ping(self) -> None:
        self._ping_timer = None
        if self.sansio.state is not State.OPEN:
            return
        self._ping_payload = struct.pack("!I", random.getrandbits(32))
        self.sansio.send_ping(self._ping_payload)
        self._flush()
        self._arm_pong_timer()

    def _arm_pong_timer(self) -> None:
        """Start the pong deadline, unless we paused reading (then it starts on resume)."""
        if self._pong_timer is None and not self._read_pauses and self.sansio.state is State.OPEN:
            self._pong_timer = self._loop.call_later(self.settings.ping_timeout_s, self._pong_timed_out)

    def _pong_received(self) -> None:
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
        self._ping_timer = self._loop.call_later(self.settings.ping_interval_s, self._ping)

    def _pong_timed_out(self) -> None:
        self._pong_timer = None
        if self.sansio.state is State.OPEN:
            log.info("keepalive_timed_out")
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
