"""The follower: applies other processes' commits as they are noticed, and never stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

FIRST_RETRY_S = 0.1
"""Ceiling of the first delay after a failure, in seconds (it doubles per failure)."""
LAST_RETRY_S = 5.0
"""Largest ceiling of a delay between retries, in seconds."""


async def follow(
    wait: Callable[[], Awaitable[object]],
    step: Callable[[bool], Awaitable[object]],
    closed: Callable[[], bool],
    backoff: Callable[[float, float], Callable[[], float]],
    events: str,
    **context: str,
) -> None:
    """Run ``step`` each time ``wait`` returns, until ``closed()``; a failure is retried.

    A failure of either (the store unreadable, the change feed broken) is logged as
    ``<events>_failed`` with its traceback, then retried after a delay from ``backoff`` (capped
    exponential with full jitter, :func:`bridge.backoff.backoff_delays`, from
    :data:`FIRST_RETRY_S` to :data:`LAST_RETRY_S`) without waiting for a change; the retry is
    ``step(True)``, which reloads everything (the table, not the log, is the truth). The
    first step that succeeds after failures logs ``<events>_recovered``. A degraded service (failed
    load) makes ``wait`` return at once so that ``step`` retries its load.

    Args:
        wait: returns when the store may have moved (a change notice, or a poll that saw
            one); at once while the service is degraded.
        step: ``step(recovering)`` catches up with the store (``recovering``: with a full
            reload).
        closed: True once the service is closed (the loop ends).
        backoff: ``backoff(base_s, cap_s)`` returns successive delays in seconds.
        events: the prefix of the log events: ``store_follow`` logs ``store_follow_failed``
            and ``store_follow_recovered``.
        context: fields added to every log line.

    Raises:
        CancelledError: the task was cancelled (how :meth:`close` stops it).
    """
    failed, recovered = f"{events}_failed", f"{events}_recovered"
    delay: Callable[[], float] | None = None
    while not closed():
        try:
            if delay is None:
                await wait()
            await step(delay is not None)
            if delay is not None:
                log.info(recovered, **context)
            delay = None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(failed, **context)
            delay = delay or backoff(FIRST_RETRY_S, LAST_RETRY_S)
            await asyncio.sleep(delay())
