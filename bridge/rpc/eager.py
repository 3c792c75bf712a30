"""Run a coroutine inline until it first suspends; only then give it a task.

Most frames (every cache read, every error) are answered without ever suspending, so the
connection answers them inside ``data_received``: no task, no extra turn of the event
loop. This is what Python 3.12's eager task factory does, except that no task exists
while the coroutine runs inline (``asyncio.current_task()`` is None there): the
dispatcher therefore only lets handlers registered ``inline`` start before a task exists
and makes every other handler start after a suspension (see ``Registry.add``).

The coroutine is driven through its public protocol (``send``/``throw``, PEP 342/492).
When it suspends, the value it yielded (a future, or None for a bare yield such as
``asyncio.sleep(0)``) is handed on unchanged to the task that takes over, so the task
waits on exactly what the coroutine waits on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Resumed(Generic[T]):
    """An awaitable that carries on a coroutine suspended at ``yielded``."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, T], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, T]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # cancellation too is forwarded to the coroutine
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]


async def _carry_on(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    return await _Resumed(coro, yielded)


def carry_on(coro: Coroutine[Any, Any, T], yielded: Any) -> Coroutine[Any, Any, T]:
    """Carry on ``coro``, which suspended by yielding ``yielded`` when it was sent ``None``.

    Awaiting the returned coroutine waits on what ``coro`` waits on and returns (or
    raises) what it does; cancellation is forwarded to ``coro``.
    """
    return _carry_on(coro, yielded)


def start_eagerly(coro: Coroutine[Any, Any, T]) -> tuple[bool, T | asyncio.Task[T]]:
    """Run ``coro`` now until it returns or first suspends.

    Returns:
        ``(True, result)`` when it returned without suspending (no task was created);
        ``(False, task)`` when it suspended: the task carries it on to the end.

    Raises:
        Exception: whatever ``coro`` raised before suspending.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, asyncio.get_running_loop().create_task(_carry_on(coro, yielded))
