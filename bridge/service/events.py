"""``EventBus``: synchronous in-process publish/subscribe for change events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

E = TypeVar("E")


class EventBus(Generic[E]):
    """Calls every subscriber, in subscription order, synchronously on ``publish``.

    Synchronous delivery is what lets the RPC layer queue a notification on every
    connection before the response to the request that caused it (DESIGN §5). A failing
    subscriber is logged and does not stop the others.

    A subscriber whose part is asynchronous (clearing references to a deleted item) hands
    its task to :meth:`follow_up`; the publishing service awaits :meth:`settle` before it
    answers its caller, so the work an event causes in this process, and its own
    notifications, come before the response too.
    """

    def __init__(self) -> None:
        """Start with no subscribers."""
        self._subscribers: list[Callable[[E], None]] = []
        self._follow_ups: set[asyncio.Task[Any]] = set()

    def subscribe(self, callback: Callable[[E], None]) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it (idempotent)."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: E) -> None:
        """Deliver ``event`` to every subscriber now."""
        for callback in tuple(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("subscriber_failed", subscriber=getattr(callback, "__qualname__", "?"))

    def follow_up(self, task: asyncio.Task[Any]) -> None:
        """Make :meth:`settle` wait for ``task`` (started by a subscriber because of an event)."""
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    async def settle(self) -> None:
        """Wait until every follow-up handed in so far is done (their errors are their owners' to log)."""
        pending = tuple(self._follow_ups)
        if pending:
            await asyncio.wait(pending)
