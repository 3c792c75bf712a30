"""The one state service (``bridge.state.service.StateService``): both services are it plus a policy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from bridge.collection.service import CollectionService
from bridge.service.events import EventBus
from bridge.service.llm_config import LlmConfigService
from bridge.state import Quarantine, StateService
from bridge.state.service import DEFERRED, Deferred

FLOW = (
    "peek",
    "peek_views",
    "holds",
    "_first_load",
    "_start_following",
    "_follow_step",
    "_catch_up",
    "_apply",
    "_apply_change",
    "_apply_row",
    "_replace_all",
    "_hold",
    "_release",
    "_apply_written",
    "_stop",
)
"""What is written once: the cache discipline, write flow, lifecycle and quarantine handling."""


@pytest.mark.parametrize("service", [CollectionService, LlmConfigService])
def test_both_services_are_the_state_service_and_write_no_flow_of_their_own(service: type) -> None:
    assert issubclass(service, StateService)
    overridden = [name for name in FLOW if name in vars(service)]
    assert overridden == []
    assert service.peek is StateService.peek  # the read hot path: one dict lookup


# ---- a policy of the smallest kind, over a list of rows ------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    value: str
    revision: int = 0


@dataclass
class Entry:
    row: Row

    @property
    def view(self) -> str:
        return self.row.value


@dataclass(frozen=True)
class Change:
    """A log entry: the row after a write (None: deleted); every entry decodes here."""

    revision: int
    id: str
    row: Row | None
    undecodable: ClassVar[bool] = False


@dataclass(frozen=True)
class Feed:
    revision: int
    changes: list[Change] | None


@dataclass
class Memory(StateService[Entry]):
    """Rows whose value is ``"bad"`` are held; ``"later"`` is deferred; a value is a unique key."""

    rows: dict[str, Row] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    events: EventBus[tuple[str, str, int, Any]] = field(default_factory=EventBus)
    removed: EventBus[str] = field(default_factory=EventBus)

    def __post_init__(self) -> None:
        super().__init__(
            Quarantine("row_quarantined", ()), self.events, self.removed, watch=False, task_name="t"
        )
        self.keys: dict[str, str] = {}

    async def _load(self) -> tuple[int, list[Row]]:
        return len(self.log), list(self.rows.values())

    async def _changes_since(self, revision: int) -> Feed:
        return Feed(len(self.log), [c for c in self.log if c.revision > revision])

    def _change(self, change: Change) -> tuple[str, Row | None]:
        return change.id, change.row

    def _verdict(
        self,
        row: Row,
        prepared: Any = None,  # noqa: ARG002 - the hook's signature
    ) -> tuple[Entry | Deferred | None, str | None]:
        if row.value == "bad":
            return None, "value.INVALID"
        if row.value == "later":
            return DEFERRED, None
        return Entry(row), None

    def _same(self, entry: Entry, row: Row) -> bool:
        return entry.row == row

    def _event(self, kind: str, row_id: str, revision: int, view: Any = None) -> tuple[str, str, int, Any]:
        return kind, row_id, revision, view

    def _claim(self, row_id: str, old: Entry | None, entry: Entry | None) -> bool:
        if old is not None and self.keys.get(old.row.value) == row_id:
            del self.keys[old.row.value]
        if entry is None:
            return True
        if self.keys.get(entry.row.value, row_id) != row_id:
            return False
        self.keys[entry.row.value] = row_id
        return True

    async def put(self, row_id: str, value: str | None) -> Feed:
        """A write: the store changes, then the service applies the feed since its revision."""

        async def write(since: int) -> Feed:
            revision = len(self.log) + 1
            row = None if value is None else Row(row_id, value, revision)
            if row is None:
                self.rows.pop(row_id, None)
            else:
                self.rows[row_id] = row
            self.log.append(Change(revision, row_id, row))
            return await self._changes_since(since)

        return await self._write(write)


def views_of(service: Memory) -> tuple[int, tuple[Any, ...]]:
    shown = service.peek_views()
    assert shown is not None
    return shown


async def test_the_flow_serves_holds_defers_and_removes_through_the_policy() -> None:
    service = Memory()
    events: list[tuple[str, str, int, Any]] = []
    removed: list[str] = []
    service.events.subscribe(events.append)
    service.removed.subscribe(removed.append)
    assert service.peek("a") is None  # not loaded
    await service._first_load()
    await service.put("a", "one")
    await service.put("b", "two")
    assert views_of(service) == (2, ("one", "two"))
    assert views_of(service)[1] is views_of(service)[1]  # the shared tuple
    await service.put("a", "bad")  # fails its verdict: held, sent as deleted
    await service.put("c", "two")  # b holds the key: NAME_CONFLICT
    await service.put("b", "later")  # deferred: the cache keeps its previous state
    assert service.peek("a") is None
    assert service.holds("a")
    assert service._quarantine.reasons() == {"a": "value.INVALID", "c": "NAME_CONFLICT"}
    assert service.peek("b") == "two"
    await service.put("a", None)  # a held row deleted: removed, no event
    assert not service.holds("a")
    assert events == [
        ("created", "a", 1, "one"),
        ("created", "b", 2, "two"),
        ("deleted", "a", 3, None),
    ]
    assert removed == ["a"]


async def test_a_reload_announces_the_differences_and_keeps_the_views_tuple_when_nothing_changed() -> None:
    service = Memory()
    await service._first_load()
    await service.put("a", "one")
    await service.put("b", "two")
    views = views_of(service)[1]
    events: list[tuple[str, str, int, Any]] = []
    service.events.subscribe(events.append)
    async with service._lock:
        await service._reload()
    assert views_of(service)[1] is views
    assert events == []
    service.rows.pop("a")
    service.rows["b"] = Row("b", "three", 7)
    async with service._lock:
        await service._reload()
    assert events == [("deleted", "a", 2, None), ("updated", "b", 2, "three")]


async def test_a_write_whose_caller_is_cancelled_still_reaches_the_cache() -> None:
    service = Memory()
    await service._first_load()
    task = asyncio.ensure_future(service.put("a", "one"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(5):
        await asyncio.sleep(0)
    assert service.peek("a") == "one"
