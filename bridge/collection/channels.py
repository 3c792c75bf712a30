"""Binds one collection's channels to its :class:`~bridge.collection.service.CollectionService`.

The service returns models; this binding turns them into wire JSON. The reads (``read``,
``list``, ``snapshot``) splice each view's JSON, built once per view object
(:class:`~bridge.service.channels.JsonMemo`), as ``orjson.Fragment``s, as the
``llm-config:*`` reads do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import orjson

from bridge import api
from bridge.collection.rules import Rules
from bridge.collection.service import CollectionService
from bridge.errors import (
    ConfigNotFoundError,
    DuplicateConfigNameError,
    DuplicateItemError,
    ItemNotFoundError,
    ServiceUnavailableError,
    VersionConflictError,
)
from bridge.models import DeleteResult, EmptyParams
from bridge.service.channels import JsonMemo


class CollectionChannels:
    """The ``<name>:*`` channels and the ``<name>:changed`` topic of one collection in one registry.

    Registered when built; every channel answers 5003 ``SERVICE_UNAVAILABLE`` until
    :meth:`attach` gives it its service (:func:`bridge.start_bridge` does).

    Args:
        rules: the collection's rules and wire models.
        specs: its channels, in :class:`~bridge.collection.definition.CollectionSpecs` order
            (create, read, update, delete, list, snapshot).
        topic: its ``<name>:changed`` topic.
        registry: where the channels and the topic are added.

    Raises:
        ValueError: one of the names is already registered.
    """

    def __init__(
        self,
        rules: Rules,
        specs: tuple[api.ChannelSpec[Any, Any], ...],
        topic: api.TopicSpec,
        registry: api.Registry,
    ) -> None:
        """Register the channels and the topic."""
        self.rules = rules
        self.topic = topic
        self.service: CollectionService | None = None
        self._memo: JsonMemo[Any] = JsonMemo(rules.types.view)
        create, read, update, delete, list_, snapshot = specs
        registry.add(create, self._create)
        registry.add(read, self._read, inline=True)
        registry.add(update, self._update)
        registry.add(delete, self._delete)
        registry.add(list_, self._list, inline=True)
        registry.add(snapshot, self._snapshot, inline=True)
        registry.add_topic(topic)

    def attach(self, service: CollectionService) -> None:
        """Serve the channels from ``service`` (its events keep the JSON memo current)."""
        self.service = service
        service.events.subscribe(self._memo.on_changed)

    def _service(self) -> CollectionService:
        if self.service is None:
            raise ServiceUnavailableError
        return self.service

    @contextlib.contextmanager
    def _item_errors(self) -> Iterator[None]:
        """Word the shared 4004/4009/4012 errors for this collection's items (codes kept).

        ``ITEM_NOT_FOUND`` / ``DUPLICATE_ITEM`` / ``VERSION_CONFLICT`` saying "Item <id> of
        <collection>", never "Config" (the LLM-config wording stays the LLM config's).
        """
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
            return await self._service().create(params.item)

    async def _read(self, params: Any) -> orjson.Fragment:
        return self._memo.one(self._service().read(params.id))

    async def _update(self, params: Any) -> Any:
        with self._item_errors():
            return await self._service().update(params.id, params.updates, params.expected_version)

    async def _delete(self, params: Any) -> DeleteResult:
        with self._item_errors():
            return DeleteResult(deleted=await self._service().delete(params.id, params.expected_version))

    async def _list(self, _: EmptyParams) -> orjson.Fragment:
        return orjson.Fragment(self._memo.array(self._service().list()))

    async def _snapshot(self, _: EmptyParams) -> orjson.Fragment:
        revision, views = self._service().snapshot()
        return orjson.Fragment(
            orjson.dumps({"revision": revision, "items": orjson.Fragment(self._memo.array(views))})
        )
