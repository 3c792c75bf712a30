"""A change feed applied in revision order, or a full reload when the log cannot tell."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol, TypeVar

import structlog

log = structlog.get_logger(__name__)

UNDECODABLE_CHANGE: Final = "UNDECODABLE_CHANGE"
"""Why a change-log entry was rejected: it does not decode."""


class Change(Protocol):
    """One committed write as a change feed reports it (read-only)."""

    @property
    def revision(self) -> int:
        """The revision the write took."""
        ...

    @property
    def undecodable(self) -> bool:
        """True when the log entry did not decode."""
        ...


C = TypeVar("C", bound=Change)
C_co = TypeVar("C_co", bound=Change, covariant=True)
P = TypeVar("P")


class Feed(Protocol[C_co]):
    """What a write or a catch-up returns: the changes after some revision, and the revision now."""

    @property
    def revision(self) -> int:
        """The store's revision after the write (or now)."""
        ...

    @property
    def changes(self) -> Sequence[C_co] | None:
        """Every change after ``since`` in revision order; None when the log no longer reaches it."""
        ...


async def apply_feed(
    feed: Feed[C],
    since: int,
    *,
    check: Callable[[C], tuple[str | None, P]],
    apply: Callable[[C, P], None],
    reload: Callable[[], Awaitable[None]],
    **context: str,
) -> int | None:
    """Apply the changes after ``since`` in revision order; reload instead when the log cannot tell.

    The change log is untrusted: every entry is checked before any is applied. When the
    log no longer reaches ``since``, the store's revision is below ``since`` (it went
    back), an entry does not decode, or ``check`` rejects one,
    nothing is applied from it and ``reload`` reads the table (the truth) instead; a
    rejection is logged as ``change_log_entry_rejected`` with the revision and reason.
    Entries at or below ``since`` are already applied and skipped.

    Args:
        feed: the changes and the store's revision.
        since: the revision the cache reflects.
        check: ``check(change)`` → ``(reason, prepared)``: a rejection reason or None, and
            what ``apply`` needs (e.g. the row's verdict, computed once).
        apply: applies one change to the cache and publishes its event (no awaiting).
        reload: the full reload (it sets the revision itself).
        context: fields added to the log line.

    Returns:
        The revision the cache now reflects, or None when it reloaded.
    """
    changes = feed.changes
    if changes is None:
        await reload()
        return None
    if feed.revision < since:
        # The store's revision went back (another program removed its counter and log):
        # what it writes now reuses revisions the cache has passed, so only the table can tell.
        log.warning("store_revision_went_back", revision=feed.revision, since=since, **context)
        await reload()
        return None
    checked: list[tuple[C, P]] = []
    for change in changes:
        if change.revision <= since:
            continue
        reason: str | None = UNDECODABLE_CHANGE
        if not change.undecodable:
            reason, prepared = check(change)
            if reason is None:
                checked.append((change, prepared))
                continue
        log.warning("change_log_entry_rejected", revision=change.revision, reason=reason, **context)
        await reload()
        return None
    for change, prepared in checked:
        apply(change, prepared)
    return max(since, feed.revision)
