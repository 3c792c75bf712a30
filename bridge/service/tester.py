"""``LlmConfigTester``: the service behind ``llm-config:test`` (a saved config or a draft).

A saved config is tested with its stored key, decrypted in-process; a draft (validated
with the create rules) is never saved. Tests can be bounded process-wide (a semaphore)
and switched off entirely (``bridge serve --no-outbound``). The HTTP work and its
guarantees (the key never leaves in anything but the provider's headers) are in
:mod:`bridge.service.provider_check`, imported on the first test.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from bridge.errors import (
    ConfigNotFoundError,
    ConfigOperationFailedError,
    FieldError,
    OutboundDisabledError,
    ValidationError,
)
from bridge.models import (
    TEST_TIMEOUT_MS_DEFAULT,
    TEST_TIMEOUT_MS_MAX,
    LlmConfigInput,
    LlmConfigTestResult,
    Provider,
)
from bridge.service.llm_config import LlmConfigService
from bridge.service.probe import MAX_BODY_BYTES, ProgressCallback

log = structlog.get_logger(__name__)

_SAVED_READ_ATTEMPTS: Final = 5
MAX_CONCURRENT_DEFAULT: Final = 4
"""Most tests running at once per bridge process unless configured otherwise."""


class LlmConfigTester:
    """Serves ``llm-config:test``: a saved config or a draft, checked against its provider.

    The check is :func:`bridge.service.provider_check.check_provider`.

    Args:
        configs: the service holding saved configs (keys read in-process).
        enabled: False → every test raises ``OutboundDisabledError`` (4003) without any
            network traffic (``bridge serve --no-outbound``).
        max_concurrent: most tests running at once in this process (others wait, within
            their own timeout); None → unbounded.
        max_body_bytes: largest model-list body read, in bytes.
    """

    def __init__(
        self,
        configs: LlmConfigService,
        *,
        enabled: bool = True,
        max_concurrent: int | None = MAX_CONCURRENT_DEFAULT,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        """Configure the tester; nothing is contacted until :meth:`test`."""
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1 (or None)")
        self._configs = configs
        self.enabled = enabled
        self._limiter = None if max_concurrent is None else asyncio.Semaphore(max_concurrent)
        self._max_body_bytes = max_body_bytes

    async def test(
        self,
        *,
        config_id: str | None = None,
        draft: LlmConfigInput | None = None,
        timeout_ms: int = TEST_TIMEOUT_MS_DEFAULT,
        progress: ProgressCallback | None = None,
    ) -> LlmConfigTestResult:
        """Test a saved config (``config_id``) or a draft (``draft``, never saved).

        Args:
            config_id: id of a saved config; its key is decrypted in-process.
            draft: an unsaved config (already validated with the create rules).
            timeout_ms: bound of the whole test, 1 to 60,000 milliseconds.
            progress: see :data:`bridge.service.probe.ProgressCallback`.

        Returns:
            The :func:`~bridge.service.provider_check.check_provider` result.

        Raises:
            OutboundDisabledError (4003): outbound calls are disabled.
            ValidationError (-32602): not exactly one of ``config_id`` and ``draft``, or
                ``timeout_ms`` out of range.
            ConfigNotFoundError (4004): no saved config has ``config_id``.
            ConfigOperationFailedError (5000): the stored key does not decrypt, or the
                config kept changing while it was read.
            ServiceUnavailableError (5003): the service is closed.
            asyncio.CancelledError: the task was cancelled; the request was aborted.
        """
        if not self.enabled:
            raise OutboundDisabledError
        _check_arguments(config_id, draft, timeout_ms)
        if config_id is not None:
            provider, base_url, api_key, use_auth_header = await self._saved(config_id)
        else:
            assert draft is not None
            provider, base_url, api_key = draft.provider, draft.base_url, draft.api_key
            use_auth_header = draft.use_auth_header
        source = "saved" if config_id is not None else "draft"
        # Imported here, not at start-up: httpx and its dependencies import in ≈ 140 ms
        # (python -X importtime, alone), which a sidecar that never tests would pay.
        from bridge.service.provider_check import check_provider  # noqa: PLC0415

        try:
            result = await check_provider(
                provider,
                base_url,
                api_key,
                use_auth_header=use_auth_header,
                timeout_ms=timeout_ms,
                progress=progress,
                limiter=self._limiter,
                max_body_bytes=self._max_body_bytes,
            )
        except asyncio.CancelledError:
            log.info("llm_config_test_cancelled", provider=provider.value, source=source, id=config_id)
            raise
        error = result.error
        log.info(
            "llm_config_tested",
            provider=provider.value,
            source=source,
            id=config_id,
            ok=result.ok,
            kind=None if error is None else error.kind,
            status=None if error is None else error.status,
            latency_ms=result.latency_ms,
        )
        return result

    async def _saved(self, config_id: str) -> tuple[Provider, str | None, str, bool]:
        """The destination and key of a saved config, read from one version of it.

        The key is read between two reads of the view; an update in between (which may
        move the destination *and* the key) shows as a new version and the read is
        repeated, so a key is never sent to the destination of another version.
        """
        for _ in range(_SAVED_READ_ATTEMPTS):
            before = await self._configs.read(config_id)
            if before is None:
                raise ConfigNotFoundError(config_id)
            api_key = await self._configs.get_api_key(config_id)
            after = await self._configs.read(config_id)
            if api_key is None or after is None:
                raise ConfigNotFoundError(config_id)
            if after.version == before.version:
                return after.provider, after.base_url, api_key, after.use_auth_header
        raise ConfigOperationFailedError  # updated faster than it can be read: give up


def _check_arguments(config_id: str | None, draft: LlmConfigInput | None, timeout_ms: int) -> None:
    """The rules of ``LlmConfigTestParams``, for in-process callers (the wire checks them first)."""
    errors: list[FieldError] = []
    if config_id is None and draft is None:
        errors.append(FieldError("id", "REQUIRED", "is required unless config is given"))
    if config_id is not None and draft is not None:
        errors.append(FieldError("config", "INVALID_FORMAT", "must not be given together with id"))
    if not 1 <= timeout_ms <= TEST_TIMEOUT_MS_MAX:
        errors.append(FieldError("timeoutMs", "INVALID_FORMAT", "is out of range"))
    if errors:
        raise ValidationError(errors)
