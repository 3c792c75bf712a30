"""``LlmConfigService``: the write-through cache over a ``ConfigStore`` (DESIGN §4).

Reads come from the cache (O(1) by id, no store access; a miss consults the store only
when it moved since the cache last synced). Writes go to the store first; the cache
changes only after commit, and events are published after commit in revision order,
other processes' changes first. The cache never holds a plaintext API key.

Every row is untrusted where it enters the cache (load, follow, refresh, change-log
entries): it is checked with the write rules (:func:`bridge.service.rules.check_row`).
A row that fails is *quarantined*: left untouched in the store, never served or
broadcast (one that goes bad while cached is sent as ``deleted``), logged once by id and
reason code, listed by :meth:`LlmConfigService.quarantined`; its name stays reserved,
``delete`` removes it and an ``update`` whose merged result is valid restores it.

The cache, the write flow, the lifecycle and the quarantine are
:class:`bridge.state.service.StateService`'s, as for every collection; this module is
llm-config's policy over its ``ConfigStore`` (the ``configs`` table, unchanged): the hooks
read that store, ``update`` writes through its in-transaction merge (``mutate``), and
``refresh``, ``validate_cache``, ``cache_info`` and ``get_api_key`` are llm-config's own.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

# The follower's backoff (bridge.state.service) is the one helper of every retry loop.
from bridge.backoff import backoff_delays as backoff_delays  # noqa: PLC0414 - an explicit re-export
from bridge.errors import (
    ConfigNotFoundError,
    ConfigOperationFailedError,
    DuplicateConfigNameError,
    ServiceUnavailableError,
)
from bridge.keystore import KeyCipher
from bridge.models import (
    ChangeType,
    LlmConfigChanged,
    LlmConfigInput,
    LlmConfigPatch,
    LlmConfigView,
    Provider,
    api_key_preview,
    name_key,
)
from bridge.service.events import EventBus
from bridge.service.merge import merge_patch, rederive_row
from bridge.service.rules import NAME_CONFLICT, SECURITY_REASONS, Verdict, check_row
from bridge.state import Quarantine, printable_id, utc_now
from bridge.state.service import DEFERRED, DELETED, Deferred, Differences, StateService, classify
from bridge.storage.base import ConfigStore, StoredConfig, StoreState, WriteOutcome
from bridge.storage.changes import Change

# printable_id and utc_now live in bridge.state; re-exported here for the code that imported them from here.
__all__ = [
    "CacheInfo",
    "ConfigExamination",
    "LlmConfigService",
    "QuarantinedConfig",
    "config_verdict",
    "examine_configs",
    "printable_id",
    "to_view",
    "utc_now",
]

log = structlog.get_logger(__name__)
F = TypeVar("F")


# Every view has every field set: one shared set instead of one new set per view (a
# frozen model never mutates it; model_copy copies it first).
_VIEW_FIELDS_SET: set[str] = set(LlmConfigView.model_fields)


def to_view(row: StoredConfig) -> LlmConfigView:
    """Return the renderer-facing view of a stored row (no API key)."""
    return LlmConfigView.model_construct(
        _VIEW_FIELDS_SET,
        id=row.id,
        custom_name=row.custom_name,
        provider=Provider(row.provider),
        api_key_preview=row.api_key_preview,
        base_url=row.base_url,
        use_auth_header=row.use_auth_header,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )


_ENTRY_OVERHEAD = 200
"""Rough bytes of one cached entry's Python objects besides its text (for ``cache.bytes``)."""
_VIEW_OVERHEAD = 300
"""Rough bytes of one built view (a pydantic instance sharing the row's strings)."""


@dataclass(frozen=True, slots=True)
class QuarantinedConfig:
    """A stored row kept out of the cache: its id (printable) and reason code."""

    id: str
    reason: str


class _Entry:
    """One cached config: the stored row, and its view, built on first read and kept.

    The view (an immutable ``LlmConfigView``) is built the first time the config is read
    and then returned by every read until the config changes: the same object, so a
    consumer may memoise whatever it derives from it by identity (the RPC binding keeps
    its wire JSON that way). Start-up stays at one store read (no pydantic instance per
    row), and the cache at the row's size until a config is first read.
    """

    __slots__ = ("_view", "row")

    def __init__(self, row: StoredConfig, view: LlmConfigView | None = None) -> None:
        self.row = row
        self._view = view

    def size(self) -> int:
        """Approximate bytes held by the row's text and ciphertext, and its view once built."""
        row = self.row
        text = (
            len(row.id)
            + len(row.custom_name)
            + len(row.name_key)
            + len(row.api_key_preview)
            + len(row.base_url or "")
            + len(row.created_at)
            + len(row.updated_at)
        )
        return (
            _ENTRY_OVERHEAD + text + len(row.api_key_ct) + (_VIEW_OVERHEAD if self._view is not None else 0)
        )

    @property
    def view(self) -> LlmConfigView:
        view = self._view
        if view is None:
            view = self._view = to_view(self.row)
        return view


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """Cache statistics: ``count`` configs at ``revision``; ``loaded`` once initialized.

    ``load_failed``: the last load failed and the service serves degraded (empty, retried
    in the background and by ``refresh``). ``bytes``: approximate memory held, in bytes.
    """

    count: int
    revision: int
    loaded: bool
    load_failed: bool
    bytes: int = 0


def config_verdict(
    row: StoredConfig, cipher: KeyCipher, prepared: Verdict | None = None
) -> tuple[_Entry | Deferred | None, str | None]:
    """A stored row's verdict where it enters the cache (the service's, and ``bridge doctor``'s).

    Args:
        row: the row as stored (untrusted).
        cipher: opens its API key.
        prepared: its :func:`check_row` verdict when already made (a feed entry's).

    Returns:
        ``(entry, None)`` to serve; ``(DEFERRED, None)`` for a valid row whose derived
        fields are stale (rewritten through the write path before it is served); ``(None,
        reason code)`` to quarantine.
    """
    verdict = prepared or check_row(row, cipher)
    if verdict.reason is not None:
        return None, verdict.reason
    if verdict.stale:
        return DEFERRED, None
    return _Entry(row), None


@dataclass(frozen=True, slots=True)
class ConfigExamination:
    """What the service would do with the stored rows at start (:func:`examine_configs`).

    Attributes:
        quarantined: ``(id, reason code)`` of each row it would hold, in the order it would
            hold them (the load's verdicts in creation order, then the repairs' clashes).
        repaired: ids of the rows whose stale derived fields it would rewrite (a write:
            version + 1), in creation order; then served.
    """

    quarantined: builtins.list[tuple[str, str]]
    repaired: builtins.list[str]


def examine_configs(rows: builtins.list[StoredConfig], cipher: KeyCipher) -> ConfigExamination:
    """The start of :class:`LlmConfigService` on ``rows``, without a store: what it would hold and repair.

    The load is the service's (:func:`~bridge.state.service.classify` with
    :func:`config_verdict`). The repair of each deferred row is the service's
    (:func:`~bridge.service.merge.rederive_row`, in creation order like
    ``_repair_stale``); the store's unique index on ``name_key``, which refuses a repaired
    name key another stored row holds (``NAME_CONFLICT``; quarantined rows hold theirs
    too), is played on the rows' keys instead of written.

    Args:
        rows: the stored rows in creation order (as ``load`` returns them).
        cipher: the data keys.
    """
    found = classify(rows, lambda row, prepared: config_verdict(row, cipher, prepared), _no_unique_keys)
    quarantined = [(printable_id(config_id), reason) for config_id, reason in found.held.items()]
    stored = {row.id: row for row in rows}
    index = {row.name_key: row.id for row in rows if isinstance(row.name_key, str)}
    repaired: builtins.list[str] = []
    for config_id in found.deferred:
        row = stored[config_id]
        fresh = rederive_row(row, cipher=cipher, now=lambda: "")  # only its name key is looked at
        if fresh is None:  # pragma: no cover - a deferred row is stale
            continue
        if index.get(fresh.name_key, config_id) != config_id:
            quarantined.append((printable_id(config_id), NAME_CONFLICT))
            continue
        if index.get(row.name_key) == config_id:
            del index[row.name_key]
        index[fresh.name_key] = config_id
        repaired.append(printable_id(config_id))
    return ConfigExamination(quarantined, repaired)


def _no_unique_keys(_row_id: str, _old: object, _entry: object) -> bool:
    """llm-config claims no key in its cache: the store's unique index holds the names."""
    return True


class LlmConfigService(StateService[_Entry]):
    """Owns LLM provider configs: validation, cache, events and concurrency. No sockets.

    Args:
        store: the durable store (opened by the caller).
        cipher: seals API keys for the store and opens them for :meth:`get_api_key`.
        watch: follow other processes' commits through ``store.wait_for_change``.

    Subscribe to :attr:`events` for ``LlmConfigChanged`` events (synchronous callbacks),
    and to :attr:`removed` for the ids whose row left the store.

    The cache, write flow, lifecycle and quarantine are :class:`~bridge.state.service.StateService`'s
    (as for every collection); this class is llm-config's policy over its ``ConfigStore``
    (the ``configs`` table): rows are checked with the write rules (:func:`check_row`, with
    the repair of stale derived fields through the write path), views are built on first
    read, quarantined rows keep their names reserved, the cache loads on first use, and a
    reload's events carry each row's own revision.
    """

    _FOLLOW = "store_follow"
    _WRITE_FAILED = "store_write_failed"
    _LOAD_FAILED = "cache_load_failed"

    def __init__(self, store: ConfigStore, cipher: KeyCipher, *, watch: bool = True) -> None:
        """Wire the service; nothing is loaded until the first operation."""
        self.events: EventBus[LlmConfigChanged] = EventBus()
        self.removed: EventBus[str] = EventBus()
        """Ids whose row left the store (deleted here or by another process), served or
        quarantined; not one merely quarantined (still stored). A subscriber's task handed
        to ``events.follow_up`` is awaited by :meth:`delete` before it answers."""
        quarantine = Quarantine("config_quarantined", SECURITY_REASONS)
        super().__init__(quarantine, self.events, self.removed, watch=watch, task_name="store-watcher")
        self._store = store
        self._cipher = cipher
        self._load_task: asyncio.Task[None] | None = None
        self._reserved: dict[str, str] = {}
        """Name keys of quarantined rows → their id (a create with one gets 4009)."""
        self._stale: dict[str, StoredConfig] = {}
        """Valid rows whose derived fields must be rewritten through the write path before
        they are served (held back until then; the cache keeps their previous state)."""

    # ---- lifecycle ------------------------------------------------------------------

    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise ServiceUnavailableError
        if self._loaded:
            return
        if self._load_task is None:
            self._load_task = asyncio.ensure_future(self._first_load())
        await asyncio.shield(self._load_task)

    async def start(self, state: StoreState | None) -> None:
        """Initialize from ``state``, read by the caller (start-up reads the store once).

        Args:
            state: the store's content, or None when reading it failed: the service then
                serves degraded (empty, :attr:`CacheInfo.load_failed`) and retries the
                load in the background and on :meth:`refresh`.
        """
        if self._loaded or self._load_task is not None:
            return
        if state is None:
            log.error(self._LOAD_FAILED, detail="serving degraded; retried in the background")
            async with self._lock:
                self._load_failed = True
                self._loaded = True
            self._start_following()
            return
        self._load_task = asyncio.ensure_future(self._first_load((state.revision, state.configs)))
        await asyncio.shield(self._load_task)

    async def initialize(self) -> int:
        """Load the cache if not yet loaded (idempotent); returns the number of configs."""
        await self._ensure_loaded()
        return len(self._cache)

    async def close(self) -> None:
        """Stop following the store and clear the cache; later calls raise 5003."""
        await self._stop()
        async with self._lock:
            self._cache.clear()

    # ---- the state policy (hooks of StateService) ---------------------------------------

    async def _load(self) -> tuple[int, builtins.list[StoredConfig]]:
        state = await self._store.load()
        return state.revision, state.configs

    async def _changes_since(self, revision: int) -> WriteOutcome:
        return await self._store.changes_since(revision)

    async def _wait(self) -> None:
        """Wait for another process's commit; at once while degraded (the load is retried)."""
        if not self._load_failed:
            await self._store.wait_for_change()

    def _change(self, change: Change[StoredConfig]) -> tuple[str, StoredConfig | None]:
        # Each change carries its row as of its revision: one event per revision.
        return change.id, change.row

    def _check_change(self, change: Change[StoredConfig]) -> tuple[str | None, Verdict | None]:
        """A change-log entry's verdict (its row checked with the write rules); None for a deletion."""
        if change.row is None:
            return None, None
        verdict = check_row(change.row, self._cipher)
        return verdict.reason, verdict

    def _verdict(
        self, row: StoredConfig, prepared: Verdict | None = None
    ) -> tuple[_Entry | Deferred | None, str | None]:
        entry, reason = config_verdict(row, self._cipher, prepared)
        if isinstance(entry, Deferred):
            # Not served until the write path has recomputed it (or found it clashing).
            self._stale[row.id] = row
        return entry, reason

    def _same(self, entry: _Entry, row: StoredConfig) -> bool:
        return entry.row == row

    def _event(self, kind: str, row_id: str, revision: int, view: Any = None) -> LlmConfigChanged:
        return LlmConfigChanged(type=ChangeType(kind), id=row_id, revision=revision, config=view)

    def _on_hold(self, row: StoredConfig) -> None:
        """A quarantined row's names stay reserved (from ``name_key`` and ``custom_name``)."""
        config_id = row.id
        self._unreserve(config_id)
        self._stale.pop(config_id, None)
        for value in (row.name_key, row.custom_name):
            if isinstance(value, str):
                with contextlib.suppress(UnicodeError):
                    self._reserved[name_key(value.encode("utf-8").decode("utf-8"))] = config_id

    def _on_release(self, row_id: str) -> None:
        self._unreserve(row_id)
        self._stale.pop(row_id, None)

    def _unreserve(self, config_id: str) -> None:
        """Free the names a quarantined ``config_id`` held reserved."""
        for key in [k for k, owner in self._reserved.items() if owner == config_id]:
            del self._reserved[key]

    def _place(self, row_id: str, entry: _Entry, restored: bool) -> None:
        self._cache[row_id] = entry
        if restored:
            # Put a restored row back in creation order (rare: a stable sort by createdAt).
            self._cache.reorder(lambda entry: entry.row.created_at)

    def _announce(self, changed: Differences[_Entry], deleted: builtins.list[str], revision: int) -> None:
        """Publish a reload's events in llm-config's order.

        Created and updated configs carry their row's own revision (distinct, and in
        increasing order); deletions carry ``revision`` (the store's current one) and come
        last, because the row that would say when it was deleted is gone.
        """
        for row_revision, kind, row_id, entry in sorted(changed, key=lambda item: item[0]):
            self.events.publish(self._event(kind, row_id, row_revision, entry.view))
        for config_id in deleted:
            self.events.publish(self._event(DELETED, config_id, revision))

    async def _after_apply(self) -> None:
        await self._repair_stale()

    def _loaded_log(self, *, after_failure: bool) -> None:
        if after_failure:
            log.info("cache_loaded", count=len(self._cache), revision=self._revision, after_failure=True)
        else:
            log.info(
                "cache_loaded",
                count=len(self._cache),
                quarantined=len(self._quarantine),
                revision=self._revision,
            )

    # ---- reads ----------------------------------------------------------------------

    async def fetch(self, config_id: str) -> LlmConfigView | None:
        """:meth:`read`, as the channel binding of any collection calls it (after :meth:`peek`)."""
        return await self.read(config_id)

    async def read(self, config_id: str) -> LlmConfigView | None:
        """Return the view of ``config_id`` from the cache, or None when unknown.

        A miss first catches up with the change feed when the store moved since the
        cache last synced (emitting the events that brings); else no store access. An
        unchanged config is returned as the same view object every time.
        """
        if self._closed or not self._loaded:
            await self._ensure_loaded()
        entry = self._cache.get(config_id)
        if entry is None:
            entry = await self._miss(config_id)
        return None if entry is None else entry.view

    async def _miss(self, config_id: str) -> _Entry | None:
        """Catch up with the store on a cache miss when it moved (else no store read).

        The check is synchronous: a miss while nothing moved completes without suspending,
        like a hit.
        """
        if not self._store.moved():
            return None
        try:
            async with self._lock:
                if config_id not in self._cache:
                    await self._apply(await self._store.changes_since(self._revision))
                    await self._repair_stale()
        except Exception:
            # The read still answers from the cache; the follower retries the feed.
            log.exception("read_catch_up_failed")
        return self._cache.get(config_id)

    async def list(self) -> list[LlmConfigView]:
        """Return every view in creation order (empty list when none).

        A config unchanged since the last read is returned as the same view object.
        """
        if self._closed or not self._loaded:
            await self._ensure_loaded()
        return list(self._cache.views())

    async def snapshot(self) -> tuple[int, builtins.list[LlmConfigView]]:
        """Return ``(revision, views)``: the cache and the revision it reflects."""
        revision, views = await self.views()
        return revision, list(views)

    async def views(self) -> tuple[int, tuple[LlmConfigView, ...]]:
        """Return ``(revision, views)`` like :meth:`snapshot`, the views as a shared tuple.

        The tuple is the same object until the cache changes (what the RPC binding's
        memo of the whole list is keyed by); it is immutable, like every view in it.
        """
        if self._closed or not self._loaded:
            await self._ensure_loaded()
        return self._revision, self._cache.views()

    async def get_api_key(self, config_id: str) -> str | None:
        """Return the plaintext API key of ``config_id`` (decrypted now), or None if unknown.

        For in-process consumers only; never sent over IPC.

        Raises:
            ConfigOperationFailedError: the ciphertext does not decrypt with the data key.
        """
        await self._ensure_loaded()
        entry = self._cache.get(config_id)
        if entry is None:
            return None
        try:
            return self._cipher.decrypt(entry.row.api_key_ct, config_id)
        except Exception:
            log.exception("api_key_decrypt_failed", id=config_id)
            raise ConfigOperationFailedError from None

    def cache_info(self) -> CacheInfo:
        """Return the cache's size, revision, load state and approximate bytes (no store access)."""
        size = sum(entry.size() for entry in self._cache.values())
        return CacheInfo(len(self._cache), self._revision, self._loaded, self._load_failed, size)

    def quarantined(self) -> builtins.list[QuarantinedConfig]:
        """Return the quarantined rows (id, reason code), in the order they were met."""
        return [
            QuarantinedConfig(printable_id(cid), reason) for cid, reason in self._quarantine.reasons().items()
        ]

    async def validate_cache(self) -> dict[str, Any]:
        """Compare the cache with the store.

        Returns:
            ``{"cacheCount", "storeCount", "missing": [ids in store only, not
            quarantined], "stale": [ids that differ], "extra": [ids in cache only],
            "quarantined": [ids held out of the cache], "consistent": bool}``.
        """
        await self._ensure_loaded()
        async with self._lock:
            state = await self._store.load()
            stored = {row.id: row for row in state.configs}
            missing = [cid for cid in stored if cid not in self._cache and cid not in self._quarantine]
            extra = [cid for cid in self._cache if cid not in stored]
            stale = [cid for cid, row in stored.items() if cid in self._cache and self._cache[cid].row != row]
            return {
                "cacheCount": len(self._cache),
                "storeCount": len(stored),
                "missing": missing,
                "stale": stale,
                "extra": extra,
                "quarantined": [printable_id(cid) for cid in self._quarantine],
                "consistent": not (missing or extra or stale),
            }

    # ---- writes ---------------------------------------------------------------------

    async def _write(self, write: Callable[[int], Awaitable[F]]) -> F:
        """Load first, then :meth:`StateService._write` (lock → store → apply → publish → repairs)."""
        await self._ensure_loaded()
        return await super()._write(write)

    async def create(self, data: LlmConfigInput) -> LlmConfigView:
        """Store a new config and return its view (version 1, ``createdAt == updatedAt``).

        Raises:
            DuplicateConfigNameError (4009): the name's key is taken.
            ConfigOperationFailedError (5000): the store or the encryption failed.
        """
        if name_key(data.custom_name) in self._reserved:
            raise DuplicateConfigNameError
        config_id = str(uuid.uuid4())
        now = utc_now()
        try:
            sealed = self._cipher.encrypt(data.api_key, config_id)
        except Exception:
            log.exception("api_key_encrypt_failed")
            raise ConfigOperationFailedError from None
        row = StoredConfig(
            id=config_id,
            custom_name=data.custom_name,
            name_key=name_key(data.custom_name),
            provider=data.provider.value,
            api_key_ct=sealed,
            api_key_preview=api_key_preview(data.api_key),
            base_url=data.base_url,
            use_auth_header=data.use_auth_header,
            created_at=now,
            updated_at=now,
            version=1,
        )
        await self._write(lambda since: self._store.insert(row, since))
        return to_view(row)

    async def update(
        self, config_id: str, patch: LlmConfigPatch, expected_version: int | None = None
    ) -> LlmConfigView:
        """Apply ``patch`` and return the new view; a patch that changes nothing is a no-op.

        Checks run in the store's write transaction in the order of DESIGN §4:
        existence, ``expectedVersion``, the merged result's rules, the unique name.
        Among the rules: a patch whose merged ``baseUrl`` or ``provider`` differs from
        the stored one (clearing ``baseUrl`` included) must carry ``apiKey``.

        Raises:
            ConfigNotFoundError (4004), VersionConflictError (4012),
            ValidationError (-32602, fields under ``updates.``; ``updates.apiKey``
            REQUIRED when the key's destination moves without it),
            DuplicateConfigNameError (4009), ConfigOperationFailedError (5000).
        """
        changes = patch.changes()

        def op(since: int) -> Awaitable[WriteOutcome]:
            # Built under the write lock (the quarantine is current); the store runs the
            # pure merge inside its transaction, on the row it locked, and the merge reads
            # the clock there: not before BEGIN IMMEDIATE, which may wait for the lock.
            mutate = functools.partial(
                merge_patch,
                changes=changes,
                cipher=self._cipher,
                quarantined=config_id in self._quarantine,
                now=utc_now,
            )
            return self._store.update(config_id, mutate, expected_version, since)

        outcome = await self._write(op)
        assert outcome.current is not None
        return to_view(outcome.current)

    async def delete(self, config_id: str, expected_version: int | None = None) -> bool:
        """Delete ``config_id``; returns False (and emits nothing) when it is unknown.

        Returns once the follow-ups of its ``deleted`` event in this process are done
        (collections clearing their references: their events precede the response).

        Raises:
            VersionConflictError (4012): it exists and ``expected_version`` differs.
            ConfigOperationFailedError (5000): the store failed.
        """
        outcome = await self._write(lambda since: self._store.delete(config_id, expected_version, since))
        # Work the deletion causes in this process (collections clearing their references
        # to it) is done, and notified, before the caller's response (DESIGN §5).
        await self.events.settle()
        return outcome.written

    async def refresh(self) -> tuple[int, int]:
        """Reload everything from the store, emit an event per difference.

        Changes the change feed still holds are applied first, each with its own
        revision (a refresh that beats the poll loses no event's revision); the full
        reload then catches anything the feed cannot explain (e.g. rows changed behind
        the store's back).

        Returns:
            ``(count, revision)`` after the reload.

        Raises:
            ConfigOperationFailedError (5000): the store could not be read.
        """
        if self._closed:
            raise ServiceUnavailableError
        if not self._loaded:
            await self._ensure_loaded()
        async with self._lock:
            if not self._load_failed:
                try:
                    await self._apply(await self._store.changes_since(self._revision))
                except Exception:
                    # The change log is untrusted: fall back to the full reload below.
                    log.exception("refresh_feed_failed")
            try:
                await self._reload()
            except Exception:
                log.exception("cache_refresh_failed")
                raise ConfigOperationFailedError from None
            try:
                await self._repair_stale()
            except Exception:
                log.exception("stale_repair_failed")
            return len(self._cache), self._revision

    async def _repair_stale(self) -> None:
        """Rewrite rows whose derived fields another program left stale (lock held).

        The name key and key preview are recomputed through the normal write path (a
        new revision, version + 1, an ``updated`` event). When the recomputed name key
        clashes with another row's, the row being repaired (the newer edit) is
        quarantined with ``NAME_CONFLICT``.
        """
        while self._stale:
            # In creation order: of two rows whose repaired names clash, the newer is held.
            config_id = next(iter(self._stale))
            row = self._stale.pop(config_id)
            rederive = functools.partial(rederive_row, cipher=self._cipher, now=utc_now)
            try:
                outcome = await self._store.update(config_id, rederive, None, self._revision)
            except DuplicateConfigNameError:
                self._hold(row, NAME_CONFLICT)
                if self._cache.pop(config_id, None) is not None:
                    self.events.publish(self._event(DELETED, config_id, self._revision))
                continue
            except ConfigNotFoundError:
                continue
            except Exception:
                log.exception("stale_repair_failed", id=printable_id(config_id))
                continue
            await self._apply(outcome)
