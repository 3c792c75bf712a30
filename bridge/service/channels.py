"""Binds the ``llm-config:*`` channels of :mod:`bridge.api` to an ``LlmConfigService``.

The service returns models; this binding turns them into wire JSON. The reads
(``read``, ``list``, ``snapshot``) are the hot path: each view's JSON is built once by its
own pydantic serializer and kept in a :class:`JsonMemo` until the config changes (the
service returns the same view object while it is unchanged), then spliced into every
reply as an ``orjson.Fragment``.
"""

from __future__ import annotations

from collections.abc import Iterable
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

    Keyed by the entry's id and checked by identity: an entry whose model object is the
    one serialised last gets the same bytes back, a new object (the entry changed) is
    serialised again. Entries are dropped on ``deleted`` (:meth:`on_changed`).

    Args:
        model: the model class; its own serializer (by alias: camelCase) builds the JSON.
    """

    __slots__ = ("_dump", "_memo")

    def __init__(self, model: type[M]) -> None:
        """Start empty."""
        self._dump = model.__pydantic_serializer__.to_json
        self._memo: dict[str, tuple[M, bytes]] = {}

    def json(self, item: M) -> bytes:
        """Return ``item``'s wire JSON (UTF-8), from the memo when ``item`` is unchanged."""
        key: str = item.id  # type: ignore[attr-defined]
        hit = self._memo.get(key)
        if hit is not None and hit[0] is item:
            return hit[1]
        data: bytes = self._dump(item, by_alias=True)
        self._memo[key] = (item, data)
        return data

    def one(self, item: M | None) -> orjson.Fragment:
        """``item`` as a JSON fragment; ``null`` for None."""
        return _NULL if item is None else orjson.Fragment(self.json(item))

    def array(self, items: Iterable[M]) -> bytes:
        """A JSON array of ``items``' JSON, in order."""
        return b"[" + b",".join([self.json(item) for item in items]) + b"]"

    def on_changed(self, event: LlmConfigChanged) -> None:
        """Subscriber of the service's events: drops the JSON of a ``deleted`` entry."""
        if event.type is ChangeType.DELETED:
            self._memo.pop(event.id, None)


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
        return memo.one(await service.read(params.id))

    async def update(params: UpdateParams) -> LlmConfigView:
        return await service.update(params.id, params.updates, params.expected_version)

    async def delete(params: DeleteParams) -> DeleteResult:
        return DeleteResult(deleted=await service.delete(params.id, params.expected_version))

    async def list_(_: EmptyParams) -> orjson.Fragment:
        return orjson.Fragment(memo.array(await service.list()))

    async def snapshot(_: EmptyParams) -> orjson.Fragment:
        revision, views = await service.snapshot()
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
