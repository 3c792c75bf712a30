"""The write discipline: store first, cache after commit, in one task shielded from its caller.

:func:`write_through` is the whole of it; :func:`shielded` and :func:`committed` are its
parts, for a write that does more under its lock (a collection's update retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog

from bridge.errors import BridgeError, ConfigOperationFailedError

T = TypeVar("T")
F = TypeVar("F")
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


async def write_through(
    lock: asyncio.Lock,
    write: Callable[[], Awaitable[F]],
    apply: Callable[[F], Awaitable[object]],
    *,
    failed: str,
    refusals: tuple[type[BaseException], ...] = (BridgeError,),
    **context: str,
) -> F:
    """Under ``lock``: commit ``write()``, then ``apply`` what it returns to the cache; return it.

    Store first, cache after commit (DESIGN §4), in a task of its own shielded from the
    caller's cancellation (:func:`shielded`). ``write`` is called under the lock, so it may
    read the revision the cache reflects. A failure of ``apply`` after the commit is
    logged (``cache_apply_failed``) and not raised: the write is done. (The state service's
    ``apply`` recovers on its own: it reloads at once, else wakes its follower to reload;
    :meth:`bridge.state.service.StateService._apply_written`.)

    Args:
        lock: the service's write lock (one write or catch-up at a time).
        write: starts the store call (see :func:`committed`).
        apply: applies the outcome to the cache and publishes its events.
        failed: the log event of an unexpected store failure.
        refusals: exceptions that are answers, re-raised as they are.
        context: fields added to the log lines.

    Raises:
        ConfigOperationFailedError (5000): the store failed (nothing changed).
        Any of ``refusals``.
    """

    async def locked() -> F:
        async with lock:
            outcome = await committed(write(), failed, refusals=refusals, **context)
            try:
                await apply(outcome)
            except Exception:
                # Committed: the write is done. The follower reloads what could not be applied.
                log.exception("cache_apply_failed", **context)
            return outcome

    return await shielded(locked())
