"""The one clock of stored timestamps: ISO 8601 UTC with milliseconds and a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Return the current time as ISO 8601 UTC with milliseconds and a ``Z`` suffix.

    Returns:
        e.g. ``"2026-01-01T00:00:00.000Z"`` (24 characters), the form every stored
        ``createdAt``/``updatedAt`` takes.
    """
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
