"""A channel's and a topic's contract: :class:`ChannelSpec`, :class:`TopicSpec`, :class:`Example`.

The contracts only (no registry, no handler): :mod:`bridge.api` re-exports them beside the
:class:`~bridge.api.Registry`, and the collection definitions (:mod:`bridge.collection`,
:mod:`bridge.llm_config`) derive their channels' specs from them without importing the
registry's module, which declares llm-config's specs from its definition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Final, Generic, TypeVar

from pydantic import BaseModel, Field, PlainValidator, RootModel, TypeAdapter, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from bridge.errors import BridgeError
from bridge.models import WireModel

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True)
class Example:
    """A documented call, published as an OpenRPC Example Pairing (OpenRPC 1.3 §4.9.x).

    Attributes:
        name: short unique name within the channel, e.g. ``create-openai``.
        params: by-name params as sent on the wire (camelCase keys).
        result: the result as the server sends it (wire form); ignored for topics.
        summary: one line saying what the example shows.
    """

    name: str
    params: dict[str, Any]
    result: Any = None
    summary: str = ""


WORK_DONE_TOKEN: Final = "workDoneToken"  # noqa: S105 - a params key, not a secret
"""The params key of a progress token (LSP ``WorkDoneProgressParams``), accepted by every channel."""
_MAX_SAFE_INTEGER: Final = 2**53 - 1

_TOKEN_MAX_CHARS: Final = 256


def _check_token(value: Any) -> str | int:
    # A string of at most 256 characters, or an integer within ±(2^53 − 1) like ids;
    # bool (an int in Python) and null are refused.
    if isinstance(value, str) and len(value) <= _TOKEN_MAX_CHARS:
        return value
    if type(value) is int and -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
        return value
    raise PydanticCustomError("INVALID_FORMAT", "must be a string (at most 256 characters) or an integer")


ProgressToken = Annotated[
    Any,
    PlainValidator(_check_token),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": _TOKEN_MAX_CHARS},
                {"type": "integer", "minimum": -_MAX_SAFE_INTEGER, "maximum": _MAX_SAFE_INTEGER},
            ],
            "description": "LSP progress token: the $/progress notifications of this request carry it; "
            "ignored by channels without progress.",
        }
    ),
]
"""``workDoneToken``: a string (≤ 256 characters) or an integer (±(2^53 − 1))."""
_with_token: dict[type[BaseModel], type[BaseModel]] = {}


def accepting_work_done_token(model: type[P]) -> type[P]:
    """Return ``model`` extended with an optional ``workDoneToken`` (string or integer).

    Every channel accepts ``workDoneToken`` in its params, as the Language Server
    Protocol's ``WorkDoneProgressParams`` does; channels without progress ignore it. The
    extension is a subclass with the same name and module (one per model, cached), so
    handlers receive an instance of their own model. Positional params (``RootModel``)
    and models that already declare the key are returned as they are.
    """
    if issubclass(model, RootModel) or _declares_token(model):
        return model
    extended = _with_token.get(model)
    if extended is None:
        extended = create_model(
            model.__name__,
            __base__=model,
            __module__=model.__module__,
            __doc__=model.__doc__,
            work_done_token=(ProgressToken, Field(default=None, alias=WORK_DONE_TOKEN)),
        )
        _with_token[model] = extended
    return extended  # type: ignore[return-value]


def _declares_token(model: type[BaseModel]) -> bool:
    return any(
        name == "work_done_token" or info.alias == WORK_DONE_TOKEN
        for name, info in model.model_fields.items()
    )


@dataclass(frozen=True)
class ChannelSpec(Generic[P, R]):
    """A channel's contract: name, by-name params model, result type and errors.

    Attributes:
        name: channel (JSON-RPC method) name, e.g. ``llm-config:read``.
        params: pydantic model of the by-name params (``EmptyParams`` for none or ``{}``).
        result: result type (a model, ``X | None``, ``list[X]``...).
        summary: one line for the OpenRPC document.
        errors: error classes the channel may return besides -32602/-32603/5003.
        params_optional: True when the params may be omitted entirely.
        examples: documented calls for the OpenRPC document (params and result, wire form).
        long_running: True for a long operation (DESIGN §5): a request to it runs
            concurrently with the requests after it on its connection, its response may
            leave out of order, and ``$/cancelRequest`` cancels it (-32800). Its task is
            cancelled (``asyncio.CancelledError`` at its current ``await``); a handler
            whose write already committed answers it as done by catching the
            cancellation and returning its result. Built-in writes are never
            long-running, so a cancel never reaches them.
        progress: True when the channel reports work-done progress: its handler is
            called as ``handler(params, progress)`` with a :class:`Progress` that sends
            ``$/progress`` notifications for the request's ``workDoneToken`` (and does
            nothing without one).
        max_running: for a long-running channel, most requests to it running at once on
            one connection; one more is answered 4029 ``RATE_LIMITED`` with
            ``data.context = {channel, maxRunning}``. None → only the connection's
            in-flight limit applies.
    """

    name: str
    params: type[P]
    result: Any
    summary: str
    errors: tuple[type[BridgeError], ...] = ()
    params_optional: bool = False
    examples: tuple[Example, ...] = ()
    long_running: bool = False
    progress: bool = False
    max_running: int | None = None

    def __post_init__(self) -> None:
        """Replace a by-name params model by one that also accepts ``workDoneToken``.

        See :func:`accepting_work_done_token`.
        """
        if self.max_running is not None and (self.max_running < 1 or not self.long_running):
            raise ValueError("max_running must be at least 1, on a long-running channel")
        object.__setattr__(self, "params", accepting_work_done_token(self.params))

    @functools.cached_property
    def result_adapter(self) -> TypeAdapter[Any]:
        """The result's adapter, built on first use (not at import: cold start) and kept.

        Serialization is on the hot path: it is built once per spec.
        """
        return TypeAdapter(self.result)

    def dump_result(self, value: R) -> Any:
        """Return ``value`` as JSON-ready data with wire (camelCase) names."""
        return self.result_adapter.dump_python(value, mode="json", by_alias=True)


@dataclass(frozen=True)
class TopicSpec:
    """A notification topic (server → renderer), e.g. ``llm-config:changed``.

    Attributes:
        name: the JSON-RPC notification ``method``.
        payload: pydantic model of ``params``.
        summary: one line for the OpenRPC document.
        examples: documented notifications (``params`` is the payload; no result).
    """

    name: str
    payload: type[WireModel]
    summary: str
    examples: tuple[Example, ...] = ()
