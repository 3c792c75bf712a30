"""The llm-config write protocol every backend follows, as pure functions (DESIGN §3).

The backends (:mod:`bridge.storage.sqlite`, :mod:`bridge.storage.postgres`) only run
SQL; what the SQL means is decided here, once:

- the checks of a write inside its transaction (existence, ``expectedVersion``:
  :func:`check_stored`, the one check of both stacks, configs and collections) and the
  application of the caller's pure merge (:func:`checked_update`, :func:`checked_delete`);
- the layout of the change log: :data:`CONFIG_LOG`, the
  :class:`~bridge.storage.changelog.LogCodec` of a logged config (one JSON object keyed by
  :data:`LOG_FIELDS`, the ciphertext in hex), spelled for a trigger by
  :func:`log_object_pairs` and read back by :func:`decode_logged_row`;
- the revision policy: a write took a revision when the counter moved
  (:func:`took_revision`); the writer's own change is the row it wrote
  (:func:`own_change`), confirmed in the log after a lost commit by :func:`is_logged`;
- the feed a write or a catch-up returns (:func:`build_feed`): the change log's rules
  (window, reach, gaps, decoding, the cross-check against the table, own change last,
  the trim) are :mod:`bridge.storage.changelog`'s, shared with the collections.

Rows read from a file or a log are untrusted: wrong types are kept (the service's rules
refuse them by reason code), entries that do not decode are reported as such.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from bridge.errors import ConfigNotFoundError, VersionConflictError
from bridge.keystore import KEY_ID_BYTES as KEY_ID_BYTES  # noqa: PLC0414 - the one width, re-exported for the backends
from bridge.models import ChangeType
from bridge.storage import changelog
from bridge.storage.base import COLUMNS, Mutation, StoredConfig, WriteOutcome

# The change log's figures and rules, as the config layout's callers name them.
from bridge.storage.changelog import CHANGE_LOG_KEEP as CHANGE_LOG_KEEP  # noqa: PLC0414 - re-exported
from bridge.storage.changelog import TRIM_EVERY as TRIM_EVERY  # noqa: PLC0414 - re-exported
from bridge.storage.changelog import LogCodec
from bridge.storage.changelog import LogEntry as LogEntry  # noqa: PLC0414 - re-exported
from bridge.storage.changelog import log_is_whole as log_is_whole  # noqa: PLC0414 - re-exported
from bridge.storage.changes import Change

LOG_FIELDS: Final = COLUMNS
"""Keys of a change-log row object, in :class:`StoredConfig` field order."""
UPDATE_COLUMNS: Final = tuple(name for name in COLUMNS if name not in {"id", "version", "revision"})
"""The columns an update writes, in :data:`COLUMNS` order (the database keeps version and revision)."""

_PROVIDER_NAMES: Final[dict[str, str]] = {name: name for name in ("openai", "anthropic", "google", "custom")}


# ---- rows -------------------------------------------------------------------------------


def _bool(value: Any) -> Any:
    """0/1 (SQLite) or a JSON boolean → bool; anything else is kept for the rules to refuse."""
    if type(value) is int and value in {0, 1}:
        return value == 1
    return value


def make_row(values: Sequence[Any]) -> StoredConfig:
    """Build a row from values in :data:`~bridge.storage.base.COLUMNS` order, without coercion.

    Used for table rows of every backend and for decoded change-log rows. Wrong types are
    kept: the service's admission rules refuse them by reason code. The provider names are
    shared, and so is ``updated_at`` when it equals ``created_at`` (as on every config
    never updated): fewer objects per cached config when 10,000 rows load at start-up.

    Args:
        values: 12 values (a database row or record, or a list).
    """
    (cid, name, key, provider, ct, preview, url, auth, created, updated, version, revision) = values
    return StoredConfig(
        cid,
        name,
        key,
        _PROVIDER_NAMES.get(provider, provider) if isinstance(provider, str) else provider,
        ct,
        preview,
        url,
        _bool(auth),
        created,
        created if updated == created else updated,
        version,
        revision,
    )


def update_values(row: StoredConfig) -> tuple[object, ...]:
    """The values of ``row`` in :data:`UPDATE_COLUMNS` order, for an ``UPDATE`` (its id goes last)."""
    return tuple(getattr(row, name) for name in UPDATE_COLUMNS)


# ---- the checks of a write --------------------------------------------------------------


def integer_version(stored: object) -> int | None:
    """The stored ``version`` as an integer, or None when it is none (another program wrote it).

    A bool is no version; neither is ``"3"`` or ``3.0``: such a value never matches an
    ``expectedVersion``.
    """
    return stored if type(stored) is int else None


def check_stored(
    item_id: str, stored_version: object, expected_version: int | None, *, required: bool
) -> bool:
    """The one check of a write against the row it locked: existence, then ``expectedVersion``.

    Used by every write of both stacks (:func:`checked_update`, :func:`checked_delete`,
    :func:`bridge.collection.protocol.check_write`).

    Args:
        item_id: the config's or item's id.
        stored_version: the locked row's ``version`` as read (untrusted), or None when no
            row has the id.
        expected_version: the caller's ``expectedVersion``, or None for any.
        required: True when an absent row is an error (an update); False when it is no
            change (a delete of an unknown id: DESIGN §4).

    Returns:
        True when the row exists and may be written; False when it is absent and not
        ``required``.

    Raises:
        ConfigNotFoundError: no row and ``required``.
        VersionConflictError: ``expected_version`` differs from the stored version
            (``actual`` None when the stored one is no integer).
    """
    if stored_version is None:
        if required:
            raise ConfigNotFoundError(item_id)
        return False
    actual = integer_version(stored_version)
    if expected_version is not None and actual != expected_version:
        raise VersionConflictError(item_id, expected_version, actual)
    return True


def checked_update(
    config_id: str, current: StoredConfig | None, mutate: Mutation, expected_version: int | None
) -> StoredConfig | None:
    """Check an update against the locked row (:func:`check_stored`) and apply the caller's merge.

    Args:
        config_id: the id being updated.
        current: the row read (and locked) in the write transaction; None when absent.
        mutate: the caller's pure merge (see :data:`~bridge.storage.base.Mutation`).
        expected_version: the version the caller expects, or None for any.

    Returns:
        The row to write, or None when the update changes nothing.

    Raises:
        ConfigNotFoundError: ``current`` is None.
        VersionConflictError: ``expected_version`` differs from the stored version.
        ValidationError: raised by ``mutate`` for the merged result.
    """
    check_stored(config_id, None if current is None else current.version, expected_version, required=True)
    assert current is not None
    return mutate(current)


def checked_delete(config_id: str, version: object, expected_version: int | None) -> bool:
    """Check a delete against the locked row's ``version`` (None: no such row).

    ``version`` is the stored value as read: another program may have written one that is
    no integer (the row is quarantined, and a delete must still remove it).

    Returns:
        True when the row is to be deleted; False for an unknown id (no change, no error,
        whatever ``expected_version`` says: DESIGN §4).

    Raises:
        VersionConflictError: the row exists and ``expected_version`` differs.
    """
    return check_stored(config_id, version, expected_version, required=False)


# ---- revisions --------------------------------------------------------------------------


def took_revision(revision_before: int, revision_after: int) -> bool:
    """True when a write took a revision (the counter moved inside its transaction)."""
    return revision_after != revision_before


# ---- the change-log codec ---------------------------------------------------------------


CONFIG_LOG: Final[LogCodec[StoredConfig]] = LogCodec(
    fields=LOG_FIELDS, hex_fields=frozenset({"api_key_ct"}), build=make_row
)
"""The change-log codec of a config: the triggers' JSON object, keyed by :data:`LOG_FIELDS`,
the ciphertext as hex text (SQLite's ``hex()`` upper case, PostgreSQL's ``encode`` lower)."""


def log_object_pairs(column: Callable[[str], str], hex_of: Callable[[str], str]) -> str:
    """:meth:`~bridge.storage.changelog.LogCodec.object_pairs` of :data:`CONFIG_LOG`, for a trigger.

    Spelled on :data:`LOG_FIELDS` as they are when called: a release that adds a field
    builds its triggers from it (recorded migrations spell their own, frozen).

    Args:
        column: the SQL expression of a column (``lambda c: f"NEW.{c}"``).
        hex_of: the SQL expression of an expression's hex text (``lambda e: f"hex({e})"``).
    """
    return replace(CONFIG_LOG, fields=LOG_FIELDS).object_pairs(column, hex_of)


def decode_logged_row(blob: bytes | str) -> StoredConfig:
    """Decode a change-log row (the triggers' JSON object) with :data:`CONFIG_LOG`.

    Raises:
        ValueError: the entry is not such an object.
    """
    return CONFIG_LOG.decode(blob)


# ---- the feed ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    """What one write statement left, as the backend read it back from the table.

    Attributes:
        config_id: the id written.
        row: its row in the table now, as the database completed it (revision, version):
            None when deleted, or when no row has the id.
        current: the row the outcome reports as ``current`` (an update's, no-op included).
        created: the statement inserted the row.
    """

    config_id: str
    row: StoredConfig | None
    current: StoredConfig | None
    created: bool = False


def own_change(written: Written, revision_before: int, revision: int) -> Change[StoredConfig] | None:
    """The writer's own change, built from the row it wrote (never from the change log).

    Args:
        written: what the statement left.
        revision_before: the counter read in the transaction before the statement.
        revision: the counter after it.

    Returns:
        The change at ``revision``, or None when the write took no revision (a no-op
        update, a delete of an unknown id).
    """
    if not took_revision(revision_before, revision):
        return None
    if written.row is None:
        return Change(revision, written.config_id, ChangeType.DELETED, None)
    kind = ChangeType.CREATED if written.created else ChangeType.UPDATED
    return Change(revision, written.config_id, kind, written.row)


def is_logged(
    own: Change[StoredConfig], logged_id: object, logged_type: object, logged_row: bytes | None
) -> bool:
    """True when the change-log entry at ``own``'s revision holds exactly ``own``.

    A commit confirmed after an error: the entry decodes (:data:`CONFIG_LOG`) to ``own``.
    """
    return changelog.decode_entry(CONFIG_LOG, (own.revision, logged_type, logged_id, logged_row)) == own


def build_feed(
    entries: Sequence[LogEntry],
    present: Mapping[str, StoredConfig],
    *,
    revision: int,
    own: Change[StoredConfig] | None = None,
    current: StoredConfig | None = None,
    window: tuple[int, int] | None = None,
    oldest: int | None = None,
) -> WriteOutcome:
    """Assemble a config feed: :func:`bridge.storage.changelog.build_feed` with :data:`CONFIG_LOG`.

    Args:
        entries: the log entries of ``window`` as read, in revision order (none when the
            window is None).
        present: the table's current row of every id the entries name (absent: no row).
        revision: the store's revision after the write (or now, for a catch-up).
        own: the writer's own change (:func:`own_change`), or None (no write, or a write
            that changed nothing).
        current: for an update, the row after the write (or unchanged, for a no-op).
        window: :func:`~bridge.storage.changelog.log_window`'s answer the entries were
            read for (None: nothing read); the outcome's ``changes`` are None when the log
            does not reach it or skips or repeats a revision in it.
        oldest: the oldest revision left in the log (None: empty).

    Returns:
        The outcome; entries that do not decode, or that contradict the table, are marked
        :attr:`~bridge.storage.changes.Change.undecodable`.
    """
    feed = changelog.build_feed(
        CONFIG_LOG, entries, present, revision=revision, own=own, window=window, oldest=oldest
    )
    return WriteOutcome(feed.revision, feed.changes, current, written=own is not None)
