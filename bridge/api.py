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
from typing import Annotated, Any, Final, Literal, Protocol

import orjson
from pydantic import ConfigDict, Field, RootModel, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from bridge.collection.channels import Bindable, bind

# llm-config is the first collection (bridge.llm_config): its CRUD specs and topic are
# derived from its definition as any collection's; the LLM_CONFIG_* names are kept for callers.
from bridge.llm_config import CHANGED as LLM_CONFIG_CHANGED
from bridge.llm_config import CHANNELS as LLM_CONFIG_CHANNELS
from bridge.llm_config import CREATE as LLM_CONFIG_CREATE
from bridge.llm_config import DELETE as LLM_CONFIG_DELETE
from bridge.llm_config import INITIALIZE as LLM_CONFIG_INITIALIZE
from bridge.llm_config import LIST as LLM_CONFIG_LIST
from bridge.llm_config import MAX_RUNNING_TESTS_PER_CONNECTION
from bridge.llm_config import READ as LLM_CONFIG_READ
from bridge.llm_config import REFRESH_CACHE as LLM_CONFIG_REFRESH_CACHE
from bridge.llm_config import SNAPSHOT as LLM_CONFIG_SNAPSHOT
from bridge.llm_config import TEST as LLM_CONFIG_TEST
from bridge.llm_config import UPDATE as LLM_CONFIG_UPDATE
from bridge.models import EmptyParams, WireModel
from bridge.spec import (
    WORK_DONE_TOKEN,
    ChannelSpec,
    Example,
    P,
    ProgressToken,
    R,
    TopicSpec,
    accepting_work_done_token,
)

__all__ = [
    "BRIDGE_HELLO",
    "BRIDGE_SHUTDOWN",
    "BUILTIN_CHANNELS",
    "BUILTIN_TOPICS",
    "CANCEL_REQUEST",
    "LLM_CONFIG_CHANGED",
    "LLM_CONFIG_CHANNELS",
    "LLM_CONFIG_CREATE",
    "LLM_CONFIG_DELETE",
    "LLM_CONFIG_INITIALIZE",
    "LLM_CONFIG_LIST",
    "LLM_CONFIG_READ",
    "LLM_CONFIG_REFRESH_CACHE",
    "LLM_CONFIG_SNAPSHOT",
    "LLM_CONFIG_TEST",
    "LLM_CONFIG_UPDATE",
    "MAX_RUNNING_TESTS_PER_CONNECTION",
    "OPENRPC_RESOURCE",
    "OPTIONAL_CHANNELS",
    "PROGRESS",
    "PROTOCOL_VERSION",
    "RPC_DISCOVER",
    "RPC_OFF",
    "RPC_ON",
    "WORK_DONE_TOKEN",
    "CacheStats",
    "ChannelSpec",
    "CollectionDefinition",
    "EventNames",
    "Example",
    "Handler",
    "HelloResult",
    "Progress",
    "ProgressSink",
    "ProgressToken",
    "QuarantinedRow",
    "Registration",
    "Registry",
    "ShutdownResult",
    "SubscriptionResults",
    "TopicSpec",
    "accepting_work_done_token",
    "builtin_openrpc",
    "subscription_handler",
]

PROTOCOL_VERSION = 1
"""Wire protocol version reported by ``bridge:hello`` and OpenRPC ``info.version``."""


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


class CollectionDefinition(Bindable, Protocol):
    """What :meth:`Registry.add_collection` takes: a :class:`bridge.Collection`."""

    @property
    def name(self) -> str:
        """The collection's name (its channels' namespace)."""
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
        binding = bind(collection, self)
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
