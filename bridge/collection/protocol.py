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
- the layout of the change log: :data:`ITEM_LOG`, the
  :class:`~bridge.storage.changelog.LogCodec` of a logged item (its row, data inline:
  :func:`encode_entry`, :func:`decode_entry`), written by the writer (:func:`logged_row`)
  and trimmed by it (:func:`trim_below`).

The change log's rules (one revision per write, per collection, gap-free; the window a
feed reads, reach, gaps, decoding, the cross-check against the table, own change last,
the trim) are :mod:`bridge.storage.changelog`'s, shared with llm-config.

Nothing read back is trusted: :func:`decode_data` and the change log's decoding report
what does not decode instead of raising on the caller's whole read.
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
from bridge.storage import changelog
from bridge.storage.changelog import CHANGE_LOG_KEEP, TRIM_EVERY, LogCodec
from bridge.storage.changelog import feed_reaches as feed_reaches  # noqa: PLC0414 - re-exported
from bridge.storage.changes import Change as Change  # noqa: PLC0414 - re-exported for the backends and the service
from bridge.storage.changes import Feed as Feed  # noqa: PLC0414 - re-exported for the backends and the service
from bridge.storage.protocol import check_stored, integer_version

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


def logged_row(change: Change[StoredItem]) -> str | None:
    """The change-log ``row`` of a change the writer makes: the item as of its revision, or None (deleted)."""
    return None if change.row is None else encode_entry(change.row)


def recovered_revision(logged: object, stored: object) -> int:
    """A collection's revision when its counter row is lost: the highest logged or stored (0: none).

    Structural damage is repaired when nothing is lost (DESIGN §3). A counter restarting
    at 1 would collide with the log's entries and refuse every write; one below an item's
    stored revision would move the collection's revision backwards, and a follower that
    reflects that revision would take the next writes for ones it has applied. A value
    that is not an integer (another program's row) counts as none.

    Args:
        logged: the highest revision in the collection's change log (None: empty).
        stored: the highest revision of the collection's items (None: none).
    """
    return max((value for value in (logged, stored) if type(value) is int), default=0)


def duplicate_key(collection: str, field: str) -> DuplicateConfigNameError:
    """The error of a write whose unique ``field`` is another item's (4009, context ``{field}``)."""
    return DuplicateConfigNameError(
        f"Another item of {collection} has this {field}", context={"field": field}
    )


def trim_below(revision: int) -> int | None:
    """Return the revision at and below which a collection's log is trimmed after ``revision``, or None.

    :func:`bridge.storage.changelog.trim_below` on this module's :data:`TRIM_EVERY` and
    :data:`CHANGE_LOG_KEEP` (the config store's figures).
    """
    return changelog.trim_below(revision, TRIM_EVERY, CHANGE_LOG_KEEP)


def _item_lies(item: StoredItem, revision: int) -> bool:
    """A logged item lies when it is not of its entry's revision, or a column has the wrong type."""
    return (
        item.revision != revision
        or not isinstance(item.data, dict)
        or type(item.seq) is not int
        or type(item.version) is not int
        or not isinstance(item.created_at, str)
        or not isinstance(item.updated_at, str)
    )


ITEM_LOG: Final[LogCodec[StoredItem]] = LogCodec(
    fields=ITEM_COLUMNS, hex_fields=frozenset(), build=lambda values: StoredItem(*values), lies=_item_lies
)
"""The change-log codec of an item: its row as one JSON object keyed by :data:`ITEM_COLUMNS`,
the fields (``data``) inline; a lying entry (:func:`_item_lies`) is undecodable and the reader
reloads the table (the truth) instead."""


def encode_entry(item: StoredItem) -> str:
    """Return the change-log text of an item as of its revision (:data:`ITEM_LOG`)."""
    return ITEM_LOG.encode(item)


def decode_entry(revision: object, item_id: object, kind: object, row: object) -> Change[StoredItem]:
    """Return the change a log entry records, as a feed decodes it; ``undecodable`` when it does not decode.

    :func:`bridge.storage.changelog.decode_entry` with :data:`ITEM_LOG`.
    """
    return changelog.decode_entry(ITEM_LOG, (revision, kind, item_id, row))


@dataclass(frozen=True, slots=True)
class ItemWrite:
    """An insert or an update of one item, as :class:`CollectionStore` hands it to its backend.

    Attributes:
        collection: the collection's name.
        item_id: the item's id.
        data: the stored fields (:func:`encode_data`'s input).
        keys: the item's unique keys ``(field, key)`` (:func:`unique_keys`).
        now: ISO 8601 UTC, milliseconds: ``updated_at`` (and ``created_at`` of an insert).
        since: the caller's revision; the returned :class:`~bridge.storage.changes.Feed`
            starts after it.
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
    collection's next revision, logs the change and returns the
    :class:`~bridge.storage.changes.Feed` after ``since``. The write methods are spelled
    here once; a backend implements :meth:`_insert`, :meth:`_update` and :meth:`_delete`
    on the request they build.
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
    async def changes_since(self, collection: str, since: int) -> Feed[StoredItem]:
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
    ) -> Feed[StoredItem]:
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
    ) -> Feed[StoredItem]:
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
    ) -> Feed[StoredItem] | None:
        """Delete an item and its keys; None when no item has ``item_id``.

        Raises:
            VersionConflictError: ``expected_version`` differs from the stored version.
        """
        return await self._delete(ItemDelete(collection, item_id, expected_version, since))

    @abc.abstractmethod
    async def _insert(self, op: ItemWrite) -> Feed[StoredItem]:
        """:meth:`insert` in the backend's SQL."""

    @abc.abstractmethod
    async def _update(self, op: ItemWrite) -> Feed[StoredItem]:
        """:meth:`update` in the backend's SQL (``op.base_version`` set)."""

    @abc.abstractmethod
    async def _delete(self, op: ItemDelete) -> Feed[StoredItem] | None:
        """:meth:`delete` in the backend's SQL."""
