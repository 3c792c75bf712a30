"""JSON-RPC 2.0 envelope parsing, dispatch and error translation (the one place for it).

One frame holds one request, one notification or a batch (JSON-RPC 2.0 §4–§6). Parsing
uses orjson (RFC 8259: NaN, Infinity and lone surrogates are parse errors; nesting
deeper than orjson's limit is a parse error). Params are by-name objects validated by
the channel's pydantic model; only channels whose params model is a ``RootModel`` of a
list (``rpc.on``/``rpc.off``) take an array.

Every exception a handler raises is turned into an error response here, and nowhere
else: a :class:`~bridge.errors.BridgeError` keeps its code; anything else becomes
-32603 with a generic message, the traceback going to the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import orjson
import structlog
from pydantic import BaseModel, RootModel
from pydantic import ValidationError as PydanticValidationError

from bridge.api import PROGRESS, ChannelSpec, Progress, Registration, Registry
from bridge.errors import (
    BridgeError,
    FieldError,
    InvalidRequestError,
    MethodNotFoundError,
    ParseError,
    RateLimitedError,
    RequestCancelledError,
    ResponseTooLargeError,
    ValidationError,
)
from bridge.models import validation_error
from bridge.rpc.eager import carry_on

log = structlog.get_logger(__name__)

MAX_SAFE_INTEGER: Final = 2**53 - 1
_REQUEST_KEYS: Final = frozenset({"jsonrpc", "method", "params", "id"})
_MEMO_MODULE: Final = "bridge.models"
_MEMO_MAX: Final = 2048
"""Most entries in the params memo; a full memo is emptied at once (bounded, no LRU cost)."""
_SCALARS: Final = frozenset({str, int, bool, type(None)})
UNPARSED: Final = object()
"""``Dispatcher.answer_inline``'s outcome for a frame it did not parse (a binary frame, or
not JSON): :meth:`Dispatcher.handle_frame` then parses it itself."""


def _valid_id(value: Any) -> bool:
    """JSON-RPC ids here: strings, integers within ±(2^53 − 1), or null (DESIGN §5)."""
    if value is None or isinstance(value, str):
        return True
    return type(value) is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def error_object(exc: BridgeError) -> dict[str, Any]:
    """Return the JSON-RPC ``error`` member for ``exc``: ``{code, message, data}``."""
    return {"code": exc.rpc_code, "message": exc.message, "data": exc.to_data()}


def error_response(exc: BridgeError, request_id: Any) -> dict[str, Any]:
    """Return a full error response object for ``exc`` answering ``request_id``."""
    return {"jsonrpc": "2.0", "id": request_id, "error": error_object(exc)}


def cancelled_frame(request_id: Any) -> bytes:
    """Return the UTF-8 JSON bytes of the -32800 ``REQUEST_CANCELLED`` response to ``request_id``.

    The answer to a long-running request cancelled by ``$/cancelRequest`` (LSP), also
    when it was cancelled before its coroutine ever ran.
    """
    return _dump_reply(error_response(RequestCancelledError(), request_id))


def notification_frame(method: str, params: Any) -> bytes:
    """Return the UTF-8 JSON bytes of a JSON-RPC notification (no ``id``)."""
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})


Gate = Callable[[], BridgeError | None]
"""A check run before a call: returns the error to answer instead, or None to proceed."""

Spawn = Callable[[Any, str, Coroutine[Any, Any, bytes]], None]
"""Takes a long-running request out of order: ``spawn(request_id, channel, reply)`` must
run the ``reply`` coroutine concurrently with later requests (it returns the response
frame, or the -32800 error frame when cancelled) and send what it returns."""

Running = Callable[[str], int]
"""``running(channel)``: how many requests to ``channel`` run out of order on this connection."""

Emit = Callable[[bytes], None]
"""Sends one frame on the requesting connection now (``$/progress`` notifications)."""

Hold = Callable[[], contextlib.AbstractContextManager[object]]
"""``with hold():`` around a batch's run: the server holds notifications meanwhile and
sends them together (``BridgeServer.holding``); the exit runs however the batch ends."""


def _is_notification(message: dict[str, Any]) -> bool:
    """True for a JSON-RPC 2.0 notification: a ``"2.0"`` object with a string method, no id.

    Such a message is never answered, even when its params or channel are wrong
    (JSON-RPC 2.0 §4.1); an object lacking ``jsonrpc``/``method`` is not a
    notification but an invalid request, answered with -32600 and id null (§7).
    """
    return "id" not in message and message.get("jsonrpc") == "2.0" and isinstance(message.get("method"), str)


class Dispatcher:
    """Turns one received frame into the reply frame (or None) using a :class:`Registry`.

    Args:
        registry: the channels to serve.
        max_batch: most entries accepted in one batch; more → one -32600.
        refuse: called before each call of a known channel; returns an error to answer
            instead (e.g. ``ServiceUnavailableError`` while shutting down), or None to
            proceed. The server sets it to its own gate.
        max_reply_bytes: byte budget of one reply frame (DESIGN §6): a single answer
            past it is replaced by 4013 ``RESPONSE_TOO_LARGE``; in a batch, the element
            whose answer passes it gets 4013 and the elements after it are answered
            4013 without being run (so their answers are never built).
        hold: entered around each batch's run (see :data:`Hold`); the server sets it
            to its own. None: nothing is held.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        max_batch: int = 100,
        refuse: Gate | None = None,
        max_reply_bytes: int = 4 * 1024 * 1024,
        hold: Hold | None = None,
    ) -> None:
        """Configure the dispatcher."""
        self.registry = registry
        self.max_batch = max_batch
        self.max_reply_bytes = max_reply_bytes
        self.refuse = refuse
        self.hold = hold
        # Hot-path memo for the built-in params models only (module bridge.models: frozen,
        # with pure validators): validated params by their scalar values. A miss takes the
        # general path, so results and errors are exactly those of the general path.
        self._params_memo: dict[tuple[Any, ...], BaseModel] = {}
        self._positional: dict[type[BaseModel], bool] = {}
        # Channels answer_inline takes (inline, by name, in order, no progress), added as
        # the general path first validates params for them.
        self._inline: dict[str, Registration] = {}
        self._memoized: dict[type[BaseModel], bool] = {}

    async def handle_frame(
        self,
        frame: str | bytes,
        *,
        admit: Gate | None = None,
        spawn: Spawn | None = None,
        running: Running | None = None,
        emit: Emit | None = None,
        parsed: Any = UNPARSED,
    ) -> bytes | None:
        """Answer one WebSocket message (JSON-RPC 2.0 §4–§6).

        The coroutine completes without suspending when every handler it calls does
        (cache reads, errors): the transport runs it inline first (``bridge.rpc.eager``).
        A handler not registered ``inline`` only starts after a suspension, so that it
        always runs inside a task.

        Args:
            frame: a text frame (``str``) or a binary frame (``bytes``: always -32700).
            admit: a per-connection check run for every request and notification before
                anything else (the optional rate limit: ``RateLimitedError``, 4029).
            spawn: when given, a single request (not a batch element) to a channel
                marked ``long_running`` is handed to it after its checks and validation
                and this returns None; without it, such a request runs in order.
            running: with ``spawn``, counts the requests to a channel already running out
                of order on the connection, for the channel's ``max_running`` (past it:
                4029).
            emit: sends a frame on the requesting connection at once: the ``$/progress``
                notifications of a channel declared with ``progress`` (none without it).
            parsed: ``frame`` already parsed (what :meth:`answer_inline` handed back),
                so it is not parsed twice; by default the frame is parsed here.

        Returns:
            The reply's UTF-8 JSON bytes, or None when nothing is to be sent (a
            notification, a batch of notifications, or a spawned request). Never raises
            for any input.
        """
        if isinstance(frame, bytes):
            return _dump_error(ParseError("Parse error: binary frames are not accepted"))
        if parsed is not UNPARSED:
            message = parsed
        else:
            try:
                message = orjson.loads(frame)
            except orjson.JSONDecodeError:
                # RFC 8259 violations, NaN/Infinity, lone surrogates, depth > 1024, and
                # numbers that overflow a double all land here.
                return _dump_error(ParseError())
        if not isinstance(message, list):
            reply = await self.handle_message(message, admit, spawn, running=running, emit=emit)
            return None if reply is None else self._dump_within(reply)
        if not message:
            return _dump_error(InvalidRequestError("Invalid request: empty batch"))
        if len(message) > self.max_batch:
            return _dump_error(
                InvalidRequestError(
                    f"Invalid request: batch of more than {self.max_batch} entries",
                    context={"maxBatch": self.max_batch},
                )
            )
        return await self._handle_batch(message, admit, emit)

    def answer_inline(self, frame: str | bytes, admit: Gate | None = None) -> tuple[bool, Any]:
        """Answer the common frame, a cache read, without a coroutine of the dispatcher's own.

        The common frame: one request (an object with a valid id) with by-name params to
        a channel registered ``inline`` that is neither long-running nor reports
        progress. Its reply is exactly :meth:`handle_frame`'s (same gates in the same
        order, same validation, errors and log lines); only less Python runs per frame,
        which is what a sequential read pays on cold caches after every wake-up
        (``docs/performance.md``, "the uvloop lead"). Any other frame is handed back
        before anything with an effect ran: ``admit`` is called once per frame, by one
        of the two.

        Args:
            frame: a text frame (``str``); ``bytes`` is never answered here.
            admit: see :meth:`handle_frame`.

        Returns:
            ``(True, reply)``: the reply's UTF-8 JSON bytes; ``(True, awaitable)``: the
            handler suspended, awaiting it (in a task) returns the reply bytes;
            ``(False, parsed)``: not such a frame, call ``handle_frame(frame,
            parsed=parsed, ...)`` (``parsed`` is :data:`UNPARSED` when the frame was not
            parsed). Never raises for any input.
        """
        if type(frame) is not str:
            return False, UNPARSED
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return False, UNPARSED
        registration = self._inline_target(message)
        if registration is None:
            return False, message
        return True, self._run_inline(registration, message, admit)

    def _run_inline(
        self, registration: Registration, message: dict[str, Any], admit: Gate | None
    ) -> bytes | Coroutine[Any, Any, bytes]:
        """:meth:`answer_inline`'s call: the reply, or what finishes it once the handler suspended."""
        request_id = message["id"]
        spec = registration.spec
        try:
            # The gates, in handle_message's order (the channel is known to exist).
            refusal = None if admit is None else admit()
            if refusal is None and self.refuse is not None:
                refusal = self.refuse()
            if refusal is not None:
                return self._dump_within(error_response(refusal, request_id))
            awaitable = registration.handler(self._validate(spec.params, message["params"]))
            if type(awaitable) is not types.CoroutineType:
                return self._finish(awaitable, spec, request_id)
            try:
                yielded = awaitable.send(None)
            except StopIteration as stop:
                result = stop.value
            else:
                return self._finish(carry_on(awaitable, yielded), spec, request_id)
            if type(result) is not orjson.Fragment:
                result = spec.dump_result(result)
        except BridgeError as exc:
            return self._dump_within(error_response(exc, request_id))
        except Exception:
            log.exception("handler_failed", method=spec.name[:100])
            return self._dump_within(error_response(BridgeError(), request_id))
        return self._dump_within({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _inline_target(self, message: Any) -> Registration | None:
        """The registration :meth:`answer_inline` answers ``message`` with, or None."""
        if type(message) is not dict or "id" not in message:
            return None
        request_id = message["id"]
        if not (
            message.get("jsonrpc") == "2.0"
            and type(message.get("params")) is dict
            and (
                type(request_id) is str
                or (type(request_id) is int and -MAX_SAFE_INTEGER <= request_id <= MAX_SAFE_INTEGER)
            )
            and _REQUEST_KEYS.issuperset(message)
        ):
            return None
        method = message.get("method")
        # Registry names are strings: any other method value finds nothing.
        return self._inline.get(method) if type(method) is str else None

    async def _finish(self, awaitable: Awaitable[Any], spec: ChannelSpec[Any, Any], request_id: Any) -> bytes:
        """The rest of :meth:`answer_inline` once its handler suspended: the reply frame."""
        try:
            result = await awaitable
            if type(result) is not orjson.Fragment:
                result = spec.dump_result(result)
        except BridgeError as exc:
            reply = error_response(exc, request_id)
        except Exception:
            log.exception("handler_failed", method=spec.name[:100])
            reply = error_response(BridgeError(), request_id)
        else:
            reply = {"jsonrpc": "2.0", "id": request_id, "result": result}
        return self._dump_within(reply)

    async def _handle_batch(self, batch: list[Any], admit: Gate | None, emit: Emit | None) -> bytes | None:
        """Run a batch's elements in array order within the reply budget; the reply frame.

        The notifications the batch causes leave together when it ends (one burst per
        connection), before its reply: it runs inside :attr:`hold`.
        """
        hold = self.hold
        with contextlib.nullcontext() if hold is None else hold():
            return await self._run_batch(batch, admit, emit)

    async def _run_batch(self, batch: list[Any], admit: Gate | None, emit: Emit | None) -> bytes | None:
        # Each element is answered on its own. Answers are serialized as they are
        # produced, so the budget is checked before the next element runs: once an
        # answer passes it, that answer and every later one become 4013, and the later
        # elements are not run at all (a 100 x `list` batch never builds 100 lists).
        budget = self.max_reply_bytes
        used = 2  # the brackets
        over = False
        parts: list[bytes] = []
        for item in batch:
            if over:
                if isinstance(item, dict) and _is_notification(item):
                    await self.handle_message(item, admit, emit=emit)  # answers nothing: costs no bytes
                    continue
                part = _dump_reply(_unrun_reply(item, budget))
            else:
                reply = await self.handle_message(item, admit, emit=emit)
                if reply is None:
                    continue
                part = _dump_reply(reply)
                if used + len(part) + 1 > budget:
                    over = True
                    part = _dump_reply(error_response(ResponseTooLargeError(budget), reply.get("id")))
            parts.append(part)
            used += len(part) + 1
        return b"[" + b",".join(parts) + b"]" if parts else None

    def _dump_within(self, reply: dict[str, Any]) -> bytes:
        """Serialize one answer; 4013 for its id instead when it passes the reply budget."""
        frame = _dump_reply(reply)
        if len(frame) > self.max_reply_bytes:
            return _dump_reply(error_response(ResponseTooLargeError(self.max_reply_bytes), reply.get("id")))
        return frame

    async def handle_message(  # noqa: PLR0911 - one return per JSON-RPC outcome
        self,
        message: Any,
        admit: Gate | None = None,
        spawn: Spawn | None = None,
        *,
        running: Running | None = None,
        emit: Emit | None = None,
    ) -> dict[str, Any] | None:
        """Answer one parsed request object; None for a notification (never answered).

        Args:
            message: one element of the frame (any JSON value).
            admit: see :meth:`handle_frame`.
            spawn: see :meth:`handle_frame` (None is then returned for a spawned request).
            running: see :meth:`handle_frame`.
            emit: see :meth:`handle_frame`.

        Returns:
            The response object (``result`` or ``error``), or None for a notification.
            ``result`` is JSON-ready data, or an ``orjson.Fragment`` (JSON already
            serialized) when the handler returned one; ``orjson.dumps`` takes both.
        """
        if not isinstance(message, dict):
            return error_response(InvalidRequestError(), None)
        if _is_notification(message):
            await self._run_quietly(message, admit)
            return None
        request_id = message.get("id")
        id_ok = _valid_id(request_id)
        reply_id = request_id if id_ok else None
        method = message.get("method")
        if (
            not id_ok
            or "id" not in message
            or message.get("jsonrpc") != "2.0"
            or not isinstance(method, str)
            or not _params_shape_ok(message)
            or not _REQUEST_KEYS.issuperset(message)
        ):
            return error_response(InvalidRequestError(), reply_id)
        try:
            registration, params = self._prepare(method, message.get("params"), admit)
            spec = registration.spec
            if spawn is not None and spec.long_running:
                _check_running(spec, running)
                progress = _progress(registration, params, emit)
                spawn(reply_id, spec.name, self._answer_long(registration, params, reply_id, progress))
                return None
            if not registration.inline and asyncio.current_task() is None:
                await asyncio.sleep(0)  # start the handler inside a task (bridge.rpc.eager)
            progress = _progress(registration, params, emit)
            try:
                result = await _call(registration, params, progress)
            finally:
                if progress is not None:
                    progress.end()
            if type(result) is not orjson.Fragment:
                result = spec.dump_result(result)
        except BridgeError as exc:
            return error_response(exc, reply_id)
        except Exception:
            log.exception("handler_failed", method=method[:100])
            return error_response(BridgeError(), reply_id)
        return {"jsonrpc": "2.0", "id": reply_id, "result": result}

    async def _answer_long(
        self, registration: Registration, params: BaseModel, reply_id: Any, progress: Progress | None
    ) -> bytes:
        """Run a long-running request to its response frame; -32800 when it is cancelled.

        Its progress ends (``kind: "end"``) before the response frame is returned.
        """
        try:
            result = await _call(registration, params, progress)
            if type(result) is not orjson.Fragment:
                result = registration.spec.dump_result(result)
        except asyncio.CancelledError:
            # Cancelled by `$/cancelRequest` or shutdown (LSP): answered, not propagated; a
            # connection that went away discards the answer.
            if progress is not None:
                progress.end("cancelled")
            return cancelled_frame(reply_id)
        except BridgeError as exc:
            reply = error_response(exc, reply_id)
        except Exception:
            log.exception("handler_failed", method=registration.spec.name)
            reply = error_response(BridgeError(), reply_id)
        else:
            reply = {"jsonrpc": "2.0", "id": reply_id, "result": result}
        if progress is not None:
            progress.end()
        return self._dump_within(reply)

    async def _run_quietly(self, message: dict[str, Any], admit: Gate | None) -> None:
        """Run a notification; whatever goes wrong, nothing is sent back (JSON-RPC 2.0 §4.1)."""
        method: str = message["method"]
        if not _params_shape_ok(message) or not _REQUEST_KEYS.issuperset(message):
            return
        try:
            registration, params = self._prepare(method, message.get("params"), admit)
            if not registration.inline and asyncio.current_task() is None:
                await asyncio.sleep(0)  # start the handler inside a task (bridge.rpc.eager)
            # A notification has no id to report progress for: its token is ignored.
            await _call(registration, params, Progress() if registration.spec.progress else None)
        except BridgeError:
            pass  # a client mistake (or 5003): nobody to tell, nothing worth a log line
        except Exception:
            log.exception("handler_failed", method=method[:100])

    def _prepare(self, method: str, params: Any, admit: Gate | None) -> tuple[Registration, BaseModel]:
        """Check the gates, find the channel and validate ``params``.

        Returns:
            The channel's registration and the validated params model.

        Raises:
            BridgeError: refused by a gate (4029, 5003), unknown channel (-32601) or
                invalid params (-32602).
        """
        if admit is not None and (refusal := admit()) is not None:
            raise refusal
        registration = self.registry.get(method)
        if registration is None:
            raise MethodNotFoundError(context={"method": method[:100]})
        if self.refuse is not None and (refusal := self.refuse()) is not None:
            raise refusal
        spec = registration.spec
        model = spec.params
        by_position = self._positional.get(model)
        if by_position is None:
            # issubclass on a pydantic model class goes through ABCMeta: once per model.
            by_position = self._positional[model] = issubclass(model, RootModel)
        if params is None or (params == [] and spec.params_optional):
            # An empty array carries no params: clients such as @open-rpc/client-js send
            # `params: []` for a call without any, so channels that take none accept it.
            params = [] if by_position else {}
        elif isinstance(params, list) != by_position:
            shape = "an array" if by_position else "an object (by-name params)"
            raise ValidationError([FieldError("params", "INVALID_FORMAT", f"must be {shape}")])
        if registration.inline and not (by_position or spec.long_running or spec.progress):
            self._inline[method] = registration
        return registration, self._validate(model, params)

    def _validate(self, model: type[BaseModel], params: Any) -> BaseModel:
        """``model.model_validate(params)``, memoized for flat scalar params of built-in models."""
        key: tuple[Any, ...] | None = None
        memoized = self._memoized.get(model)
        if memoized is None:
            memoized = self._memoized[model] = model.__module__ == _MEMO_MODULE
        if memoized and type(params) is dict and len(params) <= 4:  # noqa: PLR2004 - the built-in flat params have few keys
            # The values' types are part of the key: True == 1 and 1 == 1.0 must not collide.
            kinds = tuple(map(type, params.values()))
            if _SCALARS.issuperset(kinds):
                key = (model, kinds, *params.items())
                hit = self._params_memo.get(key)
                if hit is not None:
                    return hit
        try:
            parsed = model.model_validate(params, by_alias=True, by_name=False)
        except PydanticValidationError as exc:
            raise validation_error(exc) from None
        if key is not None:
            if len(self._params_memo) >= _MEMO_MAX:
                self._params_memo.clear()
            self._params_memo[key] = parsed
        return parsed


def _check_running(spec: ChannelSpec[Any, Any], running: Running | None) -> None:
    """Raise 4029 when ``spec.max_running`` requests to it already run on the connection."""
    limit = spec.max_running
    if limit is not None and running is not None and running(spec.name) >= limit:
        raise RateLimitedError(
            "Too many requests to this channel are running on this connection",
            context={"channel": spec.name, "maxRunning": limit},
        )


def _progress(registration: Registration, params: BaseModel, emit: Emit | None) -> Progress | None:
    """The handler's :class:`Progress` for a channel declared with ``progress``, else None.

    It sends ``$/progress`` through ``emit`` when the params carry a ``workDoneToken``.
    """
    if not registration.spec.progress:
        return None
    token = getattr(params, "work_done_token", None)
    if token is None or emit is None:
        return Progress()

    def send(value: dict[str, Any]) -> None:
        emit(notification_frame(PROGRESS, value))

    return Progress(token, send)


def _call(registration: Registration, params: BaseModel, progress: Progress | None) -> Any:
    """Call the handler: with its :class:`Progress` when the channel reports progress."""
    if progress is None:
        return registration.handler(params)
    return registration.handler(params, progress)


def _params_shape_ok(message: dict[str, Any]) -> bool:
    """``params``, when present, is a structured value (JSON-RPC 2.0 §4.2); null is not."""
    return "params" not in message or isinstance(message["params"], dict | list)


def _unrun_reply(item: Any, budget: int) -> dict[str, Any]:
    """The 4013 answer to a batch request past the reply budget, which is not run (id null when invalid)."""
    request_id = item.get("id") if isinstance(item, dict) else None
    return error_response(ResponseTooLargeError(budget), request_id if _valid_id(request_id) else None)


def _dump_error(exc: BridgeError) -> bytes:
    return orjson.dumps(error_response(exc, None))


def _dump_reply(reply: dict[str, Any]) -> bytes:
    """Serialize one response; a result that is not JSON becomes -32603 for that id only."""
    try:
        return orjson.dumps(reply)
    except TypeError:
        log.exception("result_not_serializable")
        return orjson.dumps(error_response(BridgeError(), reply.get("id")))
