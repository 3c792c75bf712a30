"""The collections' write protocol as pure functions: a backend only runs SQL.

Decided here, once, for every backend:

- the stored form of an item (:class:`StoredItem`): its fields as one JSON object by
  Python name (a secret field as ``<field>`` = hex ciphertext and ``<field>_preview``),
  plus ``id``, ``seq`` (creation order), ``created_at``, ``updated_at``, ``version``
  and ``revision``; the codec of that object (:func:`encode_data`, :func:`decode_data`);
- the unique keys of an item (:func:`unique_keys`: ``casefold(NFC(trim(value)))``);
- the checks of a write inside its transaction (:func:`check_write`): existence and
  ``expectedVersion`` (:func:`bridge.storage.protocol.check_stored`, shared with the
  config store), and the version the caller based its change on;
- the overlay of a patch (:func:`merge`; the whole merge of an update, validation and
  the secrets' rules, is :func:`bridge.collection.merge.merge_update`);
- the revision policy: one revision per write, per collection, gap-free; the log is
  trimmed to :data:`~bridge.storage.protocol.CHANGE_LOG_KEEP` entries every
  :data:`~bridge.storage.protocol.TRIM_EVERY` revisions (:func:`trim_below`), and a
  reader further behind than the log reloads (:func:`feed_reaches`);
- the change-log codec (:func:`encode_entry`, :func:`decode_entry`).

Nothing read back is trusted: :func:`decode_data` and :func:`decode_entry` report what
does not decode instead of raising on the caller's whole read.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from bridge.collection.merge import merge as merge  # noqa: PLC0414 - re-exported: the overlay of a patch
from bridge.errors import DuplicateConfigNameError
from bridge.models import name_key
from bridge.storage import protocol as _log
from bridge.storage.protocol import CHANGE_LOG_KEEP, TRIM_EVERY, check_stored, integer_version

UNDECODABLE_ROW: Final = "UNDECODABLE_ROW"
"""Quarantine reason: the stored fields are not a JSON object."""
SEALED: Final = "$sealed"
"""Key of the stored object holding each secret field's ciphertext (hex) by field name.

Kept apart from the fields so that tools without the application's definitions (``bridge
rotate-key``, the data-key check at start-up) find every ciphertext and its key id."""
Resealer = Callable[[str, str, str, bytes], "bytes | None"]
"""``seal(collection, item_id, field, blob)``: the blob sealed again, or None to leave it."""


def associated_data(collection: str, item_id: str, field: str) -> str:
    """The AES-GCM associated data of a secret: binds it to its collection, item and field.

    A ciphertext copied to another row, field or collection fails authentication. The
    NUL separators keep it apart from llm-config's (a bare config id).
    """
    return f"bridge-collection\0{collection}\0{item_id}\0{field}"


def sealed_values(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``$sealed`` object of stored fields (field → hex ciphertext); empty when absent or malformed."""
    value = None if data is None else data.get(SEALED)
    return value if isinstance(value, dict) else {}


def key_ids_of(data: Mapping[str, Any] | None, width: int) -> set[bytes]:
    """The data-key ids (first ``width`` bytes) naming the ciphertexts of one stored item."""
    found: set[bytes] = set()
    for raw in sealed_values(data).values():
        if isinstance(raw, str):
            try:
                found.add(bytes.fromhex(raw)[:width])
            except ValueError:
                continue
    return found


def resealed(
    collection: str, item_id: str, data: dict[str, Any] | None, seal: Resealer
) -> dict[str, Any] | None:
    """``data`` with each ciphertext sealed again by ``seal``; None when none changed or undecodable."""
    old = sealed_values(data)
    new: dict[str, Any] = {}
    for field, raw in old.items():
        blob = bytes.fromhex(raw) if isinstance(raw, str) and _is_hex(raw) else None
        again = None if blob is None else seal(collection, item_id, field, blob)
        new[field] = raw if again is None else again.hex()
    if new == old or data is None:
        return None
    return {**data, SEALED: new}


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class StoredItem:
    """One item as stored; values are untrusted until the service's checks pass.

    Attributes:
        id: item id (UUID text).
        seq: creation order (increasing, never reused).
        data: the fields by Python name (secret fields as hex ciphertext + preview), or
            None when the stored text does not decode as a JSON object.
        created_at: ISO 8601 UTC, milliseconds.
        updated_at: ISO 8601 UTC, milliseconds.
        version: 1 on create, + 1 per update.
        revision: the collection's revision of the item's last write.
    """

    id: str
    seq: int
    data: dict[str, Any] | None
    created_at: str
    updated_at: str
    version: int
    revision: int


@dataclass(frozen=True)
class Change:
    """One committed write as the change feed reports it.

    Attributes:
        revision: the collection revision the write took.
        id: the item's id.
        kind: ``created``, ``updated`` or ``deleted``.
        item: the item as of that revision (None for ``deleted``, or when undecodable).
        undecodable: the log entry did not decode (the reader reloads from the table).
    """

    revision: int
    id: str
    kind: str
    item: StoredItem | None
    undecodable: bool = False


@dataclass(frozen=True)
class Feed:
    """What a write or a catch-up returns: changes after ``since`` up to ``revision``.

    Attributes:
        revision: the collection's revision after the write (or now).
        changes: every change after ``since`` in revision order, the writer's own last;
            None when the log no longer reaches ``since`` (the reader reloads).
    """

    revision: int
    changes: list[Change] | None


class StaleBaseError(Exception):
    """The item changed since the version the caller based its change on (no expectedVersion given).

    The service catches up with the feed and computes its change again.
    """


def unique_key(value: object) -> str:
    """Return the uniqueness key of a value: ``casefold(NFC(trim(value)))`` ("Straße" = "STRASSE").

    The rule of a config name (:func:`bridge.models.name_key`), applied to the value's text.
    """
    return name_key(str(value))


def unique_keys(fields: Iterable[str], data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return ``(field, key)`` for each unique field holding a value (None holds no key)."""
    return [(field, unique_key(data[field])) for field in fields if data.get(field) is not None]


def encode_data(data: Mapping[str, Any]) -> str:
    """Return the stored JSON text of an item's fields (keys sorted: equal data, equal text)."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def decode_data(text: object) -> dict[str, Any] | None:
    """Return the fields stored as ``text``, or None when it is not a JSON object."""
    try:
        value = orjson.loads(text)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def make_item(values: tuple[Any, ...]) -> StoredItem:
    """Build an item from ``(id, seq, data_text, created_at, updated_at, version, revision)``."""
    item_id, seq, data, created_at, updated_at, version, revision = values
    return StoredItem(item_id, seq, decode_data(data), created_at, updated_at, version, revision)


ITEM_COLUMNS: Final = ("id", "seq", "data", "created_at", "updated_at", "version", "revision")
"""The columns :func:`make_item` reads, in its order."""


def check_write(
    item_id: str, stored_version: object | None, expected_version: int | None, base_version: int | None
) -> None:
    """Check an update or delete against the stored row, inside the write transaction.

    Args:
        item_id: the item's id.
        stored_version: the row's version, or None when there is no row.
        expected_version: the client's ``expectedVersion``, or None.
        base_version: the version the caller computed its change from, or None when the
            change does not depend on it (a delete).

    Raises:
        ConfigNotFoundError: no row (only when ``base_version`` is given: an update).
        VersionConflictError: ``expected_version`` differs from the stored version.
        StaleBaseError: no ``expected_version`` and the row moved past ``base_version``.
    """
    exists = check_stored(item_id, stored_version, expected_version, required=base_version is not None)
    if exists and base_version is not None and integer_version(stored_version) != base_version:
        raise StaleBaseError(item_id)


def created_item(item_id: str, seq: int, data: Mapping[str, Any], now: str, revision: int) -> StoredItem:
    """The item an insert writes: version 1, created and updated ``now``, at ``revision``.

    Args:
        item_id: the new id.
        seq: the creation order the database gave the row.
        data: the stored fields (:func:`encode_data`'s input).
        now: ISO 8601 UTC, milliseconds.
        revision: the collection revision the insert took.
    """
    return StoredItem(item_id, seq, dict(data), now, now, 1, revision)


def rewritten(item: StoredItem, data: Mapping[str, Any], revision: int, now: str | None = None) -> StoredItem:
    """The item an update or a reseal writes over ``item``: ``data``, version + 1, at ``revision``.

    Args:
        item: the stored item, its version checked to be an integer (:func:`check_write`,
            :func:`reseal_data`).
        data: the new stored fields.
        revision: the collection revision the write took.
        now: the new ``updated_at``; None keeps it (a reseal changes no field's value).
    """
    updated_at = item.updated_at if now is None else now
    return StoredItem(item.id, item.seq, dict(data), item.created_at, updated_at, item.version + 1, revision)


def reseal_data(collection: str, item: StoredItem, seal: Resealer) -> dict[str, Any] | None:
    """The item's fields with each secret sealed again (:func:`resealed`), or None to leave the row.

    None too when the stored version is no integer: such a row is quarantined, and a
    reseal is a write (version + 1) that it cannot take.
    """
    data = resealed(collection, item.id, item.data, seal)
    return None if data is None or type(item.version) is not int else data


def logged_row(change: Change) -> str | None:
    """The change-log ``row`` of a change the writer makes: the item as of its revision, or None (deleted)."""
    return None if change.item is None else encode_entry(change.item)


def duplicate_key(collection: str, field: str) -> DuplicateConfigNameError:
    """The error of a write whose unique ``field`` is another item's (4009, context ``{field}``)."""
    return DuplicateConfigNameError(
        f"Another item of {collection} has this {field}", context={"field": field}
    )


def trim_below(revision: int) -> int | None:
    """Return the revision at and below which a collection's log is trimmed after ``revision``, or None.

    :func:`bridge.storage.protocol.trim_below` on this module's :data:`TRIM_EVERY` and
    :data:`CHANGE_LOG_KEEP` (the config store's figures).
    """
    return _log.trim_below(revision, TRIM_EVERY, CHANGE_LOG_KEEP)


def feed_reaches(oldest: int | None, since: int, revision: int) -> bool:
    """True when the log (oldest entry ``oldest``) holds every change after ``since`` up to ``revision``.

    Nothing after ``since`` needs no log; else :func:`bridge.storage.protocol.feed_reaches`.
    """
    return revision <= since or _log.feed_reaches(oldest, since)


def log_window(since: int, revision: int, own: Change | None) -> tuple[int, int] | None:
    """The log entries a feed after ``since`` must read: ``(since, top]``; None when none.

    The writer's own change (``own``, at ``revision``) is never read back from the log.
    """
    top = revision - 1 if own is not None else revision
    return None if top <= since else (since, top)


def build_feed(
    revision: int,
    own: Change | None,
    window: tuple[int, int] | None,
    oldest: int | None,
    rows: Iterable[tuple[object, object, object, object]],
    *,
    present: Mapping[str, StoredItem] | None = None,
) -> Feed:
    """The feed after ``window[0]``: the logged entries ``rows`` of the window, then ``own``.

    Args:
        revision: the collection's revision now.
        own: the writer's own change, taken from the row it wrote; None for a catch-up.
        window: :func:`log_window`'s answer.
        oldest: the oldest revision left in the log (None: empty).
        rows: ``(revision, id, type, row)`` of the window's entries in revision order
            (not read when the log does not reach the window: pass ``()``).
        present: the table's item of every id the window's entries name (absent: no
            row), read in the same transaction (:func:`cross_check`); None checks nothing.

    Returns:
        ``changes`` None when the log does not reach the window or holds a gap there;
        an entry the table contradicts is marked :attr:`Change.undecodable`.
    """
    tail = [] if own is None else [own]
    if window is None:
        return Feed(revision, tail)
    since, top = window
    if not feed_reaches(oldest, since, top):
        return Feed(revision, None)
    changes = [decode_entry(*row) for row in rows]
    if len(changes) != top - since:
        return Feed(revision, None)
    if present is not None:
        changes = cross_check(changes, present, None if own is None else own.id)
    return Feed(revision, changes + tail)


def cross_check(changes: list[Change], present: Mapping[str, StoredItem], own_id: str | None) -> list[Change]:
    """Mark the log entries the table contradicts as undecodable (the reader reloads the table).

    Read in the same transaction as the log, the table holds every write up to the log's
    last revision: the last entry of each id must carry exactly the item the table holds
    (or, for ``deleted``, the table must not hold the id). One that does not (a forged
    ``deleted`` of a live item, which would also clear the references to it, or a row
    the table does not hold) is not trusted: the config store's rule
    (:func:`bridge.storage.base.cross_check`).

    Args:
        changes: the window's entries, in revision order.
        present: the table's item of every id they name (absent: no row).
        own_id: the id the writer's own change (after the window) wrote, whose entries
            the table no longer shows as logged; None for a catch-up.
    """
    last = {change.id: index for index, change in enumerate(changes)}
    checked: list[Change] = []
    for index, change in enumerate(changes):
        if last[change.id] == index and change.id != own_id and not change.undecodable:
            row = present.get(change.id)
            if (change.item is None) != (row is None) or (row is not None and change.item != row):
                change = Change(change.revision, change.id, change.kind, None, undecodable=True)  # noqa: PLW2901
        checked.append(change)
    return checked


def encode_entry(item: StoredItem) -> str:
    """Return the change-log text of an item as of its revision (its row, data inline)."""
    return orjson.dumps(
        {
            "id": item.id,
            "seq": item.seq,
            "data": item.data,
            "created_at": item.created_at,
            "updated_at": item.updated_at,
            "version": item.version,
            "revision": item.revision,
        }
    ).decode()


def decode_entry(revision: object, item_id: object, kind: object, row: object) -> Change:
    """Return the change a log entry records; ``undecodable`` when it does not decode."""
    if (
        type(revision) is not int
        or not isinstance(item_id, str)
        or kind not in {"created", "updated", "deleted"}
    ):
        return Change(
            revision if type(revision) is int else 0, str(item_id), "deleted", None, undecodable=True
        )
    if kind == "deleted":
        return Change(revision, item_id, "deleted", None)
    value = decode_data(row)
    if value is None:
        return Change(revision, item_id, str(kind), None, undecodable=True)
    try:
        item = StoredItem(
            value["id"],
            value["seq"],
            value["data"] if isinstance(value["data"], dict) else None,
            value["created_at"],
            value["updated_at"],
            value["version"],
            value["revision"],
        )
    except KeyError:
        return Change(revision, item_id, str(kind), None, undecodable=True)
    if (
        item.id != item_id
        or item.revision != revision
        or item.data is None
        or type(item.seq) is not int
        or type(item.version) is not int
        or not isinstance(item.created_at, str)
        or not isinstance(item.updated_at, str)
    ):
        # A lying entry: the reader reloads the table (the truth) instead of trusting it.
        return Change(revision, item_id, str(kind), None, undecodable=True)
    return Change(revision, item_id, str(kind), item)


@dataclass(frozen=True, slots=True)
class ItemWrite:
    """An insert or an update of one item, as :class:`CollectionStore` hands it to its backend.

    Attributes:
        collection: the collection's name.
        item_id: the item's id.
        data: the stored fields (:func:`encode_data`'s input).
        keys: the item's unique keys ``(field, key)`` (:func:`unique_keys`).
        now: ISO 8601 UTC, milliseconds: ``updated_at`` (and ``created_at`` of an insert).
        since: the caller's revision; the returned :class:`Feed` starts after it.
        base_version: an update's: the version the caller computed its change from
            (:func:`check_write`); None for an insert.
        expected_version: an update's ``expectedVersion``, or None.
    """

    collection: str
    item_id: str
    data: dict[str, Any]
    keys: list[tuple[str, str]]
    now: str
    since: int
    base_version: int | None = None
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class ItemDelete:
    """A delete of one item (see :class:`ItemWrite` for the attributes)."""

    collection: str
    item_id: str
    expected_version: int | None
    since: int


class CollectionStore(abc.ABC):
    """A backend: :class:`~bridge.collection.sqlite.SqliteCollectionStore` or ``PostgresCollectionStore``.

    Every write is one transaction that applies :func:`check_write`, takes the
    collection's next revision, logs the change and returns the :class:`Feed` after
    ``since``. The write methods are spelled here once; a backend implements
    :meth:`_insert`, :meth:`_update` and :meth:`_delete` on the request they build.
    """

    poll_interval_s: float

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection; idempotent."""

    @abc.abstractmethod
    async def has_ciphertexts(self) -> bool:
        """True when a collection with secret fields has an item."""

    @abc.abstractmethod
    async def key_ids(self) -> set[bytes]:
        """The ids of the data keys naming any stored secret."""

    @abc.abstractmethod
    async def reseal(self, seal: Resealer) -> int:
        """Seal every secret again with ``seal`` (each rewrite a logged write); return the items rewritten."""

    @abc.abstractmethod
    def data_version(self) -> int:
        """A number that moves with every commit to the store (-1: unknown, counts as moved)."""

    @abc.abstractmethod
    async def load(self, collection: str) -> tuple[int, list[StoredItem]]:
        """The collection's revision and every item in creation order."""

    @abc.abstractmethod
    async def changes_since(self, collection: str, since: int) -> Feed:
        """The changes after ``since`` (``changes`` None: the log does not reach it)."""

    async def insert(
        self,
        collection: str,
        item_id: str,
        data: dict[str, Any],
        *,
        keys: list[tuple[str, str]],
        now: str,
        since: int,
    ) -> Feed:
        """Insert a new item (version 1) with its unique keys, in one transaction.

        Raises:
            DuplicateConfigNameError: a unique key is taken (context ``{field}``).
        """
        return await self._insert(ItemWrite(collection, item_id, data, keys, now, since))

    async def update(
        self,
        collection: str,
        item_id: str,
        data: dict[str, Any],
        *,
        keys: list[tuple[str, str]],
        now: str,
        base_version: int,
        expected_version: int | None,
        since: int,
    ) -> Feed:
        """Replace an item's fields (version + 1) if it is still at ``base_version``.

        Raises:
            ConfigNotFoundError, VersionConflictError, StaleBaseError: see :func:`check_write`.
            DuplicateConfigNameError: a unique key is taken by another item.
        """
        return await self._update(
            ItemWrite(collection, item_id, data, keys, now, since, base_version, expected_version)
        )

    async def delete(
        self, collection: str, item_id: str, expected_version: int | None, since: int
    ) -> Feed | None:
        """Delete an item and its keys; None when no item has ``item_id``.

        Raises:
            VersionConflictError: ``expected_version`` differs from the stored version.
        """
        return await self._delete(ItemDelete(collection, item_id, expected_version, since))

    @abc.abstractmethod
    async def _insert(self, op: ItemWrite) -> Feed:
        """:meth:`insert` in the backend's SQL."""

    @abc.abstractmethod
    async def _update(self, op: ItemWrite) -> Feed:
        """:meth:`update` in the backend's SQL (``op.base_version`` set)."""

    @abc.abstractmethod
    async def _delete(self, op: ItemDelete) -> Feed | None:
        """:meth:`delete` in the backend's SQL."""
