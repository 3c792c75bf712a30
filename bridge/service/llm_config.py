"""``LlmConfigService``: the write-through cache over a ``ConfigStore`` (DESIGN §4).

Reads come from the cache (O(1) by id, no store access). Writes go to the store first;
the cache changes only after commit, and events are published after commit in revision
order, other processes' changes first. The cache never holds a plaintext API key.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel

from bridge.errors import (
    BridgeError,
    ConfigOperationFailedError,
    FieldError,
    ServiceUnavailableError,
    ValidationError,
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
    field_errors,
    name_key,
)
from bridge.service.events import EventBus
from bridge.storage.base import ConfigStore, StoredConfig, WriteOutcome

log = structlog.get_logger(__name__)


def utc_now() -> str:
    """Return the current time as ISO 8601 UTC with milliseconds and a ``Z`` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_NULL = orjson.Fragment(b"null")

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


_dump_view_json = LlmConfigView.__pydantic_serializer__.to_json


class _Entry:
    """One cached config: the stored row, and its view's JSON, built on first read and kept.

    The JSON (wire form, camelCase, UTF-8) is what ``llm-config:read``/``list`` send: built
    by the view's own pydantic serializer the first time the config is read over IPC, and
    then spliced into every reply until the config changes. Start-up stays at one store
    read (no pydantic instance per row), and the cache at the row's size until a config is
    first read.
    """

    __slots__ = ("_json", "row")

    def __init__(self, row: StoredConfig) -> None:
        self.row = row
        self._json: bytes | None = None

    @property
    def json(self) -> bytes:
        data = self._json
        if data is None:
            data = self._json = _dump_view_json(to_view(self.row), by_alias=True)
        return data


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """Cache statistics: ``count`` configs at ``revision``; ``loaded`` once initialized."""

    count: int
    revision: int
    loaded: bool
    load_failed: bool


_UPDATE_FIELDS = [f"updates.{to_camel(name)}" for name in LlmConfigInput.model_fields]
_KEY_REQUIRED = FieldError("updates.apiKey", "REQUIRED", "is required when baseUrl or provider changes")


def _with_key_rule(
    errors: list[FieldError], current: StoredConfig, changes: dict[str, Any]
) -> list[FieldError]:
    """Add ``updates.apiKey`` REQUIRED when the patch moves the key's destination without it.

    A stored key may only follow a new ``baseUrl`` (cleared included) or ``provider`` when
    the patch carries the key (DESIGN §2): otherwise whoever can send an update could have
    an in-process consumer send the key to a host of their choosing. The rule replaces the
    errors on ``updates.apiKey`` (they concern the stored key, which is not being
    submitted) and keeps model field order.
    """
    if "api_key" in changes:
        return errors
    moved = ("base_url" in changes and changes["base_url"] != current.base_url) or (
        "provider" in changes and str(changes["provider"]) != current.provider
    )
    if not moved:
        return errors
    kept = [error for error in errors if error.field != _KEY_REQUIRED.field]
    order = {name: index for index, name in enumerate(_UPDATE_FIELDS)}
    return sorted([*kept, _KEY_REQUIRED], key=lambda e: order.get(e.field, len(order)))


class LlmConfigService:
    """Owns LLM provider configs: validation, cache, events and concurrency. No sockets.

    Args:
        store: the durable store (opened by the caller).
        cipher: seals API keys for the store and opens them for :meth:`get_api_key`.
        watch: follow other processes' commits through ``store.wait_for_change``.

    Subscribe to :attr:`events` for ``LlmConfigChanged`` events (synchronous callbacks).
    """

    def __init__(self, store: ConfigStore, cipher: KeyCipher, *, watch: bool = True) -> None:
        """Wire the service; nothing is loaded until the first operation."""
        self._store = store
        self._cipher = cipher
        self._watch = watch
        self._cache: dict[str, _Entry] = {}
        self._revision = 0
        self._lock = asyncio.Lock()
        self._load_task: asyncio.Task[None] | None = None
        self._loaded = False
        self._load_failed = False
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        self.events: EventBus[LlmConfigChanged] = EventBus()

    # ---- lifecycle ------------------------------------------------------------------

    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise ServiceUnavailableError
        if self._loaded:
            return
        if self._load_task is None:
            self._load_task = asyncio.ensure_future(self._initial_load())
        await asyncio.shield(self._load_task)

    async def _initial_load(self) -> None:
        async with self._lock:
            try:
                state = await self._store.load()
            except Exception:
                log.exception("cache_load_failed")
                self._load_failed = True
            else:
                self._cache = {row.id: _Entry(row) for row in state.configs}
                self._revision = state.revision
                self._load_failed = False
                log.info("cache_loaded", count=len(self._cache), revision=self._revision)
            self._loaded = True
        if self._watch and self._watcher is None:
            self._watcher = asyncio.create_task(self._follow_store(), name="store-watcher")

    async def initialize(self) -> int:
        """Load the cache if not yet loaded (idempotent); returns the number of configs."""
        await self._ensure_loaded()
        return len(self._cache)

    async def close(self) -> None:
        """Stop following the store and clear the cache; later calls raise 5003."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        async with self._lock:
            self._cache.clear()

    async def _follow_store(self) -> None:
        """Apply other processes' commits as they are noticed (DESIGN §3)."""
        while not self._closed:
            try:
                await self._store.wait_for_change()
                async with self._lock:
                    await self._apply(await self._store.changes_since(self._revision))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store_follow_failed")
                await asyncio.sleep(1.0)

    # ---- reads ----------------------------------------------------------------------

    async def read(self, config_id: str) -> LlmConfigView | None:
        """Return the view of ``config_id`` from the cache, or None when unknown."""
        await self._ensure_loaded()
        entry = self._cache.get(config_id)
        return None if entry is None else to_view(entry.row)

    async def list(self) -> list[LlmConfigView]:
        """Return every view in creation order (empty list when none)."""
        await self._ensure_loaded()
        return [to_view(entry.row) for entry in self._cache.values()]

    async def snapshot(self) -> tuple[int, builtins.list[LlmConfigView]]:
        """Return ``(revision, views)``: the cache and the revision it reflects."""
        await self._ensure_loaded()
        return self._revision, [to_view(entry.row) for entry in self._cache.values()]

    # The same reads, as the JSON that goes on the wire (what the IPC channels send): no
    # pydantic work per call once a config has been read.

    async def read_json(self, config_id: str) -> orjson.Fragment:
        """Return the view of ``config_id`` as JSON (``LlmConfigView`` wire form), or ``null``."""
        if self._closed or not self._loaded:
            await self._ensure_loaded()
        entry = self._cache.get(config_id)
        return _NULL if entry is None else orjson.Fragment(entry.json)

    async def list_json(self) -> orjson.Fragment:
        """Return every view in creation order as one JSON array (``LlmConfigView[]``)."""
        if self._closed or not self._loaded:
            await self._ensure_loaded()
        return orjson.Fragment(self._array_json())

    async def snapshot_json(self) -> orjson.Fragment:
        """Return ``{"revision": int, "configs": LlmConfigView[]}`` as JSON (``Snapshot``)."""
        await self._ensure_loaded()
        return orjson.Fragment(b'{"revision":%d,"configs":%b}' % (self._revision, self._array_json()))

    def _array_json(self) -> bytes:
        return b"[" + b",".join([entry.json for entry in self._cache.values()]) + b"]"

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
        """Return the cache's size, revision and load state (no store access)."""
        return CacheInfo(len(self._cache), self._revision, self._loaded, self._load_failed)

    async def validate_cache(self) -> dict[str, Any]:
        """Compare the cache with the store.

        Returns:
            ``{"cacheCount", "storeCount", "missing": [ids in store only],
            "stale": [ids that differ], "extra": [ids in cache only], "consistent": bool}``.
        """
        await self._ensure_loaded()
        async with self._lock:
            state = await self._store.load()
            stored = {row.id: row for row in state.configs}
            missing = [cid for cid in stored if cid not in self._cache]
            extra = [cid for cid in self._cache if cid not in stored]
            stale = [cid for cid, row in stored.items() if cid in self._cache and self._cache[cid].row != row]
            return {
                "cacheCount": len(self._cache),
                "storeCount": len(stored),
                "missing": missing,
                "stale": stale,
                "extra": extra,
                "consistent": not (missing or extra or stale),
            }

    # ---- writes ---------------------------------------------------------------------

    async def _write(self, op: Callable[[int], Any]) -> WriteOutcome:
        """Run one store write under the lock, then apply and publish its changes."""
        await self._ensure_loaded()
        async with self._lock:
            try:
                outcome: WriteOutcome = await op(self._revision)
            except BridgeError:
                raise
            except Exception:
                log.exception("store_write_failed")
                raise ConfigOperationFailedError from None
            await self._apply(outcome)
            return outcome

    async def create(self, data: LlmConfigInput) -> LlmConfigView:
        """Store a new config and return its view (version 1, ``createdAt == updatedAt``).

        Raises:
            DuplicateConfigNameError (4009): the name's key is taken.
            ConfigOperationFailedError (5000): the store or the encryption failed.
        """
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

        def mutate(current: StoredConfig) -> StoredConfig | None:
            return self._merge(current, changes)

        outcome = await self._write(
            lambda since: self._store.update(config_id, mutate, expected_version, since)
        )
        assert outcome.current is not None
        return to_view(outcome.current)

    def _merge(self, current: StoredConfig, changes: dict[str, Any]) -> StoredConfig | None:
        old_key = self._cipher.decrypt(current.api_key_ct, current.id)
        merged: dict[str, Any] = {
            "custom_name": current.custom_name,
            "provider": current.provider,
            "api_key": old_key,
            "base_url": current.base_url,
            "use_auth_header": current.use_auth_header,
        }
        merged.update(changes)
        try:
            valid = LlmConfigInput.model_validate(merged)
        except PydanticValidationError as exc:
            raise ValidationError(_with_key_rule(field_errors(exc, ("updates",)), current, changes)) from None
        if errors := _with_key_rule([], current, changes):
            raise ValidationError(errors)
        if (
            valid.custom_name == current.custom_name
            and valid.provider.value == current.provider
            and valid.api_key == old_key
            and valid.base_url == current.base_url
            and valid.use_auth_header == current.use_auth_header
        ):
            return None
        key_changed = valid.api_key != old_key
        return replace(
            current,
            custom_name=valid.custom_name,
            name_key=name_key(valid.custom_name),
            provider=valid.provider.value,
            api_key_ct=self._cipher.encrypt(valid.api_key, current.id) if key_changed else current.api_key_ct,
            api_key_preview=api_key_preview(valid.api_key),
            base_url=valid.base_url,
            use_auth_header=valid.use_auth_header,
            updated_at=utc_now(),
            version=current.version + 1,
        )

    async def delete(self, config_id: str, expected_version: int | None = None) -> bool:
        """Delete ``config_id``; returns False (and emits nothing) when it is unknown.

        Raises:
            VersionConflictError (4012): it exists and ``expected_version`` differs.
            ConfigOperationFailedError (5000): the store failed.
        """
        outcome = await self._write(lambda since: self._store.delete(config_id, expected_version, since))
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
            try:
                if not self._load_failed:
                    await self._apply(await self._store.changes_since(self._revision))
                state = await self._store.load()
            except Exception:
                log.exception("cache_refresh_failed")
                raise ConfigOperationFailedError from None
            self._load_failed = False
            self._replace_all(state.configs, state.revision)
            return len(self._cache), self._revision

    # ---- applying committed changes ---------------------------------------------------

    async def _apply(self, outcome: WriteOutcome) -> None:
        """Apply committed changes to the cache and publish them (lock held)."""
        if outcome.changes is None:
            state = await self._store.load()
            self._replace_all(state.configs, state.revision)
            return
        for change in outcome.changes:
            # Each change carries its row as of its revision: one event per revision.
            self._apply_row(change.id, change.config, change.revision)
        self._revision = max(self._revision, outcome.revision)

    def _apply_row(self, config_id: str, row: StoredConfig | None, revision: int) -> None:
        entry = self._cache.get(config_id)
        if row is None:
            if entry is None:
                return
            del self._cache[config_id]
            self.events.publish(LlmConfigChanged(type=ChangeType.DELETED, id=config_id, revision=revision))
            return
        if entry is not None and entry.row == row:
            return
        view = to_view(row)
        self._cache[config_id] = _Entry(row)
        kind = ChangeType.CREATED if entry is None else ChangeType.UPDATED
        self.events.publish(LlmConfigChanged(type=kind, id=config_id, revision=revision, config=view))

    def _replace_all(self, rows: Iterable[StoredConfig], revision: int) -> None:
        """Swap in a full reload and publish one event per difference.

        Created and updated configs carry their row's own revision (distinct, and in
        increasing order); deletions carry ``revision`` (the store's current one) and come
        last, because the row that would say when it was deleted is gone.
        """
        old = self._cache
        fresh: dict[str, _Entry] = {}
        differences: builtins.list[tuple[int, ChangeType, StoredConfig]] = []
        for row in rows:
            previous = old.get(row.id)
            if previous is not None and previous.row == row:
                fresh[row.id] = previous
                continue
            fresh[row.id] = _Entry(row)
            kind = ChangeType.CREATED if previous is None else ChangeType.UPDATED
            differences.append((row.revision or revision, kind, row))
        deleted = [config_id for config_id in old if config_id not in fresh]
        self._cache = fresh
        self._revision = revision
        differences.sort(key=lambda item: item[0])
        for row_revision, kind, row in differences:
            view = to_view(row)
            self.events.publish(LlmConfigChanged(type=kind, id=row.id, revision=row_revision, config=view))
        for config_id in deleted:
            self.events.publish(LlmConfigChanged(type=ChangeType.DELETED, id=config_id, revision=revision))
