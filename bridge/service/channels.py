"""Binds llm-config's channels to an ``LlmConfigService``: the collection binding plus three of its own.

llm-config is the first collection (:data:`bridge.llm_config.LLM_CONFIG`): its six CRUD
channels and ``llm-config:changed`` are served by the collection binding
(:class:`bridge.collection.channels.CollectionChannels`), as any collection's, with its
reads on the hot path (a hit is one cache lookup and one :class:`JsonMemo` lookup).
``llm-config:initialize``, ``llm-config:refresh-cache`` and ``llm-config:test`` are
registered beside them here.
"""

from __future__ import annotations

from bridge import api
from bridge.collection.channels import CollectionChannels, bind
from bridge.collection.memo import JsonMemo
from bridge.llm_config import LLM_CONFIG
from bridge.models import (
    EmptyParams,
    InitializeResult,
    LlmConfigTestParams,
    LlmConfigTestResult,
    RefreshResult,
)
from bridge.service.llm_config import LlmConfigService
from bridge.service.tester import LlmConfigTester

__all__ = ["JsonMemo", "register_llm_config_channels"]


def register_llm_config_channels(
    registry: api.Registry, service: LlmConfigService, tester: LlmConfigTester | None = None
) -> CollectionChannels:
    """Serve every ``llm-config:*`` channel and declare ``llm-config:changed`` on ``registry``.

    Args:
        registry: where the channels are added.
        service: serves the CRUD and cache channels.
        tester: serves ``llm-config:test``; None → an enabled ``LlmConfigTester(service)``.

    Returns:
        The collection binding of the CRUD channels, attached to ``service``. llm-config
        is not among :attr:`bridge.api.Registry.collections` (those are the application's,
        stored in ``collections.db``; llm-config keeps ``bridge.db``).

    Raises:
        ValueError: one of the names is already registered.
    """
    tester = tester or LlmConfigTester(service)
    binding = bind(LLM_CONFIG, registry)
    binding.attach(service)

    async def initialize(_: EmptyParams) -> InitializeResult:
        return InitializeResult(count=await service.initialize())

    async def refresh(_: EmptyParams) -> RefreshResult:
        count, revision = await service.refresh()
        return RefreshResult(count=count, revision=revision)

    async def test(params: LlmConfigTestParams, progress: api.Progress) -> LlmConfigTestResult:
        # Long-running: the RPC layer runs it beside later requests and cancels its task on
        # `$/cancelRequest` (the outbound request is aborted). The tester's progress
        # messages are fixed strings ("connecting", "listing"): never the key or a URL.
        result = await tester.test(
            config_id=params.id, draft=params.config, timeout_ms=params.timeout_ms, progress=progress.report
        )
        progress.end("ok" if result.ok else "failed")
        return result

    registry.add(api.LLM_CONFIG_INITIALIZE, initialize)
    registry.add(api.LLM_CONFIG_REFRESH_CACHE, refresh)
    registry.add(api.LLM_CONFIG_TEST, test)
    return binding
