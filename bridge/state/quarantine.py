"""Rows held out of the cache: who is held and why, logged once per reason, never with a value."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import structlog

log = structlog.get_logger(__name__)


def printable_id(row_id: object) -> str:
    r"""An id as it may be logged or sent: bytes that were not UTF-8 shown as ``\xNN``.

    Args:
        row_id: a stored id as read (normally ``str``; another type is shown by ``repr``).
    """
    if isinstance(row_id, str):
        return row_id.encode("utf-8", "backslashreplace").decode("utf-8")
    return repr(row_id)


class Quarantine:
    """Quarantined row ids → reason codes, in the order they were first held.

    A held row is left untouched in the store and never served (DESIGN §3). Each hold is
    logged once per id and reason: ``event`` (a warning with ``id`` and ``reason``) and,
    for a reason in ``security_reasons``, ``security_event`` first (an error with ``id``
    and ``kind``: stored ciphertext altered, moved or written in clear). Ids are logged
    through :func:`printable_id`; values never are.

    Args:
        event: the log event of a hold (``config_quarantined``, ``item_quarantined``).
        security_reasons: the reason codes that are security events.
        context: fields added to every log line (e.g. ``collection="webhook"``).
    """

    __slots__ = ("_context", "_event", "_held", "_security")

    def __init__(self, event: str, security_reasons: Iterable[str], **context: str) -> None:
        """Start empty."""
        self._event = event
        self._security = frozenset(security_reasons)
        self._context = context
        self._held: dict[str, str] = {}

    def hold(self, row_id: str, reason: str) -> None:
        """Hold ``row_id`` for ``reason``; logged unless it is already held for that reason."""
        if self._held.get(row_id) == reason:
            return
        shown = printable_id(row_id)
        if reason in self._security:
            log.error("security_event", kind=reason, id=shown, **self._context)
        log.warning(self._event, id=shown, reason=reason, **self._context)
        self._held[row_id] = reason

    def release(self, row_id: str) -> bool:
        """Let ``row_id`` go (deleted, restored or valid again); True when it was held."""
        return self._held.pop(row_id, None) is not None

    def keep_only(self, present: Iterable[str] | set[str]) -> list[str]:
        """Release every held id not in ``present`` (gone from the store); return them."""
        kept = present if isinstance(present, set) else set(present)
        gone = [row_id for row_id in self._held if row_id not in kept]
        for row_id in gone:
            del self._held[row_id]
        return gone

    def reason(self, row_id: str) -> str | None:
        """The reason ``row_id`` is held for, or None when it is not."""
        return self._held.get(row_id)

    def reasons(self) -> dict[str, str]:
        """A copy: held id → reason code, in the order first held."""
        return dict(self._held)

    def __contains__(self, row_id: object) -> bool:
        """True when ``row_id`` is held."""
        return row_id in self._held

    def __iter__(self) -> Iterator[str]:
        """The held ids, in the order first held."""
        return iter(self._held)

    def __len__(self) -> int:
        """How many rows are held."""
        return len(self._held)
