"""The shared state core (``bridge.state``): cache, quarantine, feed step, follower, writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge import state
from bridge.errors import ConfigNotFoundError, ConfigOperationFailedError
from bridge.state.follow import FIRST_RETRY_S, LAST_RETRY_S

TIMEOUT_S = 5.0


@dataclass
class Entry:
    view: str
    seq: int


def seq(entry: Entry) -> int:
    return entry.seq


# ---- cache -----------------------------------------------------------------------------------


def test_views_are_one_shared_tuple_until_the_cache_changes() -> None:
    cache: state.Cache[Entry] = state.Cache([("a", Entry("A", 1))])
    first = cache.views()
    assert first == ("A",)
    assert cache.views() is first
    cache["b"] = Entry("B", 2)
    second = cache.views()
    assert second == ("A", "B")
    assert cache.views() is second
    assert cache.pop("b").view == "B"
    assert cache.views() == ("A",)
    cache["c"] = Entry("C", 3)
    assert cache.views() == ("A", "C")
    del cache["a"]
    assert cache.views() == ("C",)
    cache.clear()
    assert cache.views() == ()


def test_a_new_entry_goes_last_unless_it_was_created_earlier() -> None:
    cache: state.Cache[Entry] = state.Cache()
    cache.place("b", Entry("B", 2), seq)
    cache.place("c", Entry("C", 3), seq)
    assert cache.views() == ("B", "C")
    cache.place("a", Entry("A", 1), seq)  # another process created it before the others
    assert cache.views() == ("A", "B", "C")
    cache.place("b", Entry("B2", 9), seq)  # an update keeps its place
    assert cache.views() == ("A", "B2", "C")


# ---- quarantine ------------------------------------------------------------------------------


def test_a_hold_is_logged_once_per_reason_and_security_reasons_also_as_security_events() -> None:
    held = state.Quarantine("item_quarantined", {"CIPHERTEXT_AUTH_FAILED"}, collection="c")
    with capture_logs() as logs:
        held.hold("x", "name.INVALID_LENGTH")
        held.hold("x", "name.INVALID_LENGTH")
        held.hold("y\udcff", "CIPHERTEXT_AUTH_FAILED")
    assert [(e["event"], e["id"], e.get("reason"), e.get("kind"), e["collection"]) for e in logs] == [
        ("item_quarantined", "x", "name.INVALID_LENGTH", None, "c"),
        ("security_event", "y\\udcff", None, "CIPHERTEXT_AUTH_FAILED", "c"),
        ("item_quarantined", "y\\udcff", "CIPHERTEXT_AUTH_FAILED", None, "c"),
    ]
    assert [e["log_level"] for e in logs] == ["warning", "error", "warning"]
    assert held.reasons() == {"x": "name.INVALID_LENGTH", "y\udcff": "CIPHERTEXT_AUTH_FAILED"}
    assert held.keep_only({"x"}) == ["y\udcff"]
    assert held.release("x") is True
    assert held.release("x") is False
    assert len(held) == 0


def test_printable_id_escapes_what_is_not_utf8_and_shows_other_types_by_repr() -> None:
    assert state.printable_id("ok") == "ok"
    assert state.printable_id("a\udc80") == "a\\udc80"
    assert state.printable_id(b"raw") == "b'raw'"


def test_utc_now_is_iso_8601_utc_with_milliseconds() -> None:
    now = state.utc_now()
    assert len(now) == 24
    assert now.endswith("Z")
    assert now[19] == "."


# ---- the feed step ---------------------------------------------------------------------------


@dataclass
class Change:
    revision: int
    id: str
    undecodable: bool = False


@dataclass
class Feed:
    revision: int
    changes: list[Change] | None


async def run_feed(feed: Feed, since: int, bad: str | None = None) -> tuple[int | None, list[str], int]:
    applied: list[str] = []
    reloads = 0

    async def reload() -> None:
        nonlocal reloads
        reloads += 1

    def check(change: Change) -> tuple[str | None, str]:
        return ("REJECTED" if change.id == bad else None), change.id.upper()

    revision = await state.apply_feed(
        feed, since, check=check, apply=lambda _, p: applied.append(p), reload=reload
    )
    return revision, applied, reloads


async def test_a_feed_is_applied_in_order_skipping_what_the_cache_already_holds() -> None:
    feed = Feed(5, [Change(3, "a"), Change(4, "b"), Change(5, "c")])
    assert await run_feed(feed, 3) == (5, ["B", "C"], 0)


@pytest.mark.parametrize(
    ("feed", "bad"),
    [
        (Feed(2, None), None),
        (Feed(2, [Change(1, "a"), Change(2, "b", undecodable=True)]), None),
        (Feed(2, [Change(1, "a"), Change(2, "b")]), "b"),
        # The store went back below the cache (counter and log removed by another program).
        (Feed(2, [Change(2, "c")]), "went-back"),
    ],
)
async def test_a_feed_the_log_cannot_vouch_for_is_a_reload_and_applies_nothing(
    feed: Feed, bad: str | None
) -> None:
    since = 3 if bad == "went-back" else 0
    with capture_logs():
        assert await run_feed(feed, since, bad) == (None, [], 1)


# ---- the follower ----------------------------------------------------------------------------


async def test_the_follower_backs_off_after_a_failure_and_recovers_with_a_full_reload() -> None:
    steps: list[bool] = []
    done = asyncio.Event()
    schedules: list[tuple[float, float]] = []
    closed = False

    async def wait() -> None:
        await asyncio.sleep(0)

    async def step(recovering: bool) -> None:
        nonlocal closed
        steps.append(recovering)
        if len(steps) <= 2:
            raise OSError("store unreadable")
        if len(steps) == 4:
            closed = True
            done.set()

    def backoff(base_s: float, cap_s: float) -> Any:
        schedules.append((base_s, cap_s))
        return lambda: 0.0

    with capture_logs() as logs:
        await asyncio.wait_for(
            state.follow(wait, step, lambda: closed, backoff, "x_follow", c="x"),
            TIMEOUT_S,
        )
    assert steps == [False, True, True, False]
    assert schedules == [(FIRST_RETRY_S, LAST_RETRY_S)]  # one schedule for the run of failures
    assert [(e["event"], e["c"]) for e in logs] == [("x_follow_failed", "x")] * 2 + [
        ("x_follow_recovered", "x")
    ]


# ---- writes ----------------------------------------------------------------------------------


async def test_a_shielded_write_finishes_when_its_caller_is_cancelled() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def write() -> str:
        started.set()
        await release.wait()
        finished.append("written")
        return "written"

    caller = asyncio.ensure_future(state.shielded(write()))
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert finished == ["written"]


async def test_committed_passes_refusals_and_turns_other_failures_into_5000() -> None:
    async def refused() -> None:
        raise ConfigNotFoundError("x")

    async def broken() -> None:
        raise OSError("disk")

    with pytest.raises(ConfigNotFoundError):
        await state.committed(refused(), "write_failed")
    with capture_logs() as logs, pytest.raises(ConfigOperationFailedError) as raised:
        await state.committed(broken(), "write_failed", collection="c")
    assert raised.value.__cause__ is None
    assert [(e["event"], e["collection"]) for e in logs] == [("write_failed", "c")]


async def test_write_through_applies_after_the_commit_and_a_failed_apply_does_not_undo_the_write() -> None:
    lock = asyncio.Lock()
    applied: list[str] = []

    async def store() -> str:
        assert lock.locked()  # the store call starts under the write lock
        return "feed"

    async def apply(feed: str) -> None:
        applied.append(feed)

    async def broken_apply(_: str) -> None:
        raise OSError("reload failed")

    assert await state.write_through(lock, store, apply, failed="write_failed") == "feed"
    assert applied == ["feed"]
    with capture_logs() as logs:
        assert await state.write_through(lock, store, broken_apply, failed="write_failed", c="x") == "feed"
    assert [(e["event"], e["c"]) for e in logs] == [("cache_apply_failed", "x")]


async def test_write_through_of_a_failed_store_call_is_5000_and_applies_nothing() -> None:
    applied: list[object] = []

    async def store() -> None:
        raise OSError("disk")

    async def apply(feed: object) -> None:
        applied.append(feed)

    with capture_logs() as logs, pytest.raises(ConfigOperationFailedError):
        await state.write_through(asyncio.Lock(), store, apply, failed="write_failed")
    assert applied == []
    assert [e["event"] for e in logs] == ["write_failed"]
