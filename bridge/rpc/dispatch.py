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

from collections.abc import Callable
from typing import Any, Final

import orjson
import structlog
from pydantic import RootModel
from pydantic import ValidationError as PydanticValidationError

from bridge.api import Registry
from bridge.errors import (
    BridgeError,
    FieldError,
    InvalidRequestError,
    MethodNotFoundError,
    ParseError,
    ValidationError,
)
from bridge.models import validation_error

log = structlog.get_logger(__name__)

MAX_SAFE_INTEGER: Final = 2**53 - 1
_REQUEST_KEYS: Final = frozenset({"jsonrpc", "method", "params", "id"})
_NO_ID: Final = object()


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


def notification_frame(method: str, params: Any) -> bytes:
    """Return the UTF-8 JSON bytes of a JSON-RPC notification (no ``id``)."""
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})


class Dispatcher:
    """Turns one received frame into the reply frame (or None) using a :class:`Registry`.

    Args:
        registry: the channels to serve.
        max_batch: most entries accepted in one batch; more → one -32600.
        refuse: called before each call; returns an error to answer instead (e.g.
            ``ServiceUnavailableError`` while shutting down), or None to proceed. The
            server sets it to its own gate.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        max_batch: int = 100,
        refuse: Callable[[], BridgeError | None] | None = None,
    ) -> None:
        """Configure the dispatcher."""
        self.registry = registry
        self.max_batch = max_batch
        self.refuse = refuse

    async def handle_frame(self, frame: str | bytes) -> bytes | None:
        """Answer one WebSocket message.

        Args:
            frame: a text frame (``str``) or a binary frame (``bytes``: always -32700).

        Returns:
            The reply's UTF-8 JSON bytes, or None when nothing is to be sent (a
            notification, or a batch of notifications).
        """
        if isinstance(frame, bytes):
            return orjson.dumps(
                error_response(ParseError("Parse error: binary frames are not accepted"), None)
            )
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return orjson.dumps(error_response(ParseError(), None))
        if isinstance(message, list):
            if not message:
                return orjson.dumps(error_response(InvalidRequestError("Invalid request: empty batch"), None))
            if len(message) > self.max_batch:
                return orjson.dumps(
                    error_response(
                        InvalidRequestError(
                            f"Invalid request: batch of more than {self.max_batch} entries",
                            context={"maxBatch": self.max_batch},
                        ),
                        None,
                    )
                )
            replies = [reply for item in message if (reply := await self.handle_message(item)) is not None]
            return orjson.dumps(replies) if replies else None
        reply = await self.handle_message(message)
        return None if reply is None else orjson.dumps(reply)

    async def handle_message(self, message: Any) -> dict[str, Any] | None:
        """Answer one parsed request object; None for a notification."""
        if not isinstance(message, dict):
            return error_response(InvalidRequestError(), None)
        request_id = message.get("id", _NO_ID)
        id_ok = request_id is _NO_ID or _valid_id(request_id)
        reply_id = request_id if id_ok and request_id is not _NO_ID else None
        method = message.get("method")
        params = message.get("params")
        if (
            message.get("jsonrpc") != "2.0"
            or not id_ok
            or not isinstance(method, str)
            or not (params is None or isinstance(params, dict | list))
            or ("params" in message and params is None)
            or not _REQUEST_KEYS.issuperset(message)
        ):
            return error_response(InvalidRequestError(), reply_id)
        is_notification = request_id is _NO_ID
        try:
            result = await self._call(method, params)
        except BridgeError as exc:
            return None if is_notification else error_response(exc, reply_id)
        except Exception:
            log.exception("handler_failed", method=method)
            return None if is_notification else error_response(BridgeError(), reply_id)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": reply_id, "result": result}

    async def _call(self, method: str, params: dict[str, Any] | list[Any] | None) -> Any:
        registration = self.registry.get(method)
        if registration is None:
            raise MethodNotFoundError(context={"method": method[:100]})
        if self.refuse is not None and (refusal := self.refuse()) is not None:
            raise refusal
        spec = registration.spec
        model = spec.params
        by_position = issubclass(model, RootModel)
        if params is None:
            params = [] if by_position else {}
        elif isinstance(params, list) != by_position:
            shape = "an array" if by_position else "an object (by-name params)"
            raise ValidationError([FieldError("params", "INVALID_FORMAT", f"must be {shape}")])
        try:
            parsed = model.model_validate(params, by_alias=True, by_name=False)
        except PydanticValidationError as exc:
            raise validation_error(exc) from None
        return spec.dump_result(await registration.handler(parsed))
