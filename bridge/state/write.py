"""The write discipline: one task per write, shielded from its caller; one translation of failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import structlog

from bridge.errors import BridgeError, ConfigOperationFailedError

T = TypeVar("T")
log = structlog.get_logger(__name__)


async def shielded(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` (a store write and its cache update) in a task of its own; return its result.

    The task is shielded from the caller's cancellation: a caller cancelled while its
    write runs never leaves cache and store apart, and the write's events are still
    published (DESIGN §4). The caller then gets CancelledError; the task's own outcome
    is consumed (no "exception was never retrieved").

    Raises:
        Whatever ``work`` raises, when the caller is still waiting for it.
    """
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Consume the outcome of a write whose caller was cancelled (no 'never retrieved')."""
    if not task.cancelled():
        task.exception()


async def committed(
    write: Awaitable[T],
    event: str,
    *,
    refusals: tuple[type[BaseException], ...] = (BridgeError,),
    **context: str,
) -> T:
    """Await one store write; a failure that is not a refusal becomes 5000 (nothing changed).

    Args:
        write: the store call (it commits or changes nothing).
        event: the log event of an unexpected failure (logged with its traceback).
        refusals: exceptions that are answers (not found, version conflict, …), re-raised.
        context: fields added to the log line.

    Raises:
        ConfigOperationFailedError (5000): the store failed (the cause goes to the log only).
        Any of ``refusals``, as raised by the store.
    """
    try:
        return await write
    except refusals:
        raise
    except Exception:
        log.exception(event, **context)
        raise ConfigOperationFailedError from None
