"""The write protocol every backend follows, as pure functions (DESIGN §3).

The backends (:mod:`bridge.storage.sqlite`, :mod:`bridge.storage.postgres`) only run
SQL; what the SQL means is decided here, once:

- the checks of a write inside its transaction (existence, ``expectedVersion``:
  :func:`check_stored`, the one check of both stacks, configs and collections) and the
  application of the caller's pure merge (:func:`checked_update`, :func:`checked_delete`);
- the change-log codec: one JSON object per logged row, keyed by :data:`LOG_FIELDS`,
  the ciphertext in hex (:func:`log_object_pairs` spells it for a trigger,
  :func:`decode_logged_row` reads it back);
- the revision policy: a write took a revision when the counter moved
  (:func:`took_revision`), the trim of the log (:data:`CHANGE_LOG_KEEP`, every
  :data:`TRIM_EVERY` revisions: :func:`trim_below`, :func:`trim_condition` for a
  trigger), and whether the log still reaches a reader (:func:`feed_reaches`) without a
  hole (:func:`log_is_whole`);
- the feed a write or a catch-up returns (:func:`build_feed`): other writers' changes
  decoded from the log and checked against the table, the writer's own change taken
  from the row it wrote (never encoded to the log and decoded again).

Rows read from a file or a log are untrusted: wrong types are kept (the service's rules
refuse them by reason code), entries that do not decode are reported as such.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from bridge.errors import ConfigNotFoundError, VersionConflictError
from bridge.keystore import KEY_ID_BYTES as KEY_ID_BYTES  # noqa: PLC0414 - the one width, re-exported for the backends
from bridge.models import ChangeType
from bridge.storage.base import COLUMNS, Change, Mutation, StoredConfig, WriteOutcome, cross_check

CHANGE_LOG_KEEP: Final = 10_000
"""Changes kept in the log; a process further behind reloads everything."""
TRIM_EVERY: Final = 1000
"""The log is trimmed when the revision is a multiple of this (one write in a thousand pays)."""

LOG_FIELDS: Final = COLUMNS
"""Keys of a change-log row object, in :class:`StoredConfig` field order."""
UPDATE_COLUMNS: Final = tuple(name for name in COLUMNS if name not in {"id", "version", "revision"})
"""The columns an update writes, in :data:`COLUMNS` order (the database keeps version and revision)."""
_BYTES_FIELD: Final = "api_key_ct"
"""The one binary field: hex text in the log (upper or lower case)."""

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


def trim_below(revision: int, every: int = TRIM_EVERY, keep: int = CHANGE_LOG_KEEP) -> int | None:
    """Return the revision at and below which the log is trimmed after ``revision``, or None.

    One write in ``every`` (:data:`TRIM_EVERY`) trims, keeping the last ``keep``
    (:data:`CHANGE_LOG_KEEP`) entries. :func:`trim_condition` is the same rule for a trigger.
    """
    if revision % every == 0 and revision > keep:
        return revision - keep
    return None


def trim_condition(revision: str) -> str:
    """The SQL ``WHERE`` of :func:`trim_below` for the change-log rows, given the SQL of ``revision``.

    ``revision <= revision - CHANGE_LOG_KEEP`` holds for no row until the revision passes
    :data:`CHANGE_LOG_KEEP`, as :func:`trim_below` answers None until then.
    """
    return f"{revision} % {TRIM_EVERY} = 0 AND revision <= {revision} - {CHANGE_LOG_KEEP}"


# ---- the change-log codec ---------------------------------------------------------------


def log_object_pairs(column: Callable[[str], str], hex_of: Callable[[str], str]) -> str:
    """Spell the change-log object's key/value pairs for a trigger's JSON builder.

    Args:
        column: the SQL expression of a column (``lambda c: f"NEW.{c}"``).
        hex_of: the SQL expression of an expression's hex text (``lambda e: f"hex({e})"``).

    Returns:
        ``'id', NEW.id, 'custom_name', NEW.custom_name, ...`` for ``json_object`` (SQLite) or
        ``json_build_object`` (PostgreSQL): both write the object :func:`decode_logged_row`
        reads.
    """
    return ", ".join(
        f"'{name}', {hex_of(column(name)) if name == _BYTES_FIELD else column(name)}" for name in LOG_FIELDS
    )


def decode_logged_row(blob: bytes | str) -> StoredConfig:
    """Decode a change-log row (the triggers' JSON object).

    Text that is not UTF-8 is kept as lone surrogates and fails to parse here.

    Raises:
        ValueError: the entry is not such an object (orjson's error is a ValueError).
    """
    if isinstance(blob, str):
        blob = blob.encode("utf-8", "surrogateescape")
    values = orjson.loads(blob)
    if (
        not isinstance(values, dict)
        or values.keys() != set(LOG_FIELDS)
        or not isinstance(values[_BYTES_FIELD], str)
    ):
        raise ValueError("not a change-log row")
    values[_BYTES_FIELD] = bytes.fromhex(values[_BYTES_FIELD])
    return make_row([values[name] for name in LOG_FIELDS])


# ---- the feed ---------------------------------------------------------------------------

LogEntry = tuple[Any, Any, Any, Any]
"""One change-log entry as read: ``(revision, type, id, row blob or None)``."""
LogRead = tuple[list[LogEntry] | None, dict[str, StoredConfig]]
"""What a backend reads for :func:`build_feed`: the log entries after ``since`` (None when
the log no longer reaches it, :func:`feed_reaches`, or has a hole, :func:`log_is_whole`) and
the table's row of each id they name."""


def _decode_entry(entry: LogEntry) -> Change:
    revision, kind_text, config_id, blob = entry
    try:
        kind = ChangeType(kind_text)
        config = (
            None if blob is None else decode_logged_row(bytes(blob) if not isinstance(blob, str) else blob)
        )
        if not isinstance(config_id, str) or (config is not None and config.id != config_id):
            raise ValueError("change-log id does not match its row")  # noqa: TRY301
        if (config is None) != (kind is ChangeType.DELETED):
            raise ValueError("change-log row does not match its type")  # noqa: TRY301
    except (ValueError, TypeError):
        return Change(int(revision), ChangeType.UPDATED, str(config_id), None, undecodable=True)
    return Change(int(revision), kind, config_id, config)


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


def own_change(written: Written, revision_before: int, revision: int) -> Change | None:
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
        return Change(revision, ChangeType.DELETED, written.config_id, None)
    kind = ChangeType.CREATED if written.created else ChangeType.UPDATED
    return Change(revision, kind, written.config_id, written.row)


def is_logged(own: Change, logged_id: object, logged_type: object, logged_row: bytes | None) -> bool:
    """True when a change-log entry holds exactly ``own`` (a commit confirmed after an error)."""
    if logged_id != own.id or logged_type != own.type.value:
        return False
    if own.config is None:
        return logged_row is None
    try:
        return logged_row is not None and decode_logged_row(logged_row) == own.config
    except ValueError:
        return False


def build_feed(
    entries: Sequence[LogEntry] | None,
    present: dict[str, StoredConfig],
    *,
    revision: int,
    own: Change | None = None,
    current: StoredConfig | None = None,
) -> WriteOutcome:
    """Assemble a feed: logged changes of others, then the writer's own change.

    Args:
        entries: the log entries after the caller's ``since`` up to the revision before
            the write (all of them for a catch-up), in revision order; None when the log
            no longer reaches back to ``since`` (:func:`feed_reaches`) or skips a revision
            (:func:`log_is_whole`): the caller reloads.
        present: the table's current row of every id the entries name (absent: no row).
        revision: the store's revision after the write (or now, for a catch-up).
        own: the writer's own change (built from the row it wrote, never from the log),
            or None (no write, or a write that changed nothing).
        current: for an update, the row after the write (or unchanged, for a no-op).

    Returns:
        The outcome; entries that do not decode, or that contradict the table, are marked
        :attr:`Change.undecodable`.
    """
    written = own is not None
    if entries is None:
        return WriteOutcome(None, current, revision, written=written)
    # The writer's own log entry (at its revision) is never decoded: the stores read up to
    # the revision before the write, and one passed anyway is superseded by ``own``.
    changes = [_decode_entry(entry) for entry in entries if own is None or entry[0] != own.revision]
    if own is not None:
        changes.append(own)
        present = {key: row for key, row in present.items() if key != own.id}
        if own.config is not None:
            present[own.id] = own.config
    return WriteOutcome(cross_check(changes, present), current, revision, written=written)


def feed_reaches(oldest: int | None, since: int) -> bool:
    """True when the log still holds every change after ``since`` (``oldest``: its first)."""
    return oldest is not None and oldest <= since + 1


def log_is_whole(entries: Sequence[LogEntry], since: int, upto: int) -> bool:
    """True when ``entries`` are the revisions ``since + 1`` to ``upto``, each once, in order.

    Revisions are gap-free (one per write, DESIGN §3), so a log read that skips or repeats
    one has lost a change (another program deleted a log row, or wrote one under another
    revision): applying the rest would leave the cache behind the table for good. The
    reader reloads instead (the backends return no entries: :data:`LogRead`), as a
    collection's feed does (:func:`bridge.collection.protocol.build_feed`).

    Args:
        entries: the log entries read after ``since`` up to ``upto``, in revision order.
        since: the revision the reader reflects.
        upto: the last revision read (the revision before a write, or now).
    """
    revisions = [entry[0] for entry in entries]
    return all(type(r) is int for r in revisions) and revisions == list(range(since + 1, upto + 1))
