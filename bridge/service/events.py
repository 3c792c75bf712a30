"""``EventBus``: synchronous in-process publish/subscribe for change events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

E = TypeVar("E")


class EventBus(Generic[E]):
    """Calls every subscriber, in subscription order, synchronously on ``publish``.

    Synchronous delivery is what lets the RPC layer queue a notification on every
    connection before the response to the request that caused it (DESIGN §5). A failing
    subscriber is logged and does not stop the others.
    """

    def __init__(self) -> None:
        """Start with no subscribers."""
        self._subscribers: list[Callable[[E], None]] = []

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
