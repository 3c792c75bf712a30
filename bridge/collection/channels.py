"""Binds one collection's channels to its :class:`~bridge.collection.service.CollectionService`.

The service returns models; this binding turns them into wire JSON. The reads (``read``,
``list``, ``snapshot``) splice each view's JSON, built once per view object
(:class:`~bridge.collection.memo.JsonMemo`), as ``orjson.Fragment``s, as the
``llm-config:*`` reads do.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import orjson

from bridge.collection.memo import JsonMemo
from bridge.collection.rules import Rules, Wire
from bridge.errors import (
    ConfigNotFoundError,
    DuplicateConfigNameError,
    DuplicateItemError,
    ItemNotFoundError,
    ServiceUnavailableError,
    VersionConflictError,
)
from bridge.models import DeleteResult, EmptyParams
from bridge.spec import ChannelSpec, TopicSpec


class Registrar(Protocol):
    """What the binding needs of a :class:`bridge.api.Registry` (whose module imports the definitions)."""

    def add(self, spec: Any, handler: Callable[..., Awaitable[Any]], *, inline: bool = False) -> None:
        """Serve ``spec`` with ``handler``."""
        ...

    def add_topic(self, topic: TopicSpec) -> None:
        """Declare ``topic``."""
        ...


class Specs(Protocol):
    """The channel specs of a collection (:class:`~bridge.collection.definition.CollectionSpecs`)."""

    def all(self) -> tuple[ChannelSpec[Any, Any], ...]:
        """Every spec, in CRUD order (create, read, update, delete, list, snapshot)."""
        ...


class Bindable(Protocol):
    """What :func:`bind` reads of a collection (a :class:`bridge.Collection`)."""

    @property
    def rules(self) -> Rules:
        """Its rules and wire models."""
        ...

    @property
    def channels(self) -> Specs:
        """Its channel specs."""
        ...

    @property
    def changed(self) -> TopicSpec:
        """Its ``<name>:changed`` topic."""
        ...

    @property
    def wire(self) -> Wire:
        """Its wire's keys and errors."""
        ...


def bind(collection: Bindable, registry: Registrar) -> CollectionChannels:
    """Register ``collection``'s channels and topic in ``registry``; return their binding.

    Called by :meth:`bridge.api.Registry.add_collection` (and for llm-config by
    :func:`bridge.service.channels.register_llm_config_channels`); the binding answers
    5003 until its service is attached (:meth:`CollectionChannels.attach`). The
    definition does not bind itself: it stays data, importable below the wire (the
    llm-config service reads its rules).

    Raises:
        ValueError: one of the names is already registered.
    """
    return CollectionChannels(
        collection.rules, collection.channels.all(), collection.changed, registry, collection.wire
    )


class Served(Protocol):
    """What the binding needs of a collection's service (``CollectionService``, ``LlmConfigService``).

    The reads come in two halves: a synchronous one answering from a loaded cache (the
    hot path: no coroutine), and an awaitable one for when it has more to do (the cache
    is not loaded yet, or a miss catches up with the store).
    """

    @property
    def events(self) -> Any:
        """The bus of ``<Model>Changed`` events (``subscribe(callback)``)."""
        ...

    def peek(self, item_id: str) -> Any:
        """The cached view of ``item_id``, or None (then :meth:`fetch` tells)."""
        ...

    async def fetch(self, item_id: str) -> Any:
        """The view of ``item_id`` or None when unknown; raises 5003 when closed."""
        ...

    def peek_views(self) -> tuple[int, tuple[Any, ...]] | None:
        """``(revision, views)`` from a loaded cache (the shared tuple), or None (then :meth:`views`)."""
        ...

    async def views(self) -> tuple[int, tuple[Any, ...]]:
        """``(revision, views)``, loading first when needed; raises 5003 when closed."""
        ...

    async def create(self, item: Any) -> Any:
        """Create an item; return its view."""
        ...

    async def update(self, item_id: str, updates: Any, expected_version: int | None = None) -> Any:
        """Patch an item; return its view."""
        ...

    async def delete(self, item_id: str, expected_version: int | None = None) -> bool:
        """Delete an item; False when unknown."""
        ...


class CollectionChannels:
    """The ``<name>:*`` channels and the ``<name>:changed`` topic of one collection in one registry.

    Registered when built; every channel answers 5003 ``SERVICE_UNAVAILABLE`` until
    :meth:`attach` gives it its service (:func:`bridge.start_bridge` does; llm-config's
    is attached by :func:`bridge.service.channels.register_llm_config_channels`).

    Args:
        rules: the collection's rules and wire models.
        specs: its channels, in :class:`~bridge.collection.definition.CollectionSpecs` order
            (create, read, update, delete, list, snapshot).
        topic: its ``<name>:changed`` topic.
        registry: where the channels and the topic are added.
        wire: the keys and errors of its wire (:class:`~bridge.collection.rules.Wire`);
            None → the collection wire (``item``, ``items``, 4004 ``ITEM_NOT_FOUND``...).

    Raises:
        ValueError: one of the names is already registered.
    """

    def __init__(
        self,
        rules: Rules,
        specs: tuple[ChannelSpec[Any, Any], ...],
        topic: TopicSpec,
        registry: Registrar,
        wire: Wire | None = None,
    ) -> None:
        """Register the channels and the topic."""
        wire = wire or Wire()
        self.rules = rules
        self.topic = topic
        self.wire = wire
        self.service: Served | None = None
        self._memo: JsonMemo[Any] = JsonMemo(rules.types.view)
        self._item = operator.attrgetter(wire.item_key)
        self._items_key = wire.items_key
        create, read, update, delete, list_, snapshot = specs
        registry.add(create, self._create)
        registry.add(read, self._read, inline=True)
        registry.add(update, self._update)
        registry.add(delete, self._delete)
        registry.add(list_, self._list, inline=True)
        registry.add(snapshot, self._snapshot, inline=True)
        registry.add_topic(topic)

    def attach(self, service: Served) -> None:
        """Serve the channels from ``service`` (its events keep the JSON memo current)."""
        self.service = service
        service.events.subscribe(self._memo.on_changed)

    def _service(self) -> Served:
        if self.service is None:
            raise ServiceUnavailableError
        return self.service

    @contextlib.contextmanager
    def _item_errors(self) -> Iterator[None]:
        """Word the shared 4004/4009/4012 errors for this collection's items (codes kept).

        ``ITEM_NOT_FOUND`` / ``DUPLICATE_ITEM`` / ``VERSION_CONFLICT`` saying "Item <id> of
        <collection>", never "Config" (the LLM-config wording stays the LLM config's: a
        collection whose :class:`~bridge.collection.rules.Wire` names the config errors
        keeps them as they are).
        """
        if not self.wire.generic:
            yield
            return
        name = self.rules.name
        try:
            yield
        except (ItemNotFoundError, DuplicateItemError):
            raise
        except ConfigNotFoundError as exc:
            raise ItemNotFoundError(name, exc.config_id) from None
        except VersionConflictError as exc:
            if getattr(exc, "collection", None) is not None:
                raise
            item_id = str((exc.context or {}).get("id"))
            raise VersionConflictError(item_id, exc.expected, exc.actual, collection=name) from None
        except DuplicateConfigNameError as exc:
            raise DuplicateItemError(exc.message, context=exc.context) from None

    async def _create(self, params: Any) -> Any:
        with self._item_errors():
            return await self._service().create(self._item(params))

    # The reads are registered inline: they need no task, and a loaded cache answers them
    # without suspending (one lookup in the cache, one in the memo).
    async def _read(self, params: Any) -> orjson.Fragment:
        service = self.service
        if service is None:
            raise ServiceUnavailableError
        view = service.peek(params.id)  # a hit: no coroutine of the service's
        return self._memo.one(view if view is not None else await service.fetch(params.id))

    async def _update(self, params: Any) -> Any:
        with self._item_errors():
            return await self._service().update(params.id, params.updates, params.expected_version)

    async def _delete(self, params: Any) -> DeleteResult:
        with self._item_errors():
            return DeleteResult(deleted=await self._service().delete(params.id, params.expected_version))

    async def _list(self, _: EmptyParams) -> orjson.Fragment:
        service = self._service()
        views = service.peek_views() or await service.views()
        return orjson.Fragment(self._memo.array(views[1]))

    async def _snapshot(self, _: EmptyParams) -> orjson.Fragment:
        service = self._service()
        revision, views = service.peek_views() or await service.views()
        # The snapshot model's wire form: {"revision": int, "<items key>": View[]}.
        return orjson.Fragment(
            orjson.dumps({"revision": revision, self._items_key: orjson.Fragment(self._memo.array(views))})
        )
