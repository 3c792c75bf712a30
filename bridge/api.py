"""The channel registry: every IPC channel and notification topic, with its types.

This module is the one place that spells channel names. The server dispatches from a
:class:`Registry`, the schema generator emits from it, and the Python client calls
through the :class:`ChannelSpec` constants. Applications register their own channels and
topics through the same API that registers ``llm-config:*``::

    registry = default_registry()
    PING = ChannelSpec("app:ping", params=PingParams, result=PingResult, summary="Ping.")

    @registry.handler(PING)
    async def ping(params: PingParams) -> PingResult: ...

Names follow Electron's ``namespace:verb`` convention; ``rpc.*`` names are reserved by
JSON-RPC 2.0 §4.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Final, Generic, Literal, Protocol, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    RootModel,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    create_model,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from bridge.errors import (
    BridgeError,
    ConfigNotFoundError,
    ConfigOperationFailedError,
    DuplicateConfigNameError,
    OutboundDisabledError,
    RateLimitedError,
    ServiceUnavailableError,
    ValidationError,
    VersionConflictError,
)
from bridge.models import (
    CreateParams,
    DeleteParams,
    DeleteResult,
    EmptyParams,
    IdParams,
    InitializeResult,
    LlmConfigChanged,
    LlmConfigTestParams,
    LlmConfigTestResult,
    LlmConfigView,
    RefreshResult,
    Snapshot,
    UpdateParams,
    WireModel,
)

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")

PROTOCOL_VERSION = 1
"""Wire protocol version reported by ``bridge:hello`` and OpenRPC ``info.version``."""


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


Handler = Callable[..., Awaitable[Any]]
"""A channel's handler: validated params in (and a :class:`Progress` for a channel declared
with ``progress``), the result (or an ``orjson.Fragment``) out."""

PROGRESS: Final = "$/progress"
"""Notification (LSP) ``{token, value: {kind: "begin"|"report"|"end", message?, percentage?}}``
sent on the requesting connection for a request whose params carry ``workDoneToken``."""

ProgressSink = Callable[[dict[str, Any]], None]
"""Receives the params of one ``$/progress`` notification (the RPC layer sends it)."""


class Progress:
    """Work-done progress of one request (LSP ``$/progress``), handed to a ``progress`` channel's handler.

    ``begin`` comes first (sent by the first :meth:`report` if not called), ``end`` last
    (sent by the RPC layer when the handler returns, fails or is cancelled, if the handler
    did not); nothing is sent after ``end``. Without a ``workDoneToken`` every call does
    nothing. Messages are sent as given: never put a secret in one.

    Args:
        token: the request's ``workDoneToken`` (string or integer), or None.
        sink: receives each notification's params ``{token, value}``; None → nothing sent.
    """

    def __init__(self, token: str | int | None = None, sink: ProgressSink | None = None) -> None:
        """Bind the reporter to one request's token and connection."""
        self.token = token
        self._sink = sink if token is not None else None
        self._begun = False
        self._ended = False

    @property
    def active(self) -> bool:
        """True when notifications are being sent (a token was given and ``end`` not yet sent)."""
        return self._sink is not None and not self._ended

    def begin(self, message: str | None = None, percentage: int | None = None) -> None:
        """Send ``{kind: "begin", message?, percentage?}`` (once; later calls do nothing)."""
        if self._begun:
            return
        self._begun = True
        self._emit("begin", message, percentage)

    def report(self, message: str | None = None, percentage: int | None = None) -> None:
        """Send ``{kind: "report", message?, percentage?}`` (percentage 0–100), after ``begin``."""
        if not self._begun:
            self.begin(message, percentage)
            return
        self._emit("report", message, percentage)

    def end(self, message: str | None = None) -> None:
        """Send ``{kind: "end", message?}`` once, if ``begin`` was sent; nothing follows it."""
        if self._begun:
            self._emit("end", message, None)
        self._ended = True

    def _emit(self, kind: str, message: str | None, percentage: int | None) -> None:
        if self._sink is None or self._ended:
            return
        value: dict[str, Any] = {"kind": kind}
        if message is not None:
            value["message"] = message
        if percentage is not None:
            value["percentage"] = max(0, min(100, int(percentage)))
        self._sink({"token": self.token, "value": value})


CANCEL_REQUEST = "$/cancelRequest"
"""Notification (LSP) with params ``{id}``: cancel that long-running request of the same
connection, which is then answered -32800 REQUEST_CANCELLED (DESIGN §5). Requests to
channels that are not long-running are never cancelled (a write that committed is
answered as done); an unknown or finished id is ignored."""


@dataclass(frozen=True)
class Registration:
    """A channel spec bound to the coroutine that serves it.

    Attributes:
        spec: the channel's contract.
        handler: the coroutine function serving it.
        inline: True when the handler may start outside any task (it does not need
            ``asyncio.current_task()``, e.g. for ``asyncio.timeout``, before it first
            suspends). Such a handler is run inline by the transport and, when it never
            suspends (a cache read), answered without creating a task.
    """

    spec: ChannelSpec[Any, Any]
    handler: Handler
    inline: bool = False


class CollectionDefinition(Protocol):
    """What :meth:`Registry.add_collection` takes: a :class:`bridge.Collection`."""

    @property
    def name(self) -> str:
        """The collection's name (its channels' namespace)."""
        ...

    def bind(self, registry: Registry) -> Any:
        """Register the collection's channels and topic in ``registry``; return their binding."""
        ...


class Registry:
    """Channels and topics a server exposes; the single source for dispatch and schemas."""

    def __init__(self) -> None:
        """Start empty."""
        self._channels: dict[str, Registration] = {}
        self._topics: dict[str, TopicSpec] = {}
        self._collections: dict[str, Any] = {}

    def add_collection(self, collection: CollectionDefinition) -> Any:
        """Serve a :class:`bridge.Collection`: its ``<name>:*`` channels and ``<name>:changed`` topic.

        The channels and the topic are registered now (so schemas and ``rpc.discover``
        describe them); :func:`bridge.start_bridge` opens the collection's store and
        attaches its service. Until then the channels answer 5003.

        Returns:
            The binding (:class:`bridge.collection.channels.CollectionChannels`).

        Raises:
            ValueError: a collection of this name, or one of its channel names, is
                already registered.
        """
        if collection.name in self._collections:
            raise ValueError(f"collection {collection.name!r} is already registered")
        binding = collection.bind(self)
        self._collections[collection.name] = binding
        return binding

    @property
    def collections(self) -> list[Any]:
        """The bindings of every added collection, in the order they were added."""
        return list(self._collections.values())

    def add(
        self,
        spec: ChannelSpec[P, R],
        handler: Callable[[P], Awaitable[R | orjson.Fragment]]
        | Callable[[P, Progress], Awaitable[R | orjson.Fragment]],
        *,
        inline: bool = False,
    ) -> None:
        """Serve ``spec`` with ``handler`` (called with the validated params model).

        A channel declared with ``progress=True`` is called as ``handler(params,
        progress)`` with a :class:`Progress` bound to the request's ``workDoneToken``.

        With ``inline`` the handler may start outside any task (see
        :class:`Registration`); leave it False for handlers that use
        ``asyncio.timeout``, task-bound locks or libraries that need the current task.

        The handler returns the result (serialized with ``spec.result``'s pydantic
        adapter, wire names), or an ``orjson.Fragment`` holding that result's JSON
        already serialized, which is sent as is: the caller then answers for it matching
        ``spec.result``'s schema (the ``llm-config:*`` reads send the cache's JSON so).

        Raises:
            ValueError: the name is already registered.
        """
        if spec.name in self._channels:
            raise ValueError(f"channel {spec.name!r} is already registered")
        self._channels[spec.name] = Registration(spec, handler, inline)

    def handler(
        self, spec: ChannelSpec[P, R]
    ) -> Callable[[Callable[[P], Awaitable[R]]], Callable[[P], Awaitable[R]]]:
        """Decorator form of :meth:`add` (a handler returning ``orjson.Fragment`` uses ``add``)."""

        def register(fn: Callable[[P], Awaitable[R]]) -> Callable[[P], Awaitable[R]]:
            self.add(spec, fn)
            return fn

        return register

    def add_topic(self, topic: TopicSpec) -> None:
        """Declare a notification topic (for ``bridge:hello`` and the schemas).

        Raises:
            ValueError: a topic with this name is already declared.
        """
        if topic.name in self._topics:
            raise ValueError(f"topic {topic.name!r} is already declared")
        self._topics[topic.name] = topic

    def get(self, name: str) -> Registration | None:
        """Return the registration of channel ``name``, or None."""
        return self._channels.get(name)

    @property
    def channels(self) -> list[ChannelSpec[Any, Any]]:
        """Every channel spec, sorted by name."""
        return [self._channels[name].spec for name in sorted(self._channels)]

    @property
    def topics(self) -> list[TopicSpec]:
        """Every topic, sorted by name."""
        return [self._topics[name] for name in sorted(self._topics)]

    def names(self) -> list[str]:
        """Sorted channel names (as reported by ``bridge:hello``)."""
        return sorted(self._channels)


# ---- the built-in channels -------------------------------------------------------------

_WRITE_ERRORS: tuple[type[BridgeError], ...] = (ConfigOperationFailedError, ServiceUnavailableError)

# Documentation examples (OpenRPC "examples"); tests check each one against the server's
# params models and the published result schemas. The API key is a fake of a valid shape.
_EX_ID = "0b7e2f44-5c1a-4d3e-9f6b-2a8c7d1e4f90"
_EX_KEY = "sk-example-" + "0" * 32
_EX_VIEW: dict[str, Any] = {
    "id": _EX_ID,
    "customName": "My OpenAI",
    "provider": "openai",
    "apiKeyPreview": "sk-...000",
    "baseUrl": None,
    "useAuthHeader": True,
    "createdAt": "2025-01-15T09:30:00.000Z",
    "updatedAt": "2025-01-15T09:30:00.000Z",
    "version": 1,
}
_EX_UPDATED: dict[str, Any] = {
    **_EX_VIEW,
    "customName": "Work OpenAI",
    "baseUrl": "https://api.openai.com/v1",
    "updatedAt": "2025-01-15T10:00:00.000Z",
    "version": 2,
}

LLM_CONFIG_CREATE: ChannelSpec[CreateParams, LlmConfigView] = ChannelSpec(
    "llm-config:create",
    CreateParams,
    LlmConfigView,
    "Create an LLM provider config; returns its view (no API key).",
    (ValidationError, DuplicateConfigNameError, *_WRITE_ERRORS),
    examples=(
        Example(
            "create-openai",
            {"config": {"customName": "My OpenAI", "provider": "openai", "apiKey": _EX_KEY}},
            _EX_VIEW,
            "Create an OpenAI config; the result carries a key preview, never the key.",
        ),
    ),
)
LLM_CONFIG_READ: ChannelSpec[IdParams, LlmConfigView | None] = ChannelSpec(
    "llm-config:read",
    IdParams,
    LlmConfigView | None,
    "Read one config by id from the cache; null when unknown.",
    (ValidationError, ServiceUnavailableError),
    examples=(
        Example("read-existing", {"id": _EX_ID}, _EX_VIEW, "Read a config by id."),
        Example(
            "read-unknown", {"id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"}, None, "An unknown id reads null."
        ),
    ),
)
LLM_CONFIG_UPDATE: ChannelSpec[UpdateParams, LlmConfigView] = ChannelSpec(
    "llm-config:update",
    UpdateParams,
    LlmConfigView,
    "Patch a config; omitted fields keep their value, baseUrl null clears it. A patch that "
    "changes baseUrl (clearing it included) or provider must carry apiKey (else updates.apiKey "
    "REQUIRED): a stored key never follows a new destination on its own.",
    (
        ValidationError,
        ConfigNotFoundError,
        VersionConflictError,
        DuplicateConfigNameError,
        *_WRITE_ERRORS,
    ),
    examples=(
        Example(
            "rename-and-set-base-url",
            {
                "id": _EX_ID,
                "updates": {
                    "customName": "Work OpenAI",
                    "baseUrl": "https://api.openai.com/v1",
                    "apiKey": _EX_KEY,
                },
                "expectedVersion": 1,
            },
            _EX_UPDATED,
            "Rename a config and set its base URL (which needs the key again), guarded by expectedVersion.",
        ),
    ),
)
LLM_CONFIG_DELETE: ChannelSpec[DeleteParams, DeleteResult] = ChannelSpec(
    "llm-config:delete",
    DeleteParams,
    DeleteResult,
    "Delete a config; {deleted: false} when the id is unknown.",
    (ValidationError, VersionConflictError, *_WRITE_ERRORS),
    examples=(
        Example("delete-existing", {"id": _EX_ID, "expectedVersion": 2}, {"deleted": True}),
        Example(
            "delete-unknown",
            {"id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"},
            {"deleted": False},
            "Deleting an unknown id is not an error.",
        ),
    ),
)
LLM_CONFIG_LIST: ChannelSpec[EmptyParams, list[LlmConfigView]] = ChannelSpec(
    "llm-config:list",
    EmptyParams,
    list[LlmConfigView],
    "Every config in creation order.",
    (ServiceUnavailableError,),
    params_optional=True,
    examples=(Example("list-one", {}, [_EX_VIEW]),),
)
LLM_CONFIG_SNAPSHOT: ChannelSpec[EmptyParams, Snapshot] = ChannelSpec(
    "llm-config:snapshot",
    EmptyParams,
    Snapshot,
    "Every config and the revision they reflect (for resync after reconnect).",
    (ServiceUnavailableError,),
    params_optional=True,
    examples=(Example("snapshot-one", {}, {"revision": 1, "configs": [_EX_VIEW]}),),
)
LLM_CONFIG_INITIALIZE: ChannelSpec[EmptyParams, InitializeResult] = ChannelSpec(
    "llm-config:initialize",
    EmptyParams,
    InitializeResult,
    "Load the cache if not yet loaded (idempotent).",
    (ServiceUnavailableError,),
    params_optional=True,
    examples=(Example("initialize", {}, {"initialized": True, "count": 1}),),
)
LLM_CONFIG_REFRESH_CACHE: ChannelSpec[EmptyParams, RefreshResult] = ChannelSpec(
    "llm-config:refresh-cache",
    EmptyParams,
    RefreshResult,
    "Reload the cache from the store; an event is sent for every difference.",
    _WRITE_ERRORS,
    params_optional=True,
    examples=(Example("refresh", {}, {"count": 1, "revision": 1}),),
)

MAX_RUNNING_TESTS_PER_CONNECTION: Final = 4
"""Most ``llm-config:test`` requests running at once on one connection; one more → 4029."""

LLM_CONFIG_TEST: ChannelSpec[LlmConfigTestParams, LlmConfigTestResult] = ChannelSpec(
    "llm-config:test",
    LlmConfigTestParams,
    LlmConfigTestResult,
    "List the provider's models with a saved config's key ({id}) or a draft ({config}, never saved); "
    "the key stays in the server.",
    (
        ValidationError,
        OutboundDisabledError,
        ConfigNotFoundError,
        ConfigOperationFailedError,
        RateLimitedError,
        ServiceUnavailableError,
    ),
    long_running=True,
    progress=True,
    max_running=MAX_RUNNING_TESTS_PER_CONNECTION,
    examples=(
        Example(
            "test-saved",
            {"id": _EX_ID, "timeoutMs": 5000},
            {"ok": True, "latencyMs": 412, "models": ["gpt-4o", "gpt-4o-mini"], "error": None},
            "Test a saved config with its stored key.",
        ),
        Example(
            "test-draft-refused",
            {"config": {"customName": "Draft", "provider": "openai", "apiKey": _EX_KEY}},
            {
                "ok": False,
                "latencyMs": 230,
                "models": None,
                "error": {"kind": "auth", "status": 401, "message": "The provider refused the API key"},
            },
            "Test a draft from a form (not saved); the provider refused its key.",
        ),
    ),
)

LLM_CONFIG_CHANGED = TopicSpec(
    "llm-config:changed",
    LlmConfigChanged,
    "A config was created, updated or deleted (by any renderer or process).",
    examples=(
        Example("created", {"type": "created", "id": _EX_ID, "revision": 1, "config": _EX_VIEW}),
        Example("deleted", {"type": "deleted", "id": _EX_ID, "revision": 3}, summary="No config."),
    ),
)

LLM_CONFIG_CHANNELS: tuple[ChannelSpec[Any, Any], ...] = (
    LLM_CONFIG_CREATE,
    LLM_CONFIG_READ,
    LLM_CONFIG_UPDATE,
    LLM_CONFIG_DELETE,
    LLM_CONFIG_LIST,
    LLM_CONFIG_SNAPSHOT,
    LLM_CONFIG_INITIALIZE,
    LLM_CONFIG_REFRESH_CACHE,
    LLM_CONFIG_TEST,
)


class QuarantinedRow(WireModel):
    """A stored config held out of the cache: its id and the reason code.

    Reason codes: ``<field>.<FIELD CODE>`` when a domain rule fails (e.g.
    ``provider.INVALID_ENUM``), ``UNDECODABLE_TEXT``, ``UNKNOWN_KEY_ID``,
    ``CIPHERTEXT_AUTH_FAILED`` (a security event), ``NAME_CONFLICT``.
    """

    id: str
    reason: str


class CacheStats(WireModel):
    """Size of the server's cache: ``count`` configs, about ``bytes`` bytes of memory."""

    count: int = Field(ge=0)
    bytes: int = Field(ge=0, description="Approximate memory held by the cache, in bytes.")


class HelloResult(WireModel):
    """Result of ``bridge:hello``: what a renderer checks before it trusts the server.

    ``quarantined`` lists stored configs that fail the rules and are not served;
    ``degraded`` is present while the store could not be loaded (the server serves an
    empty cache and retries).
    """

    server_version: str
    protocol_version: int
    schema_hash: str
    channels: list[str]
    revision: int
    secret_backend: str = Field(json_schema_extra={"enum": ["keyring", "file"]})
    # Absent (not null) when nothing was recovered (DESIGN §5).
    recovered_from: str | SkipJsonSchema[None] = Field(default=None, exclude_if=lambda v: v is None)
    quarantined: list[QuarantinedRow]
    cache: CacheStats
    # Absent when the store loaded: "load_failed" while the server serves degraded.
    degraded: str | SkipJsonSchema[None] = Field(default=None, exclude_if=lambda v: v is None)


BRIDGE_HELLO: ChannelSpec[EmptyParams, HelloResult] = ChannelSpec(
    "bridge:hello",
    EmptyParams,
    HelloResult,
    "Server and protocol versions, schema hash, channel names and current revision.",
    params_optional=True,
)
RPC_DISCOVER: ChannelSpec[EmptyParams, dict[str, Any]] = ChannelSpec(
    "rpc.discover",
    EmptyParams,
    dict[str, Any],
    "The OpenRPC 1.3 document of this server.",
    params_optional=True,
)


class ShutdownResult(WireModel):
    """Result of ``bridge:shutdown``: the server stops gracefully once this response is sent."""

    shutting_down: Literal[True] = True


BRIDGE_SHUTDOWN: ChannelSpec[EmptyParams, ShutdownResult] = ChannelSpec(
    "bridge:shutdown",
    EmptyParams,
    ShutdownResult,
    "Stop the server gracefully, as SIGTERM does (for hosts that cannot close the sidecar's stdin). "
    "Served only when bridge serve was started with --exit-with-parent or --allow-shutdown; "
    "otherwise -32601.",
    params_optional=True,
    examples=(Example("stop the sidecar", {}, {"shuttingDown": True}),),
)


# ---- rpc-websockets compatibility ------------------------------------------------------
# The npm rpc-websockets Client's subscribe()/unsubscribe() call `rpc.on`/`rpc.off` with
# an array of event names and throw unless the result maps each name to "ok". Its own
# server answers "provided event invalid" for an unknown event (rpc-websockets 10,
# dist/index.cjs, `_runMethod`); bridge answers the same. Every connection receives every
# notification whatever it subscribed to, so both calls only acknowledge.


class EventNames(RootModel[list[Annotated[str, StringConstraints(max_length=200)]]]):
    """Params of ``rpc.on``/``rpc.off``: an array of notification topic names (by position)."""

    model_config = ConfigDict(defer_build=True)  # built on first use (cold start)

    root: list[Annotated[str, StringConstraints(max_length=200)]] = Field(min_length=1, max_length=100)


SubscriptionResults = dict[str, Literal["ok", "provided event invalid"]]
"""Result of ``rpc.on``/``rpc.off``: each requested name → ``"ok"`` or ``"provided event invalid"``."""

RPC_ON: ChannelSpec[EventNames, SubscriptionResults] = ChannelSpec(
    "rpc.on",
    EventNames,
    SubscriptionResults,
    "rpc-websockets subscribe: acknowledge topics (every connection gets every notification).",
)
RPC_OFF: ChannelSpec[EventNames, SubscriptionResults] = ChannelSpec(
    "rpc.off",
    EventNames,
    SubscriptionResults,
    "rpc-websockets unsubscribe: acknowledge topics (delivery does not stop).",
)


def subscription_handler(registry: Registry) -> Callable[[EventNames], Awaitable[SubscriptionResults]]:
    """Return the handler of ``rpc.on``/``rpc.off`` for ``registry``'s topics.

    The handler maps each requested name to ``"ok"`` when ``registry`` declares that
    topic (at call time, so topics added later count), else ``"provided event invalid"``
    — the answers of rpc-websockets' own server.
    """

    async def acknowledge(params: EventNames) -> SubscriptionResults:
        known = {topic.name for topic in registry.topics}
        return {name: "ok" if name in known else "provided event invalid" for name in params.root}

    return acknowledge


BUILTIN_CHANNELS: tuple[ChannelSpec[Any, Any], ...] = (
    *LLM_CONFIG_CHANNELS,
    BRIDGE_HELLO,
    RPC_DISCOVER,
    RPC_ON,
    RPC_OFF,
)
"""Every channel a stock ``bridge serve`` exposes (and ``rpc.discover``/``schemas/`` describe)."""
OPTIONAL_CHANNELS: tuple[ChannelSpec[Any, Any], ...] = (BRIDGE_SHUTDOWN,)
"""Process-control channels served only when enabled (``bridge:shutdown``: sidecar mode or
``--allow-shutdown``). ``bridge:hello``'s ``channels`` lists them when served; the OpenRPC
document leaves them out, so it and its ``schemaHash`` do not depend on the mode."""
BUILTIN_TOPICS: tuple[TopicSpec, ...] = (LLM_CONFIG_CHANGED,)
"""Every topic a stock ``bridge serve`` publishes."""


OPENRPC_RESOURCE: Final = "openrpc.json"
"""Package data: a stock server's OpenRPC document (``schemas/openrpc.json``'s bytes)."""


@functools.cache
def builtin_openrpc() -> tuple[bytes, str]:
    """Return the package data ``bridge/openrpc.json``'s bytes and their ``schemaHash``.

    Read once. The bytes are canonical (DESIGN §5), so the hash (``sha256:<hex>`` of the
    bytes) is what a stock ``bridge serve`` announces in ``bridge:hello``.
    """
    raw = resources.files("bridge").joinpath(OPENRPC_RESOURCE).read_bytes()
    return raw, "sha256:" + hashlib.sha256(raw).hexdigest()
