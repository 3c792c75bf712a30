"""``StateService``: the one flow of a served state (DESIGN §3–§4), whatever its store and rows.

Both state services are this class plus a policy: :class:`bridge.collection.service.CollectionService`
(every collection) and :class:`bridge.service.llm_config.LlmConfigService` (llm-config, the
first collection, over its own ``configs`` table). Written once here:

- the cache discipline: an O(1) write-through :class:`~bridge.state.cache.Cache` whose views
  are one shared tuple until it changes; reads never touch the store;
- the write flow: lock → store → apply → publish (:func:`~bridge.state.write.write_through`),
  then the policy's follow-ups (:meth:`StateService._after_apply`);
- the lifecycle: first load (degraded on failure), follow other processes' commits
  (:func:`~bridge.state.follow.follow`), catch up with the change feed
  (:func:`~bridge.state.feed.apply_feed`) or reload the table, recover a failed load;
- the quarantine: a stored row is checked where it enters the cache; a bad one is held
  (:class:`~bridge.state.quarantine.Quarantine`), never served, sent as ``deleted`` if it was.

What differs is the policy's, as hooks a subclass implements: how the store is read
(:meth:`~StateService._load`, :meth:`~StateService._changes_since`, :meth:`~StateService._wait`),
the verdict on a row (:meth:`~StateService._verdict`), unique keys (:meth:`~StateService._claim`),
what a hold reserves (:meth:`~StateService._on_hold`), creation order
(:meth:`~StateService._place`), the event model (:meth:`~StateService._event`), and the
order and revisions of a reload's events (:meth:`~StateService._announce`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import structlog

from bridge.backoff import backoff_delays
from bridge.errors import BridgeError
from bridge.state.cache import Cache, Viewed
from bridge.state.feed import Feed, apply_feed
from bridge.state.follow import follow
from bridge.state.quarantine import Quarantine
from bridge.state.write import write_through

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Viewed[Any])
F = TypeVar("F")
T = TypeVar("T")

CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"
"""The kinds of change an event reports (``ChangeType`` values)."""
NAME_CONFLICT = "NAME_CONFLICT"
"""Quarantine reason: a unique key another served row holds (the row served first keeps it)."""
INVALID = "INVALID_ROW"
"""Quarantine reason when a verdict gives none."""


Differences = builtins.list[tuple[int, str, str, E]]
"""A reload's created/updated rows: ``(row revision, kind, id, entry)`` in store order."""


class Row(Protocol):
    """A stored row as the store returned it: untrusted but for its ``id``."""

    @property
    def id(self) -> str:
        """The row's id."""
        ...


class Bus(Protocol):
    """Where events go (:class:`bridge.service.events.EventBus`)."""

    def publish(self, event: Any) -> None:
        """Deliver ``event`` to every subscriber."""
        ...


class Deferred(Enum):
    """A verdict of :meth:`StateService._verdict`: valid, but not served yet (a repair is due)."""

    DEFERRED = "deferred"


DEFERRED = Deferred.DEFERRED


Verdict = Callable[[Any, Any], tuple[Any, "str | None"]]
"""``verdict(row, prepared)``: a stored row's entry, :data:`DEFERRED`, or ``(None, reason)``."""
Claim = Callable[[str, Any, Any], bool]
"""``claim(row_id, old entry or None, new entry or None)``: move unique keys; False when taken."""


def admit(
    row_id: str, row: Any, previous: Any, verdict: Verdict, claim: Claim, *, prepared: Any = None
) -> tuple[Any, str | None]:
    """The fate of one stored row where it enters a cache: the one rule of load, reload and feed.

    The row's verdict first (the policy's rules), then its unique keys: a valid row whose
    key another served row holds is ``NAME_CONFLICT`` (the row admitted first, in creation
    order on a load, keeps it). :class:`StateService` admits every row through this, and
    ``bridge doctor`` runs it (through :func:`classify`) on the rows it reads.

    Args:
        row_id: the row's id (a feed entry's, for a change).
        row: the stored row (untrusted).
        previous: the entry the cache holds for ``row.id``, or None.
        verdict: the policy's verdict (``StateService._verdict``).
        claim: the policy's unique-key claim (``StateService._claim``); it has moved the
            keys when it returns True.
        prepared: what the verdict may reuse (a feed entry's check).

    Returns:
        ``(entry, None)`` to serve, ``(DEFERRED, None)`` for a valid row not served before
        a repair, or ``(None, reason code)`` to quarantine.
    """
    entry, reason = verdict(row, prepared)
    if isinstance(entry, Deferred):
        return entry, None
    if entry is not None and not claim(row_id, previous, entry):
        return None, NAME_CONFLICT
    if entry is None:
        return None, reason or INVALID
    return entry, None


@dataclass(frozen=True, slots=True)
class Classification:
    """What a first load makes of stored rows (:func:`classify`); ids as stored.

    Attributes:
        served: ids of the rows served, in row order.
        held: id → quarantine reason code, in row order.
        deferred: ids of valid rows held back until a repair rewrites them (llm-config's
            stale derived fields), in row order.
    """

    served: builtins.list[str]
    held: dict[str, str]
    deferred: builtins.list[str]


def classify(rows: Iterable[Row], verdict: Verdict, claim: Claim) -> Classification:
    """Admit ``rows`` (in creation order) into an empty cache with :func:`admit`, and say what became of each.

    The verdict on a first load, without a cache or a store: what ``bridge doctor`` reports.
    ``claim`` must start with no key claimed.
    """
    served: builtins.list[str] = []
    held: dict[str, str] = {}
    deferred: builtins.list[str] = []
    for row in rows:
        entry, reason = admit(row.id, row, None, verdict, claim)
        if isinstance(entry, Deferred):
            deferred.append(row.id)
        elif entry is None:
            held[row.id] = reason or INVALID
        else:
            served.append(row.id)
    return Classification(served, held, deferred)


class StateService(Generic[E]):
    """The cache, write flow, lifecycle and quarantine of one served state.

    Args:
        quarantine: the held rows (its log event names the state: ``config_quarantined``,
            ``item_quarantined``).
        events: the bus of change events.
        removed: the bus of ids whose row left the store.
        watch: follow other processes' commits.
        task_name: the name of the follower's task.
        context: fields added to the log lines (e.g. ``collection="webhook"``).

    Class attributes name the log events (a subclass sets its own).
    """

    _FOLLOW: ClassVar[str] = "state_follow"
    """Prefix of the follower's log events (``<prefix>_failed``, ``<prefix>_recovered``)."""
    _WRITE_FAILED: ClassVar[str] = "store_write_failed"
    """Log event of an unexpected store failure during a write."""
    _LOAD_FAILED: ClassVar[str] = "state_load_failed"
    """Log event of a failed load (the state is then served degraded)."""
    _REFUSALS: ClassVar[tuple[type[BaseException], ...]] = (BridgeError,)
    """What a store write raises as an answer (re-raised as it is; anything else is 5000)."""

    def __init__(
        self,
        quarantine: Quarantine,
        events: Bus,
        removed: Bus,
        *,
        watch: bool,
        task_name: str,
        **context: str,
    ) -> None:
        """Start empty, not loaded."""
        self._cache: Cache[E] = Cache()
        self._revision = 0
        self._lock = asyncio.Lock()
        self._quarantine = quarantine
        self._bus = events
        self._gone = removed
        self._watch = watch
        self._context = context
        self._task_name = task_name
        self._closed = False
        self._loaded = False
        self._load_failed = False
        self._behind = asyncio.Event()
        """Set when a committed write of this process could not be applied, nor the store
        reloaded: the follower wakes at once and reloads (the table is the truth)."""
        self._watcher: asyncio.Task[None] | None = None

    # ---- the policy's hooks ------------------------------------------------------------

    async def _load(self) -> tuple[int, Sequence[Row]]:
        """Read the whole store: ``(revision, rows in creation order)``."""
        raise NotImplementedError

    async def _changes_since(self, revision: int) -> Feed[Any]:
        """The change feed after ``revision``."""
        raise NotImplementedError

    async def _wait(self) -> None:
        """Return when the store may have moved (at once while degraded)."""
        raise NotImplementedError

    def _change(self, change: Any) -> tuple[str, Row | None]:
        """A feed entry's ``(id, row after it or None when deleted)``."""
        raise NotImplementedError

    def _check_change(self, change: Any) -> tuple[str | None, Any]:  # noqa: ARG002 - a hook
        """A feed entry's rejection reason (the log is then not trusted) and what ``_verdict`` may reuse."""
        return None, None

    def _verdict(self, row: Any, prepared: Any = None) -> tuple[E | Deferred | None, str | None]:
        """A stored row's entry, :data:`DEFERRED`, or ``(None, quarantine reason)``."""
        raise NotImplementedError

    def _same(self, entry: E, row: Any) -> bool:
        """True when ``entry`` was made from ``row`` as it is now (nothing to do)."""
        raise NotImplementedError

    def _event(self, kind: str, row_id: str, revision: int, view: Any = None) -> Any:
        """The change event of ``kind`` (``created``, ``updated``, ``deleted``)."""
        raise NotImplementedError

    def _claim(self, row_id: str, old: E | None, entry: E | None) -> bool:  # noqa: ARG002 - a hook
        """Move ``row_id``'s unique keys from ``old`` to ``entry``; False when another row holds one."""
        return True

    def _on_hold(self, row: Any) -> None:
        """``row`` was just quarantined (e.g. reserve its name)."""

    def _on_release(self, row_id: str) -> None:
        """``row_id`` left the quarantine (deleted, restored or valid again), or the store."""

    def _place(self, row_id: str, entry: E, restored: bool) -> None:  # noqa: ARG002 - a hook
        """Put ``entry`` in the cache in creation order (``restored``: it was quarantined)."""
        self._cache[row_id] = entry

    def _sort(self, cache: Cache[E]) -> None:
        """Put a reloaded cache in creation order (rows come in creation order: nothing to do)."""

    def _announce(self, changed: Differences[E], deleted: builtins.list[str], revision: int) -> None:
        """Publish a reload's events: ``changed`` ``(row revision, kind, id, entry)`` in store order.

        The default stamps every event with the store's ``revision``, deletions first.
        """
        for row_id in deleted:
            self._bus.publish(self._event(DELETED, row_id, revision))
        for _, kind, row_id, entry in changed:
            self._bus.publish(self._event(kind, row_id, revision, entry.view))

    async def _after_apply(self) -> None:
        """Follow-ups of applied changes (lock held), e.g. repairs written through the store."""

    def _loaded_log(self, *, after_failure: bool) -> None:
        """Log a successful (re)load that ended a degraded state, or the first load."""

    async def _recovered(self) -> None:
        """After a failed load succeeded at last (lock released)."""

    # ---- reads ----------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The revision the cache reflects."""
        return self._revision

    @property
    def load_failed(self) -> bool:
        """True while the last load failed: served degraded (empty), retried in the background."""
        return self._load_failed

    def peek(self, row_id: str) -> Any:
        """The cached view of ``row_id`` without waiting; None when unknown, not loaded or closed.

        One dict lookup on a hit (the channel binding's read tries this first).
        """
        if self._closed or not self._loaded:
            return None
        entry = self._cache.get(row_id)
        return None if entry is None else entry.view

    def peek_views(self) -> tuple[int, tuple[Any, ...]] | None:
        """``(revision, views)`` without waiting (the views one shared tuple); None when not served."""
        if self._closed or not self._loaded:
            return None
        views = self._cache.built  # the hot path: no call once the tuple is built
        return self._revision, self._cache.views() if views is None else views

    def holds(self, row_id: str) -> bool:
        """True when ``row_id`` is quarantined: still stored, not served."""
        return row_id in self._quarantine

    # ---- lifecycle ------------------------------------------------------------------

    async def _first_load(self, given: tuple[int, Sequence[Row]] | None = None) -> None:
        """Load the cache (from ``given`` when the caller read the store); degraded on failure."""
        async with self._lock:
            try:
                revision, rows = given if given is not None else await self._load()
            except Exception:
                log.exception(self._LOAD_FAILED, **self._context)
                self._load_failed = True
            else:
                self._replace_all(rows, revision, publish=False)
                self._load_failed = False
                self._loaded_log(after_failure=False)
                await self._after_apply()
            self._loaded = True
        self._start_following()

    def _start_following(self) -> None:
        """Follow other processes' commits (DESIGN §3) with :func:`bridge.state.follow.follow`."""
        if self._watch and self._watcher is None:
            follower = follow(
                self._next_change,
                self._follow_step,
                lambda: self._closed,
                backoff_delays,
                self._FOLLOW,
                **self._context,
            )
            self._watcher = asyncio.create_task(follower, name=self._task_name)

    async def _next_change(self) -> None:
        """The policy's :meth:`_wait`, cut short when this process's own write left the cache behind.

        A store's change notice shows other processes' commits only: a write of this
        process that committed but could not be applied (:meth:`_apply_written`) sets
        :attr:`_behind` instead.
        """
        if self._behind.is_set():
            return
        waiting = asyncio.ensure_future(self._wait())
        behind = asyncio.ensure_future(self._behind.wait())
        try:
            await asyncio.wait((waiting, behind), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, behind):
                task.cancel()
        if waiting.done() and not waiting.cancelled():
            waiting.result()  # a failed wait is the follower's to retry

    async def _follow_step(self, recovering: bool) -> None:
        """Catch up with the feed; reload after a failure; retry a failed load."""
        if self._behind.is_set():
            self._behind.clear()
            recovering = True
        if self._load_failed:
            async with self._lock:
                await self._reload()
                await self._after_apply()
            await self._recovered()
            return
        async with self._lock:
            await (self._reload() if recovering else self._catch_up())
            await self._after_apply()

    async def _stop(self, *others: asyncio.Task[Any]) -> None:
        """Stop following the store and cancel ``others`` (the policy's tasks); later calls raise 5003."""
        self._closed = True
        tasks = [task for task in (self._watcher, *others) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _catch_up(self) -> None:
        """Apply the change feed since the cache's revision (lock held)."""
        await self._apply(await self._changes_since(self._revision))

    async def _reload(self) -> None:
        """Full reload from the store (lock held); ends a degraded state."""
        revision, rows = await self._load()
        self._replace_all(rows, revision)
        if self._load_failed:
            self._loaded_log(after_failure=True)
        self._load_failed = False

    # ---- writes ---------------------------------------------------------------------

    async def _write(self, write: Callable[[int], Awaitable[F]]) -> F:
        """Run ``write(since)`` (one store write) under the lock, then apply and publish its changes.

        :func:`bridge.state.write.write_through`: a caller cancelled while its write runs
        never leaves cache and store apart, and the event is still sent.
        """
        return await write_through(
            self._lock,
            lambda: write(self._revision),
            self._apply_written,
            failed=self._WRITE_FAILED,
            refusals=self._REFUSALS,
            **self._context,
        )

    async def _apply_written(self, feed: Any) -> None:
        """Apply a committed write's feed (lock held); when that fails, reload from the store.

        The write is done whatever happens here. A failed apply is logged
        (``cache_apply_failed``) and the cache reloaded at once, so the write is served before
        its caller is answered; when the reload fails too, :attr:`_behind` makes the follower
        reload (with backoff) without waiting for another process's commit.
        """
        if feed is None:
            return
        try:
            await self._apply(feed)
            await self._after_apply()
        except Exception:
            log.exception("cache_apply_failed", **self._context)
            try:
                await self._reload()
                await self._after_apply()
            except Exception:
                log.exception("cache_reload_failed", **self._context)
                self._behind.set()

    # ---- applying committed changes ---------------------------------------------------

    async def _apply(self, feed: Feed[Any]) -> None:
        """Apply committed changes in revision order (lock held); reload when the log cannot tell."""
        revision = await apply_feed(
            feed,
            self._revision,
            check=self._check_change,
            apply=self._apply_change,
            reload=self._reload,
            **self._context,
        )
        if revision is not None:
            self._revision = revision

    def _apply_change(self, change: Any, prepared: Any) -> None:
        row_id, row = self._change(change)
        self._apply_row(row_id, row, change.revision, prepared)

    def _hold(self, row: Any, reason: str) -> None:
        """Quarantine ``row``: never served, logged once per reason; the policy's reservations."""
        self._quarantine.hold(row.id, reason)
        self._on_hold(row)

    def _release(self, row_id: str) -> bool:
        """Take ``row_id`` out of quarantine; True when it was held."""
        if not self._quarantine.release(row_id):
            return False
        self._on_release(row_id)
        return True

    def _unserve(self, row_id: str, old: E, revision: int, *, publish: bool = True) -> None:
        self._claim(row_id, old, None)
        del self._cache[row_id]
        if publish:
            self._bus.publish(self._event(DELETED, row_id, revision))

    def _apply_row(self, row_id: str, row: Any, revision: int, prepared: Any = None) -> None:
        """Apply one committed row (None: deleted) to the cache and publish its event.

        A row that fails its verdict, or whose unique key another served row holds
        (``NAME_CONFLICT``), is quarantined, and sent as ``deleted`` if it was served.
        """
        old = self._cache.get(row_id)
        if row is None:
            held = self._quarantine.release(row_id)
            self._on_release(row_id)
            if old is not None:
                self._unserve(row_id, old, revision)
            if old is not None or held:
                self._gone.publish(row_id)
            return
        if old is not None and self._same(old, row):
            return
        entry, reason = admit(row_id, row, old, self._verdict, self._claim, prepared=prepared)
        if isinstance(entry, Deferred):
            return
        if entry is None:
            self._hold(row, reason or INVALID)
            if old is not None:
                self._unserve(row_id, old, revision)
            return
        restored = self._release(row_id)
        self._place(row_id, entry, restored)
        kind = CREATED if old is None else UPDATED
        self._bus.publish(self._event(kind, row_id, revision, entry.view))

    def _replace_all(  # noqa: C901 - one pass over the rows, then one per kind of difference
        self, rows: Iterable[Row], revision: int, *, publish: bool = True
    ) -> None:
        """Swap in a full reload; publish one event per difference (:meth:`_announce`).

        Every row new or changed since the cache last held it gets its verdict; a failing
        one is quarantined (and sent as ``deleted`` if it was cached). Rows that left the
        store, served or held, are published on ``removed``.
        """
        rows = builtins.list(rows)
        old = self._cache
        present = {row.id for row in rows}
        left = [row_id for row_id in old if row_id not in present]
        for row_id in left:
            self._claim(row_id, old[row_id], None)
        gone = sorted({*self._quarantine.keep_only(present), *left})
        for row_id in gone:
            self._on_release(row_id)
        fresh: Cache[E] = Cache()
        changed: Differences[E] = []
        for row in rows:
            previous = old.get(row.id)
            if previous is not None and self._same(previous, row):
                fresh[row.id] = previous
                continue
            entry, reason = admit(row.id, row, previous, self._verdict, self._claim)
            if isinstance(entry, Deferred):
                if previous is not None:
                    fresh[row.id] = previous
                continue
            if entry is None:
                if previous is not None:
                    self._claim(row.id, previous, None)
                self._hold(row, reason or INVALID)
                continue
            self._release(row.id)
            fresh[row.id] = entry
            changed.append(
                (
                    getattr(row, "revision", 0) or revision,
                    CREATED if previous is None else UPDATED,
                    row.id,
                    entry,
                )
            )
        self._sort(fresh)
        deleted = [row_id for row_id in old if row_id not in fresh]
        if changed or deleted or builtins.list(fresh) != builtins.list(old):
            self._cache = fresh  # else the shared views tuple stays the same object
        self._revision = revision
        if not publish:
            return
        self._announce(changed, deleted, revision)
        for row_id in gone:
            self._gone.publish(row_id)
