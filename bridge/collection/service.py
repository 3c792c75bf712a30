"""``CollectionService``: one collection's cache, writes, feed, secrets and references.

The cache is write-through and O(1): reads never touch the store; a write goes to the
store first (one transaction) and to the cache after it commits; events are published
after the commit, in revision order, whether the write was this process's or another's
(noticed through the store's ``data_version``: SQLite's ``PRAGMA data_version``,
PostgreSQL's ``NOTIFY``; read from the change log). Stored rows are
untrusted: a row that does not validate against the model, or whose secret does not open
for its own collection, id and field, is quarantined (not served, logged once by id and
reason, never with a value). The service returns models; the wire JSON is the channel
binding's (:mod:`bridge.collection.channels`).

The cache, the write flow, the lifecycle and the quarantine are
:class:`bridge.state.service.StateService`'s, as for llm-config; this module is the
generic policy (model validation, sealed secrets bound to collection/id/field, unique
keys claimed in the cache, ``seq`` order, references).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import structlog
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel

# The follower's backoff (bridge.state.service) is the one helper of every retry loop.
from bridge.backoff import backoff_delays as backoff_delays  # noqa: PLC0414 - an explicit re-export
from bridge.collection.merge import merge_update
from bridge.collection.protocol import (
    SEALED,
    UNDECODABLE_ROW,
    Change,
    CollectionStore,
    Feed,
    StaleBaseError,
    StoredItem,
    associated_data,
    check_write,
    sealed_values,
    unique_keys,
)
from bridge.collection.rules import PREVIEW_SUFFIX, Rules, secret_preview
from bridge.errors import (
    BridgeError,
    ConfigNotFoundError,
    ConfigOperationFailedError,
    FieldError,
    ServiceUnavailableError,
    ValidationError,
)
from bridge.keystore import KEY_ID_BYTES, DecryptionError, KeyCipher
from bridge.models import ChangeType, field_errors
from bridge.service.events import EventBus
from bridge.service.rules import (
    CIPHERTEXT_AUTH_FAILED,
    UNKNOWN_KEY_ID,
    valid_stored_id,
    valid_timestamp,
)
from bridge.state import (
    Cache,
    Quarantine,
    printable_id,
    shielded,
    utc_now,
)
from bridge.state.service import StateService, classify

T = TypeVar("T")
log = structlog.get_logger(__name__)

INVALID_ROW: Final = "INVALID_ROW"
"""Quarantine reason: the row's ``version`` is not a positive integer, its view does not
build, or the model's own validators raise on its values (other than a validation error).

(An id that is not a lower-case UUID is ``id.INVALID_FORMAT``; a timestamp that is not
ISO 8601 UTC with milliseconds, ``createdAt``/``updatedAt.INVALID_FORMAT``.)"""
PLAINTEXT_SECRET: Final = "PLAINTEXT_SECRET"  # noqa: S105 - a reason code, not a secret
"""Quarantine reason (a security event): a secret field stored in plain text in the row's
``data`` (outside ``$sealed``), as only another program writes it. The value is never logged.
(A ``<field>_preview`` without a sealed secret is ``<field>_preview.INVALID_FORMAT``.)"""
SECURITY_REASONS: Final = frozenset({CIPHERTEXT_AUTH_FAILED, PLAINTEXT_SECRET})
"""Quarantine reasons that are security events (``security_event`` is logged besides ``item_quarantined``)."""
UNKNOWN_REFERENCE: Final = "UNKNOWN_REFERENCE"
"""Field code of a reference to an id that does not exist (-32602)."""
MAX_WRITE_ATTEMPTS: Final = 5
"""Tries of an update whose item another process changed meanwhile."""
_REFUSALS: Final = (BridgeError, StaleBaseError)
"""What a store write raises as an answer (re-raised as it is; anything else is 5000)."""

Resolver = Callable[[str, str], Awaitable[bool]]
"""``resolve(target, id)``: True when collection ``target`` (or ``llm-config``) has item ``id``.

Raises :class:`~bridge.errors.ConfigOperationFailedError` when it cannot tell (the target's
store could not be read): a reference is then neither accepted nor cleared."""


class Referenced(Protocol):
    """What a reference needs of the collection it names (a ``CollectionService`` or llm-config's service)."""

    @property
    def events(self) -> EventBus[Any]:
        """Its change events (a deletion's follow-ups are handed to ``events.follow_up``)."""
        ...

    @property
    def removed(self) -> EventBus[str]:
        """The ids whose row left its store."""
        ...

    @property
    def load_failed(self) -> bool:
        """True while it is served degraded (an absent item is then not a deleted one)."""
        ...

    async def fetch(self, item_id: str) -> Any:
        """The view of ``item_id``, or None when it does not serve it."""
        ...

    def holds(self, item_id: str) -> bool:
        """True when ``item_id`` is stored but quarantined (an update may restore it)."""
        ...


@dataclass(slots=True)
class _Entry:
    item: StoredItem
    view: Any
    plain: dict[str, Any]
    """The model's fields by Python name, secrets excluded."""


class KeyClaims:
    """The unique keys of the items a cache serves: (unique field, key) → id of the item holding it.

    Two stored rows sharing a unique key (another program wrote them without
    ``item_keys``): the one admitted first keeps it, the other is held ``NAME_CONFLICT``
    (as llm-config holds a clashing name) and claims nothing. The service claims through
    it; ``bridge doctor`` replays a load with a fresh one (:func:`examine_collection`).

    Args:
        unique: the collection's unique fields (``Rules.unique``).
    """

    __slots__ = ("_held", "_unique")

    def __init__(self, unique: tuple[str, ...]) -> None:
        """Start with no key claimed."""
        self._unique = unique
        self._held: dict[tuple[str, str], str] = {}

    def claim(self, row_id: str, old: _Entry | None, entry: _Entry | None) -> bool:
        """Move ``row_id``'s unique keys from ``old`` to ``entry``; False when another item holds one.

        ``old``'s keys are released either way; on False ``entry`` claims nothing.
        """
        keys = unique_keys(self._unique, entry.plain) if entry is not None else []
        taken = any(self._held.get(key, row_id) != row_id for key in keys)
        if old is not None:
            for key in unique_keys(self._unique, old.plain):
                if self._held.get(key) == row_id:
                    del self._held[key]
        if taken:
            return False
        for key in keys:
            self._held[key] = row_id
        return True


def _open_secret(collection: str, cipher: KeyCipher, item: StoredItem, field: str) -> str | None:
    """The plaintext of a secret field. Raises DecryptionError or ValueError when it does not open."""
    raw = sealed_values(item.data).get(field)
    if raw is None:
        return None
    blob = bytes.fromhex(raw)
    return cipher.decrypt(blob, associated_data(collection, item.id, field))


def check_item(  # noqa: PLR0911 - one per reason
    rules: Rules, cipher: KeyCipher, item: StoredItem
) -> tuple[_Entry | None, str | None]:
    """Check a stored row with its collection's rules, as the service does where it enters the cache.

    Args:
        rules: the collection's rules (model, secret fields, wire types).
        cipher: opens the secrets (every known data key).
        item: the row as stored (untrusted).

    Returns:
        ``(entry, None)`` when it may be served, else ``(None, reason code)`` (never a value):
        ``UNDECODABLE_ROW``, ``INVALID_ROW``, ``id``/``createdAt``/``updatedAt.INVALID_FORMAT``,
        ``PLAINTEXT_SECRET``, ``UNKNOWN_KEY_ID``, ``CIPHERTEXT_AUTH_FAILED``,
        ``<field>.<FIELD CODE>`` of the model (e.g. ``name.INVALID_LENGTH``),
        ``<field>_preview.INVALID_FORMAT``, ``$sealed.INVALID_FORMAT``.
    """
    data = item.data
    if data is None:
        return None, UNDECODABLE_ROW
    if type(item.version) is not int or item.version < 1:
        return None, INVALID_ROW
    # Served ids and timestamps are what a write makes: an id no client can address,
    # or text that is not UTF-8 (which no reply could encode), never enters the cache.
    if not valid_stored_id(item.id):
        return None, "id.INVALID_FORMAT"
    if not valid_timestamp(item.created_at):
        return None, "createdAt.INVALID_FORMAT"
    if not valid_timestamp(item.updated_at):
        return None, "updatedAt.INVALID_FORMAT"
    opened = _open_secrets(rules, cipher, item, data)
    if isinstance(opened, str):
        return None, opened
    values, previews = opened
    try:
        model = rules.model.model_validate(values)
    except PydanticValidationError as exc:
        first = field_errors(exc)[0]
        return None, f"{first.field}.{first.code}"
    except Exception:  # the application's own validator met a value no write makes
        return None, INVALID_ROW
    plain = model.model_dump(mode="json", by_alias=False, exclude=set(rules.secret))
    fields = {
        **plain,
        **previews,
        "id": item.id,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "version": item.version,
    }
    try:
        view = rules.types.view.model_validate(fields)
    except PydanticValidationError:
        return None, INVALID_ROW
    return _Entry(item, view, plain), None


def _open_secrets(  # noqa: PLR0911 - one return per rule
    rules: Rules, cipher: KeyCipher, item: StoredItem, data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """The row's fields with each secret opened, and the previews; or the quarantine reason."""
    secret = rules.secret
    hidden = {SEALED, *(field + PREVIEW_SUFFIX for field in secret)}
    values = {k: v for k, v in data.items() if k not in hidden}
    if SEALED in data and not isinstance(data[SEALED], dict):
        return f"{SEALED}.INVALID_FORMAT"
    sealed = sealed_values(data)
    shown: dict[str, Any] = {}
    aliases = {field: rules.model.model_fields[field].alias or field for field in secret}
    if any(field in data or alias in data for field, alias in aliases.items()):
        return PLAINTEXT_SECRET
    for field in secret:
        try:
            raw = sealed.get(field)
            if raw is not None and not cipher.knows(bytes.fromhex(raw)[:KEY_ID_BYTES]):
                return UNKNOWN_KEY_ID
            values[field] = _open_secret(rules.name, cipher, item, field)
        except DecryptionError:
            return CIPHERTEXT_AUTH_FAILED
        except (ValueError, TypeError):
            return f"{field}.INVALID_FORMAT"
        preview = data.get(field + PREVIEW_SUFFIX)
        if (values[field] is None) != (preview is None) or (
            preview is not None and not isinstance(preview, str)
        ):
            # A preview with no sealed secret would tell of a secret that is not there.
            return f"{field}{PREVIEW_SUFFIX}.INVALID_FORMAT"
        shown[field + PREVIEW_SUFFIX] = preview
    return values, shown


class CollectionService(StateService[_Entry]):
    """Owns one collection: validation, cache, events, secrets and references. No sockets.

    Args:
        rules: the collection's rules and wire models (``Collection.rules``).
        store: the opened store (shared by every collection).
        cipher: seals secret fields.
        resolve: answers whether a referenced id exists (needed when the collection has
            references).
        watch: follow other processes' commits.

    Subscribe to :attr:`events` for the ``<Model>Changed`` models (synchronous callbacks),
    and to :attr:`removed` for the ids whose row left the store.

    The cache, write flow, lifecycle and quarantine are :class:`~bridge.state.service.StateService`'s;
    this class is its generic policy: rows validate against the model, secrets bind
    collection, id and field, unique keys are claimed in the cache, creation order is ``seq``.
    """

    _FOLLOW = "collection_follow"
    _WRITE_FAILED = "collection_write_failed"
    _LOAD_FAILED = "collection_load_failed"
    _REFUSALS = _REFUSALS

    def __init__(
        self,
        rules: Rules,
        store: CollectionStore,
        cipher: KeyCipher,
        *,
        resolve: Resolver | None = None,
        watch: bool = True,
    ) -> None:
        """Wire the service; :meth:`start` loads it."""
        self.events: EventBus[Any] = EventBus()
        self.removed: EventBus[str] = EventBus()
        quarantine = Quarantine("item_quarantined", SECURITY_REASONS, collection=rules.name)
        super().__init__(
            quarantine,
            self.events,
            self.removed,
            watch=watch,
            task_name=f"collection-watcher-{rules.name}",
            collection=rules.name,
        )
        self.rules = rules
        self.name = rules.name
        self._types = rules.types
        self._store = store
        self._cipher = cipher
        self._resolve = resolve
        self._keys = KeyClaims(rules.unique)
        self._seen = -1
        """The store's ``data_version`` when the cache last caught up."""
        self._tasks: set[asyncio.Task[Any]] = set()
        """Ids whose row left the store (deleted here or by another process), served or
        quarantined; not one merely quarantined (still stored). A subscriber's task handed
        to ``events.follow_up`` is awaited by :meth:`delete` before it answers."""

    # ---- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Load every item (quarantining bad rows) and start following other processes.

        A load that fails serves the collection degraded (DESIGN §4): empty, writes
        refused with 5000, references to it neither checked nor cleared; the follower
        retries the load (with backoff) and publishes what it finds as ``created``.
        """
        if self._watch:
            self._seen = self._store.data_version()
        await self._first_load()

    async def close(self) -> None:
        """Stop following the store; later calls raise 5003."""
        await self._stop(*self._tasks)

    def _ready(self) -> None:
        if self._closed or not self._loaded:
            raise ServiceUnavailableError

    def _writable(self) -> None:
        self._ready()
        if self._load_failed:
            raise ConfigOperationFailedError("The collection could not be loaded; it is retried")

    # ---- reads (the cache only) -------------------------------------------------------

    def read(self, item_id: str) -> Any:
        """Return the view of ``item_id`` from the cache, or None when unknown.

        Raises:
            ServiceUnavailableError: the service is closed or not started (5003).
        """
        self._ready()
        entry = self._cache.get(item_id)
        return None if entry is None else entry.view

    async def fetch(self, item_id: str) -> Any:
        """:meth:`read` for the channel binding (which tries :meth:`peek` first)."""
        return self.read(item_id)

    async def views(self) -> tuple[int, tuple[Any, ...]]:
        """:meth:`snapshot` for the channel binding (which tries :meth:`peek_views` first).

        Raises:
            ServiceUnavailableError: the service is closed or not started (5003).
        """
        return self.snapshot()

    def list(self) -> tuple[Any, ...]:
        """Every view in creation order (a tuple kept until the next change; empty if none)."""
        self._ready()
        views = self._cache.built  # the hot path: no call once the tuple is built
        return self._cache.views() if views is None else views

    def snapshot(self) -> tuple[int, tuple[Any, ...]]:
        """Return ``(revision, views)``: every view in creation order and the revision they reflect."""
        return self._revision, self.list()

    def quarantined(self) -> dict[str, str]:
        """Quarantined row id → reason code (e.g. ``name.INVALID_LENGTH``, ``CIPHERTEXT_AUTH_FAILED``)."""
        return self._quarantine.reasons()

    async def secret(self, item_id: str, field: str) -> str | None:
        """Return the plaintext of secret ``field`` of ``item_id`` (server side only); None when unknown."""
        self._ready()
        entry = self._cache.get(item_id)
        if entry is None or field not in self.rules.secret:
            return None
        return self._open(entry.item, field)

    # ---- writes -------------------------------------------------------------------

    async def create(self, item: BaseModel) -> Any:
        """Create an item from the validated model ``item``; return its view.

        Raises:
            ValidationError: a reference names an id that does not exist (-32602,
                ``item.<field>`` ``UNKNOWN_REFERENCE``).
            ConfigOperationFailedError: a reference cannot be checked, or the store
                failed (5000; nothing changed).
            DuplicateConfigNameError: a unique field's key is taken (4009).
            ServiceUnavailableError: the service is closed (5003).
        """
        self._writable()
        values = item.model_dump(mode="json", by_alias=False)
        await self._check_references(values, set(values), "item")
        item_id = str(uuid.uuid4())
        data, plain = self._seal(item_id, values, {}, set(values))
        keys = unique_keys(self.rules.unique, plain)
        feed = await self._write(
            lambda since: self._store.insert(self.name, item_id, data, keys=keys, now=utc_now(), since=since)
        )
        view = self._written(item_id, feed)
        # A referenced item deleted between the check and the commit: cleared now (as update does).
        await self._recheck(plain, set(values))
        entry = self._cache.get(item_id)
        return view if entry is None else entry.view

    async def update(self, item_id: str, updates: BaseModel, expected_version: int | None = None) -> Any:
        """Apply the fields the client sent in ``updates`` (null clears a nullable field); return the view.

        Raises:
            ValidationError: the result fails the model (``updates.<field>``) or a
                reference names an unknown id (-32602).
            ConfigNotFoundError: no item has ``item_id`` (4004).
            VersionConflictError: ``expected_version`` differs from the stored version (4012).
            DuplicateConfigNameError: a unique key is taken (4009).
            ConfigOperationFailedError: the store failed (5000; nothing changed).
        """
        self._writable()
        sent = updates.model_dump(mode="json", by_alias=False, include=updates.model_fields_set)
        await self._check_references(sent, set(sent), "updates")
        # Shielded like create and delete: a cancelled caller never splits store and cache.
        view = await shielded(self._modify(item_id, lambda _: sent, expected_version))
        if view is None:  # pragma: no cover - a client patch always applies
            raise ConfigOperationFailedError
        return view

    async def delete(self, item_id: str, expected_version: int | None = None) -> bool:
        """Delete ``item_id``; False when unknown.

        Returns once the references to it held by this process's collections are cleared
        (their ``updated`` events come before the caller's response).

        Raises:
            VersionConflictError: ``expected_version`` differs from the stored version (4012).
            ConfigOperationFailedError: the store failed (5000; nothing changed).
        """
        self._writable()
        if (
            await self._write(lambda since: self._store.delete(self.name, item_id, expected_version, since))
            is None
        ):
            return False
        await self.events.settle()
        return True

    async def clear_reference(self, target: str, target_id: str) -> int:
        """Null every field holding ``target_id`` of ``target`` (``set-null``); return the items changed.

        Each is a normal versioned update with an ``updated`` event; an item changed
        meanwhile is looked at again, and one no longer holding the id is left alone.
        """
        fields = [f for f, ref in self.rules.references.items() if ref.target == target]
        if not fields or self._closed or self._load_failed:
            return 0
        # Items another process wrote a moment ago may not be in the cache yet.
        async with self._lock:
            await self._catch_up()
        changed = 0
        for item_id, entry in builtins.list(self._cache.items()):
            if not any(entry.plain.get(f) == target_id for f in fields):
                continue

            def nulls(plain: dict[str, Any]) -> dict[str, Any] | None:
                hit = {f: None for f in fields if plain.get(f) == target_id}
                return hit or None

            with contextlib.suppress(ConfigNotFoundError):
                if await self._modify(item_id, nulls, None) is not None:
                    changed += 1
                    log.info("reference_cleared", collection=self.name, id=item_id, target=target)
        return changed

    async def repair_references(self) -> int:
        """Clear references to ids that no longer exist (deleted while this process was down).

        Nothing is cleared when a target cannot be read (its store failed to load): an
        item that cannot be seen is not a deleted one; the next start repairs. A clearing
        write that fails is logged, not raised (start-up goes on).
        """
        if self._resolve is None or self._load_failed:
            return 0
        gone: set[tuple[str, str]] = set()
        try:
            for entry in builtins.list(self._cache.values()):
                for field, ref in self.rules.references.items():
                    value = entry.plain.get(field)
                    if (
                        isinstance(value, str)
                        and (ref.target, value) not in gone
                        and not await self._resolve(ref.target, value)
                    ):
                        gone.add((ref.target, value))
        except ConfigOperationFailedError:
            log.warning("reference_repair_skipped", collection=self.name)
            return 0
        changed = 0
        try:
            for target, target_id in sorted(gone):
                changed += await self.clear_reference(target, target_id)
        except Exception:
            # A store that cannot take the writes now: served as it is, repaired next start.
            log.exception("reference_repair_failed", collection=self.name)
        return changed

    def on_deleted(self, target: str, target_id: str) -> asyncio.Task[int] | None:
        """Schedule :meth:`clear_reference` (for an event callback: synchronous); return its task.

        The caller hands the task to the publishing bus's
        :meth:`~bridge.service.events.EventBus.follow_up`, so a delete made through this
        process answers after the clearing (DESIGN §5). None when closed.
        """
        if self._closed:
            return None
        task = asyncio.get_running_loop().create_task(self.clear_reference(target, target_id))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reference_clear_failed", collection=self.name, error=type(task.exception()).__name__)

    async def _modify(
        self,
        item_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        expected_version: int | None,
    ) -> Any:
        """Merge ``change(current fields)`` into the item and write it; None when ``change`` returns None.

        A change that alters no value writes nothing (no version, no revision, no event),
        once the cache has caught up with the store; ``expected_version`` is still checked.
        A quarantined item is merged from its stored fields and, when the result is valid,
        restored (DESIGN §3; sent as ``created``).
        """
        done: dict[str, Any] = {}  # what the attempt decided: the view to answer, or what it wrote
        feed = await self._write(lambda _: self._merge_and_write(item_id, change, expected_version, done))
        if "plain" not in done:
            return done.get("view")
        view = self._written(item_id, feed)
        await self._recheck(done["plain"], done["sent"])
        entry = self._cache.get(item_id)
        return view if entry is None else entry.view

    async def _merge_and_write(
        self,
        item_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        expected_version: int | None,
        done: dict[str, Any],
    ) -> Feed[StoredItem] | None:
        """:meth:`_modify`'s store write (lock held): merge, then write on the item's version.

        Retries when another process changed the item meanwhile (``StaleBaseError``: catch
        up, merge again). Returns None when there is nothing to write (``done["view"]``
        is then the answer, if any); else the feed, with ``done["plain"]`` and ``done["sent"]``.
        """
        caught_up = False
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            entry = self._cache.get(item_id)
            restoring = False
            if entry is None:
                await self._catch_up()
                entry = self._cache.get(item_id)
                if entry is None:
                    entry, restoring = await self._held_entry(item_id), True
            sent = change(entry.plain)
            if sent is None:
                return None
            current, unopened = self._current(entry)
            # Secrets compare in clear: the same secret sent again keeps its ciphertext. A held
            # item's write rewrites every field sent, and each secret that did not open.
            merged = merge_update(current, sent, self.rules, unopened=unopened, held=restoring)
            if merged is None:
                if not caught_up:  # another process may have changed it meanwhile
                    await self._catch_up()
                    caught_up = True
                    continue
                check_write(item_id, entry.item.version, expected_version, None)
                done["view"] = entry.view
                return None
            data, plain = self._seal(item_id, merged.values, entry.item.data or {}, set(merged.changed))
            try:
                feed = await self._store.update(
                    self.name,
                    item_id,
                    data,
                    keys=unique_keys(self.rules.unique, plain),
                    now=utc_now(),
                    base_version=entry.item.version,
                    expected_version=expected_version,
                    since=self._revision,
                )
            except StaleBaseError:
                await self._catch_up()
                continue
            # A restored item's references were not followed while it was held: each is checked again.
            done["plain"], done["sent"] = (
                plain,
                set(sent) | (set(self.rules.references) if restoring else set()),
            )
            return feed
        raise ConfigOperationFailedError("The item kept changing; try again")

    def _current(self, entry: _Entry) -> tuple[dict[str, Any], set[str]]:
        """The entry's fields with its secrets opened, and the secrets that do not open (a held row's)."""
        current = dict(entry.plain)
        unopened: set[str] = set()
        for field in self.rules.secret:
            try:
                current[field] = self._open(entry.item, field)
            except (DecryptionError, ValueError, TypeError):
                current[field] = None
                unopened.add(field)
        return current, unopened

    async def _held_entry(self, item_id: str) -> _Entry:
        """The stored row of a quarantined item, as an entry to merge a patch into (lock held).

        Raises:
            ConfigNotFoundError: no such row, or one no update can restore (its id,
                version or creation time is not what a write makes: delete it).
        """
        if item_id not in self._quarantine:
            raise ConfigNotFoundError(item_id)
        _, items = await self._store.load(self.name)
        item = next((found for found in items if found.id == item_id), None)
        if (
            item is None
            or type(item.version) is not int
            or item.version < 1
            or not valid_timestamp(item.created_at)
        ):
            raise ConfigNotFoundError(item_id)
        fields = set(self.rules.model.model_fields) - set(self.rules.secret)
        plain = {key: value for key, value in (item.data or {}).items() if key in fields}
        return _Entry(item, None, plain)

    def _written(self, item_id: str, feed: Feed[StoredItem] | None) -> Any:
        """The view of the item this process just wrote (``feed``: what its write returned).

        From the cache; when the cache could not take the committed write (its apply and
        the reload after it failed: the follower reloads), from the write's own change.

        Raises:
            ConfigOperationFailedError: the row fails its own checks, or another process
                deleted it right after (5000).
        """
        entry = self._cache.get(item_id)
        if entry is not None:
            return entry.view
        own = feed.changes[-1] if feed is not None and feed.changes else None
        if self._behind.is_set() and own is not None and own.id == item_id and own.row is not None:
            built, _ = self._verdict(own.row)
            if isinstance(built, _Entry):
                return built.view
        raise ConfigOperationFailedError

    # ---- secrets and references ---------------------------------------------------------

    def _seal(
        self, item_id: str, values: dict[str, Any], stored: dict[str, Any], sent: set[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(stored data, plain fields without secrets)``; secrets not sent keep their ciphertext."""
        data = {k: v for k, v in values.items() if k not in self.rules.secret}
        plain = dict(data)
        old = sealed_values(stored)
        sealed: dict[str, str] = {}
        for field in self.rules.secret:
            preview = field + PREVIEW_SUFFIX
            if field not in sent:
                if field in old:
                    sealed[field] = old[field]
                data[preview] = stored.get(preview)
                continue
            secret = values.get(field)
            if secret is None:
                data[preview] = None
                continue
            sealed[field] = self._cipher.encrypt(secret, associated_data(self.name, item_id, field)).hex()
            data[preview] = secret_preview(secret)
        if sealed:
            data[SEALED] = sealed
        return data, plain

    def _open(self, item: StoredItem, field: str) -> str | None:
        """The plaintext of a secret field. Raises DecryptionError or ValueError when it does not open."""
        return _open_secret(self.name, self._cipher, item, field)

    async def _check_references(self, values: dict[str, Any], sent: set[str], prefix: str) -> None:
        errors = []
        for field, ref in self.rules.references.items():
            value = values.get(field)
            if (
                field in sent
                and value is not None
                and (self._resolve is None or not await self._resolve(ref.target, value))
            ):
                wire = self.rules.model.model_fields[field].alias or field
                errors.append(
                    FieldError(
                        f"{prefix}.{wire}", UNKNOWN_REFERENCE, f"must be the id of an existing {ref.target}"
                    )
                )
        if errors:
            raise ValidationError(errors)

    async def _recheck(self, plain: dict[str, Any], sent: set[str]) -> None:
        """After a write: a referenced item deleted between the check and the commit is cleared now."""
        if self._resolve is None:
            return
        for field, ref in self.rules.references.items():
            value = plain.get(field)
            if not (field in sent and isinstance(value, str)):
                continue
            try:
                gone = not await self._resolve(ref.target, value)
            except ConfigOperationFailedError:
                continue  # cannot tell: the write stands as checked
            if gone:
                await self.clear_reference(ref.target, value)

    # ---- applying committed changes ----------------------------------------------------

    def _verdict(
        self,
        item: StoredItem,
        prepared: Any = None,  # noqa: ARG002 - a hook: no check of feed entries to reuse
    ) -> tuple[_Entry | None, str | None]:
        """Check a stored row: its entry, or the quarantine reason (never a value): :func:`check_item`."""
        return check_item(self.rules, self._cipher, item)

    # ---- the state policy (hooks of StateService) ---------------------------------------

    async def _load(self) -> tuple[int, builtins.list[StoredItem]]:
        return await self._store.load(self.name)

    async def _changes_since(self, revision: int) -> Feed[StoredItem]:
        return await self._store.changes_since(self.name, revision)

    def _change(self, change: Change[StoredItem]) -> tuple[str, StoredItem | None]:
        return change.id, change.row

    def _same(self, entry: _Entry, row: StoredItem) -> bool:
        return entry.item == row

    def _event(self, kind: str, row_id: str, revision: int, view: Any = None) -> Any:
        changed: Any = self._types.changed
        return changed(type=ChangeType(kind), id=row_id, revision=revision, item=view)

    def _place(self, row_id: str, entry: _Entry, restored: bool) -> None:  # noqa: ARG002 - a hook
        # Creation order: a new item goes last unless another process created it earlier.
        self._cache.place(row_id, entry, _seq)

    def _sort(self, cache: Cache[_Entry]) -> None:
        cache.reorder(_seq)

    def _claim(self, row_id: str, old: _Entry | None, entry: _Entry | None) -> bool:
        """Move ``row_id``'s unique keys from ``old`` to ``entry``: :meth:`KeyClaims.claim`."""
        return self._keys.claim(row_id, old, entry)

    def _loaded_log(self, *, after_failure: bool) -> None:
        if not after_failure:
            log.info(
                "collection_loaded", collection=self.name, count=len(self._cache), revision=self._revision
            )

    async def _recovered(self) -> None:
        """A failed load succeeded: every item was published as ``created``; repair references."""
        log.info("collection_recovered", collection=self.name, count=len(self._cache))
        await self.repair_references()

    async def _reload(self) -> None:
        await super()._reload()
        log.info("collection_reloaded", collection=self.name, revision=self._revision)

    async def _wait(self) -> None:
        """Poll ``data_version`` until another commit shows (DESIGN §3); one poll while degraded.

        The version seen is noted before the catch-up that follows: a commit during it shows
        at the next poll.
        """
        while True:
            await asyncio.sleep(self._store.poll_interval_s)
            now = self._store.data_version()
            if self._load_failed or self._closed or now != self._seen or now == -1:
                self._seen = now
                return


def _seq(entry: _Entry) -> int:
    """An entry's creation order (the store's ``seq``)."""
    return entry.item.seq


async def reseal_secrets(store: CollectionStore, cipher: KeyCipher) -> tuple[int, int, set[bytes]]:
    """Seal every collection secret with ``cipher``'s newest key (``bridge rotate-key``).

    Each secret opens with the key its first bytes name, bound to its collection, item
    and field, and is sealed again for the same; one that opens with no key is left as
    it is. Needs no collection definition: the store keeps every ciphertext under
    :data:`~bridge.collection.protocol.SEALED`.

    Returns:
        ``(items rewritten, secrets no key opens, ids of the keys still named)``.
    """
    unopened = 0

    def seal(collection: str, item_id: str, field: str, blob: bytes) -> bytes | None:
        nonlocal unopened
        if blob[:KEY_ID_BYTES] == cipher.key_id:
            return None
        bound = associated_data(collection, item_id, field)
        try:
            plain = cipher.decrypt(blob, bound)
        except DecryptionError:
            unopened += 1
            return None
        return cipher.encrypt(plain, bound)

    resealed = await store.reseal(seal)
    return resealed, unopened, await store.key_ids()


def examine_collection(
    rules: Rules, cipher: KeyCipher, items: Iterable[StoredItem]
) -> builtins.list[tuple[str, str]]:
    """The rows of one collection its service would quarantine at start, for the same reasons.

    The service's own load, without a store or a cache: each row in creation order through
    :func:`~bridge.state.service.admit` with :func:`check_item` and a fresh
    :class:`KeyClaims` (so a row whose unique key an earlier served row holds is
    ``NAME_CONFLICT``). What ``python myapp.py doctor`` (``bridge.cli.main(registry=...)``)
    reports for the application's collections. Reasons never carry a value.

    Args:
        rules: the collection's rules (``Collection.rules``).
        cipher: the data keys (a cipher that knows none reports every secret ``UNKNOWN_KEY_ID``).
        items: the collection's rows as stored, in creation order (``seq``).

    Returns:
        ``(printable id, reason code)`` per row that would be quarantined, in creation order.
    """
    claims = KeyClaims(rules.unique)
    found = classify(
        items,
        lambda item, _prepared: check_item(rules, cipher, item),
        claims.claim,
    )
    return [(printable_id(item_id), reason) for item_id, reason in found.held.items()]


def examine_items(
    items: builtins.list[tuple[str, StoredItem]], cipher: KeyCipher | None
) -> builtins.list[tuple[str, str, str]]:
    """The checks ``bridge doctor`` can make without the application's definitions.

    Plain ``bridge doctor`` has none; an application's own CLI checks its collections with
    :func:`examine_collection` instead (the server's rules) and these only for rows of
    collections it does not define.

    A row whose fields do not decode, or a secret that no key opens for its collection,
    item and field, is one the server would quarantine (the model's own rules need the
    application and are not checked here). A field counts as secret when a row of the
    same collection holds a ciphertext for it (only secret fields are sealed); then a row
    holding it in plain text (its name or camelCase wire name) is ``PLAINTEXT_SECRET``,
    and one whose ``<field>_preview`` is set without a ciphertext, or missing beside one,
    is ``<field>_preview.INVALID_FORMAT``. A secret field no row of its collection holds
    sealed cannot be told from an ordinary field, so it is not checked (no false finding
    on an application field named ``*_preview``). Findings never carry a value.

    Returns:
        ``(collection, printable id, reason)`` per finding, in creation order.
    """
    secret: dict[str, dict[str, None]] = {}  # collection → fields sealed in any row (ordered)
    for collection, item in items:
        secret.setdefault(collection, {}).update(dict.fromkeys(sealed_values(item.data)))
    findings: builtins.list[tuple[str, str, str]] = []
    for collection, item in items:
        reason = None
        if item.data is None:
            reason = UNDECODABLE_ROW
        elif SEALED in item.data and not isinstance(item.data[SEALED], dict):
            reason = f"{SEALED}.INVALID_FORMAT"
        elif any(field in item.data or to_camel(field) in item.data for field in secret[collection]):
            reason = PLAINTEXT_SECRET
        else:
            reason = _examine_secrets(collection, item, cipher) or _examine_previews(
                item.data, secret[collection]
            )
        if reason is not None:
            findings.append((collection, printable_id(item.id), reason))
    return findings


def _examine_previews(data: dict[str, Any], secret: Iterable[str]) -> str | None:
    """``<field>_preview.INVALID_FORMAT``: a preview of a secret the row does not hold, or none beside one."""
    sealed = sealed_values(data)
    for field in secret:
        preview = data.get(field + PREVIEW_SUFFIX)
        if (sealed.get(field) is None) != (preview is None) or (
            preview is not None and not isinstance(preview, str)
        ):
            return f"{field}{PREVIEW_SUFFIX}.INVALID_FORMAT"
    return None


def _examine_secrets(collection: str, item: StoredItem, cipher: KeyCipher | None) -> str | None:
    for field, raw in sealed_values(item.data).items():
        try:
            blob = bytes.fromhex(raw)
        except (ValueError, TypeError):
            return f"{field}.INVALID_FORMAT"
        if cipher is None or not cipher.knows(blob[:KEY_ID_BYTES]):
            return UNKNOWN_KEY_ID
        try:
            cipher.decrypt(blob, associated_data(collection, item.id, field))
        except DecryptionError:
            return CIPHERTEXT_AUTH_FAILED
    return None
