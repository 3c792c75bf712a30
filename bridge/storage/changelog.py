"""The change log's rules, once for both kinds of state and every backend (DESIGN §3).

Two layouts keep a change log: llm-config's ``configs`` (``bridge.db``, logged by SQL
triggers) and the collections' ``items`` (``collections.db``, logged by the writer), each
on SQLite and PostgreSQL. The four backends only run SQL; what a read of the log means is
decided here, once, as pure functions (no database driver, no wire):

- the shapes are :mod:`bridge.storage.changes`'s: one :class:`~bridge.storage.changes.Change`
  per revision, generic over the layout's row type, and one
  :class:`~bridge.storage.changes.Feed`;
- the codec of a logged row as a mechanism (:class:`LogCodec`): the keys of its JSON
  object, which of them hold bytes as hex text, how the row is built, what makes an entry
  a lie. One instance per layout: :data:`bridge.storage.protocol.CONFIG_LOG`,
  :data:`bridge.collection.protocol.ITEM_LOG`;
- the window a feed reads (:func:`log_window`: never the writer's own entry), whether the
  log still reaches it (:func:`feed_reaches`) and holds each of its revisions once
  (:func:`log_is_whole`); when it does not, the reader reloads;
- the feed (:func:`build_feed`): every entry decoded (:func:`decode_entry`, undecodable
  on any lie), the last entry of each id checked against the table read in the same
  transaction (:func:`cross_check`), the writer's own change last, taken from the row it
  wrote and never decoded from the log;
- the trim: every :data:`TRIM_EVERY` revisions the log keeps the last
  :data:`CHANGE_LOG_KEEP` (:func:`trim_below`; :func:`trim_condition` for a trigger).

Nothing read from a log is trusted: an entry that does not decode, or that the table
contradicts, is reported as :attr:`~bridge.storage.changes.Change.undecodable` and the
reader reloads the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, TypeVar

import orjson

from bridge.models import ChangeType
from bridge.storage.changes import Change, Feed, LoggedRow

CHANGE_LOG_KEEP: Final = 10_000
"""Changes kept in a log; a reader further behind reloads everything."""
TRIM_EVERY: Final = 1000
"""A log is trimmed when the revision is a multiple of this (one write in a thousand pays)."""

_KINDS: Final = frozenset(kind.value for kind in ChangeType)

R = TypeVar("R", bound=LoggedRow)

LogEntry = tuple[Any, Any, Any, Any]
"""One change-log entry as read, untrusted: ``(revision, type, id, row)``; ``row`` is the
logged JSON object (text or bytes) or None (``deleted``)."""


# ---- the codec --------------------------------------------------------------------------


def _never(row: object, revision: int) -> bool:  # noqa: ARG001 - the signature of LogCodec.lies
    return False


@dataclass(frozen=True, slots=True)
class LogCodec(Generic[R]):
    """How one layout logs a row: one JSON object, the same for every backend.

    Attributes:
        fields: the object's keys, exactly, in the order :attr:`build` takes their values.
        hex_fields: the keys whose values are bytes, logged as hex text (either case).
        build: builds the row from the values in :attr:`fields` order, keeping wrong
            types (the services' rules refuse them by reason code).
        lies: ``lies(row, revision)``: True when a decoded row contradicts its entry at
            ``revision`` in a way the layout checks (beyond the id, which every entry's
            row must carry).
    """

    fields: tuple[str, ...]
    hex_fields: frozenset[str]
    build: Callable[[list[Any]], R]
    lies: Callable[[R, int], bool] = _never

    def encode(self, row: R) -> str:
        """Return the logged JSON text of ``row`` (keys in :attr:`fields` order)."""
        hexed = self.hex_fields
        return orjson.dumps(
            {name: getattr(row, name).hex() if name in hexed else getattr(row, name) for name in self.fields}
        ).decode()

    def decode(self, logged: object) -> R:
        """Decode a logged row: JSON text or bytes (text that is not UTF-8 fails here).

        Raises:
            ValueError: it is not this codec's object (orjson's error is a ValueError):
                other keys, a hex field that is not hex text.
        """
        if isinstance(logged, str):
            logged = logged.encode("utf-8", "surrogateescape")
        elif isinstance(logged, bytearray | memoryview):
            logged = bytes(logged)
        if not isinstance(logged, bytes):
            raise ValueError("not a change-log row")  # noqa: TRY004 - the one error of a bad entry
        values = orjson.loads(logged)
        if not (
            isinstance(values, dict)
            and values.keys() == set(self.fields)
            and all(isinstance(values[name], str) for name in self.hex_fields)
        ):
            raise ValueError("not a change-log row")
        for name in self.hex_fields:
            values[name] = bytes.fromhex(values[name])
        return self.build([values[name] for name in self.fields])

    def object_pairs(self, column: Callable[[str], str], hex_of: Callable[[str], str]) -> str:
        """Spell the object's key/value pairs for a trigger's JSON builder.

        Args:
            column: the SQL expression of a column (``lambda c: f"NEW.{c}"``).
            hex_of: the SQL expression of an expression's hex text (``lambda e: f"hex({e})"``).

        Returns:
            ``'id', NEW.id, 'custom_name', NEW.custom_name, ...`` for ``json_object``
            (SQLite) or ``json_build_object`` (PostgreSQL): the object :meth:`decode` reads.
        """
        return ", ".join(
            f"'{name}', {hex_of(column(name)) if name in self.hex_fields else column(name)}"
            for name in self.fields
        )


# ---- reading the log --------------------------------------------------------------------


def log_window(since: int, revision: int, own: Change[Any] | None) -> tuple[int, int] | None:
    """The revisions a feed after ``since`` reads from the log: ``(since, top]``; None when none.

    Args:
        since: the revision the reader reflects.
        revision: the revision now (after the write, if any).
        own: the writer's own change (at ``revision``), never read back from the log; None
            for a catch-up or a write that took no revision.
    """
    top = revision - 1 if own is not None else revision
    return None if top <= since else (since, top)


def feed_reaches(oldest: int | None, since: int, upto: int) -> bool:
    """True when the log holds every change after ``since`` up to ``upto``.

    ``oldest`` is the log's oldest revision (None: the log is empty). Nothing after
    ``since`` needs no log.
    """
    return upto <= since or (oldest is not None and oldest <= since + 1)


def log_is_whole(entries: Sequence[LogEntry], since: int, upto: int) -> bool:
    """True when ``entries`` are the revisions ``since + 1`` to ``upto``, each once, in order.

    Revisions are gap-free (one per write, DESIGN §3), so a log read that skips or repeats
    one has lost a change (another program deleted a log row, or wrote one under another
    revision): applying the rest would leave the cache behind the table for good.

    Args:
        entries: the log entries read after ``since`` up to ``upto``, in revision order.
        since: the revision the reader reflects.
        upto: the last revision read.
    """
    revisions = [entry[0] for entry in entries]
    return all(type(r) is int for r in revisions) and revisions == list(range(since + 1, upto + 1))


def decode_entry(codec: LogCodec[R], entry: LogEntry) -> Change[R]:
    """Return the change one log entry records; :attr:`~bridge.storage.changes.Change.undecodable` on any lie.

    A lie: a revision that is no integer, an id that is no text, an unknown type, a row
    that does not decode (:meth:`LogCodec.decode`), a row for ``deleted`` or none for
    another type, a row of another id, or one the codec's :attr:`LogCodec.lies` refuses.
    An undecodable change keeps the logged type when it is one (else ``updated``).
    """
    revision, kind_text, row_id, logged = entry
    kind = ChangeType(kind_text) if isinstance(kind_text, str) and kind_text in _KINDS else None
    if type(revision) is int and isinstance(row_id, str) and kind is not None:
        try:
            row = None if logged is None else codec.decode(logged)
        except (ValueError, TypeError):
            row = None
        else:
            if (row is None) == (kind is ChangeType.DELETED) and (
                row is None or (row.id == row_id and not codec.lies(row, revision))
            ):
                return Change(revision, row_id, kind, row)
    return Change(
        revision if type(revision) is int else 0,
        str(row_id),
        ChangeType.UPDATED if kind is None else kind,
        None,
        undecodable=True,
    )


def cross_check(
    changes: list[Change[R]], present: Mapping[str, R], own_id: str | None = None
) -> list[Change[R]]:
    """Mark the log entries the table contradicts as undecodable (the reader reloads the table).

    Read in the same transaction as the log, the table holds every write up to the log's
    last revision: the last entry of each id must carry exactly the row the table holds
    (or, for ``deleted``, the table must not hold the id). One that does not (a forged
    ``deleted`` of a live row, which for a collection would also clear the references to
    it, or a forged row) is not trusted.

    Args:
        changes: the window's entries, in revision order.
        present: the table's row of every id they name (absent: no row).
        own_id: the id the writer's own change (after the window) wrote: the table shows
            that write, not the window's entries of the id; None for a catch-up.

    An id is never written again once deleted (ids are never reused), so every entry of an
    id that has an entry after its ``deleted`` is untrusted too: the table cannot tell
    which of them lies (a genuine update turned into a forged ``deleted`` would otherwise
    pass, as only the id's last entry meets the table).

    Returns:
        ``changes`` with contradicting entries marked (their type kept, no row).
    """
    last = {change.id: index for index, change in enumerate(changes)}
    first_deleted: dict[str, int] = {}
    for index, change in enumerate(changes):
        if change.kind is ChangeType.DELETED:
            first_deleted.setdefault(change.id, index)
    revived = {change_id for change_id, index in first_deleted.items() if last[change_id] > index}
    return [
        replace(change, row=None, undecodable=True)
        if not change.undecodable
        and (
            change.id in revived
            or (last[change.id] == index and change.id != own_id and change.row != present.get(change.id))
        )
        else change
        for index, change in enumerate(changes)
    ]


def build_feed(
    codec: LogCodec[R],
    entries: Sequence[LogEntry],
    present: Mapping[str, R],
    *,
    revision: int,
    own: Change[R] | None = None,
    window: tuple[int, int] | None = None,
    oldest: int | None = None,
) -> Feed[R]:
    """Assemble a feed: the logged changes of others, then the writer's own change.

    Args:
        codec: the layout's codec.
        entries: the log entries of ``window`` as read, in revision order (none when the
            window is None).
        present: the table's row of every id the entries name (absent: no row), read in
            the same transaction.
        revision: the revision after the write (or now, for a catch-up).
        own: the writer's own change, built from the row it wrote (never from the log; an
            entry at its revision is skipped), or None (a catch-up, or a write that took
            no revision).
        window: :func:`log_window`'s answer the entries were read for: the feed is None
            when the log does not reach it (:func:`feed_reaches`) or skips or repeats a
            revision in it (:func:`log_is_whole`); None checks nothing (nothing was read).
        oldest: the oldest revision left in the log (None: empty).

    Returns:
        The feed; entries that do not decode or that the table contradicts are marked
        :attr:`~bridge.storage.changes.Change.undecodable`.
    """
    if window is not None and not (feed_reaches(oldest, *window) and log_is_whole(entries, *window)):
        return Feed(revision, None)
    changes = [decode_entry(codec, entry) for entry in entries if own is None or entry[0] != own.revision]
    checked = cross_check(changes, present, None if own is None else own.id)
    return Feed(revision, checked if own is None else [*checked, own])


# ---- the trim ---------------------------------------------------------------------------


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
