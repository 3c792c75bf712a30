"""Binds the ``llm-config:*`` channels of :mod:`bridge.api` to an ``LlmConfigService``.

The service returns models; this binding turns them into wire JSON. The reads
(``read``, ``list``, ``snapshot``) are the hot path: each view's JSON is built once by its
own pydantic serializer and kept in a :class:`JsonMemo` until the config changes (the
service returns the same view object while it is unchanged), then spliced into every
reply as an ``orjson.Fragment``.
"""

from __future__ import annotations

import orjson

from bridge import api
from bridge.collection.memo import JsonMemo
from bridge.models import (
    CreateParams,
    DeleteParams,
    DeleteResult,
    EmptyParams,
    IdParams,
    InitializeResult,
    LlmConfigTestParams,
    LlmConfigTestResult,
    LlmConfigView,
    RefreshResult,
    UpdateParams,
)
from bridge.service.llm_config import LlmConfigService
from bridge.service.tester import LlmConfigTester

__all__ = ["JsonMemo", "register_llm_config_channels"]


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
