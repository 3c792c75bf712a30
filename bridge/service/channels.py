"""Binds the ``llm-config:*`` channels of :mod:`bridge.api` to an ``LlmConfigService``.

The service returns models; this binding turns them into wire JSON. The reads
(``read``, ``list``, ``snapshot``) are the hot path: each view's JSON is built once by its
own pydantic serializer and kept in a :class:`JsonMemo` until the config changes (the
service returns the same view object while it is unchanged), then spliced into every
reply as an ``orjson.Fragment``.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import orjson
from pydantic import BaseModel

from bridge import api
from bridge.models import (
    ChangeType,
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
    UpdateParams,
)
from bridge.service.llm_config import LlmConfigService
from bridge.service.tester import LlmConfigTester

_NULL = orjson.Fragment(b"null")


M = TypeVar("M", bound=BaseModel)


class JsonMemo(Generic[M]):
    """The wire JSON of each entry's model, built once per model object.

    The service returns the same model object while an entry is unchanged, so the memo
    is keyed by the object's identity: a hit is one ``dict`` lookup, with no attribute
    read or comparison (the hot path of ``read`` and ``list``). The memo holds the one
    object per entry id whose JSON it keeps (so no other object can take its identity);
    a new object for the same id replaces it, and ``deleted`` drops it
    (:meth:`on_changed`).

    Args:
        model: the model class (with an ``id`` field); its own serializer, by alias
            (camelCase), builds the JSON.
    """

    __slots__ = ("_array", "_dump", "_held", "_json")

    def __init__(self, model: type[M]) -> None:
        """Start empty."""
        self._dump = model.__pydantic_serializer__.to_json
        self._json: dict[int, bytes] = {}
        """``id()`` of a held model object → its JSON."""
        self._held: dict[str, M] = {}
        """Entry id → the model object whose JSON is kept."""
        self._array: tuple[tuple[M, ...], bytes] = ((), b"[]")
        """The last tuple :meth:`array` serialised, held, and its JSON."""

    def json(self, item: M) -> bytes:
        """Return ``item``'s wire JSON (UTF-8), built once per object."""
        data = self._json.get(id(item))
        if data is not None:
            return data
        data = self._dump(item, by_alias=True)
        key: str = item.id  # type: ignore[attr-defined]
        old = self._held.get(key)
        if old is not None:
            del self._json[id(old)]
        self._held[key] = item
        self._json[id(item)] = data
        return data

    def one(self, item: M | None) -> orjson.Fragment:
        """``item`` as a JSON fragment; ``null`` for None."""
        if item is None:
            return _NULL
        data = self._json.get(id(item))  # the hit path of every read, inlined
        return orjson.Fragment(data if data is not None else self.json(item))

    def array(self, items: tuple[M, ...]) -> bytes:
        """A JSON array of ``items``' JSON, in order; the same tuple again is one lookup.

        Args:
            items: a tuple the caller hands out again while nothing in it changed (the
                service's shared views), so the last one's JSON is kept by identity.
        """
        last, data = self._array
        if items is last:
            return data
        memo = self._json
        data = b"[" + b",".join([memo.get(id(item)) or self.json(item) for item in items]) + b"]"
        self._array = (items, data)
        return data

    def on_changed(self, event: LlmConfigChanged) -> None:
        """Subscriber of the service's events: drops the JSON of a ``deleted`` entry."""
        if event.type is ChangeType.DELETED:
            old = self._held.pop(event.id, None)
            if old is not None:
                del self._json[id(old)]


def register_llm_config_channels(
    registry: api.Registry, service: LlmConfigService, tester: LlmConfigTester | None = None
) -> None:
    """Serve every ``llm-config:*`` channel and declare ``llm-config:changed`` on ``registry``.

    Args:
        registry: where the channels are added.
        service: serves the CRUD and cache channels.
        tester: serves ``llm-config:test``; None → an enabled ``LlmConfigTester(service)``.

    Raises:
        ValueError: one of the names is already registered.
    """
    tester = tester or LlmConfigTester(service)
    memo = JsonMemo(LlmConfigView)
    service.events.subscribe(memo.on_changed)

    async def create(params: CreateParams) -> LlmConfigView:
        return await service.create(params.config)

    # The reads are registered inline: they need no task, and a loaded cache answers them
    # without suspending.
    async def read(params: IdParams) -> orjson.Fragment:
        view = service.peek(params.id)  # a hit: no coroutine of the service's
        return memo.one(view if view is not None else await service.read(params.id))

    async def update(params: UpdateParams) -> LlmConfigView:
        return await service.update(params.id, params.updates, params.expected_version)

    async def delete(params: DeleteParams) -> DeleteResult:
        return DeleteResult(deleted=await service.delete(params.id, params.expected_version))

    async def list_(_: EmptyParams) -> orjson.Fragment:
        return orjson.Fragment(memo.array((await service.views())[1]))

    async def snapshot(_: EmptyParams) -> orjson.Fragment:
        revision, views = await service.views()
        # The Snapshot model's wire form: {"revision": int, "configs": LlmConfigView[]}.
        return orjson.Fragment(
            orjson.dumps({"revision": revision, "configs": orjson.Fragment(memo.array(views))})
        )

    async def initialize(_: EmptyParams) -> InitializeResult:
        return InitializeResult(count=await service.initialize())

    async def refresh(_: EmptyParams) -> RefreshResult:
        count, revision = await service.refresh()
        return RefreshResult(count=count, revision=revision)

    registry.add(api.LLM_CONFIG_CREATE, create)
    registry.add(api.LLM_CONFIG_READ, read, inline=True)
    registry.add(api.LLM_CONFIG_UPDATE, update)
    registry.add(api.LLM_CONFIG_DELETE, delete)
    registry.add(api.LLM_CONFIG_LIST, list_, inline=True)
    registry.add(api.LLM_CONFIG_SNAPSHOT, snapshot, inline=True)
    registry.add(api.LLM_CONFIG_INITIALIZE, initialize)

    async def test(params: LlmConfigTestParams, progress: api.Progress) -> LlmConfigTestResult:
        # Long-running: the RPC layer runs it beside later requests and cancels its task on
        # `$/cancelRequest` (the outbound request is aborted). The tester's progress
        # messages are fixed strings ("connecting", "listing"): never the key or a URL.
        result = await tester.test(
            config_id=params.id, draft=params.config, timeout_ms=params.timeout_ms, progress=progress.report
        )
        progress.end("ok" if result.ok else "failed")
        return result

    registry.add(api.LLM_CONFIG_REFRESH_CACHE, refresh)
    registry.add(api.LLM_CONFIG_TEST, test)
    registry.add_topic(api.LLM_CONFIG_CHANGED)
