"""Admission of stored rows into the cache: the write rules, applied to what the store holds.

Every row that enters the cache (load, follow, refresh, change-log entries) is checked
by :func:`check_row` with the same rules as a write: the fields through
:class:`~bridge.models.LlmConfigInput` (one set of rules, not a copy), and the
stored-only fields (id, timestamps, version, ciphertext) here. A row that fails is
*quarantined* by the service; the reason is a short code, never a value.

Reason codes:

- ``<field>.<FIELD CODE>``: a domain rule of DESIGN §2 fails, with the field's wire name
  and the field code of DESIGN §5 (``provider.INVALID_ENUM``, ``customName.INVALID_LENGTH``,
  ``baseUrl.INVALID_URL``, ``apiKey.API_KEY_FORMAT``, ``version.INVALID_FORMAT``…);
- ``UNDECODABLE_TEXT``: a text column is not valid UTF-8;
- ``INVALID_TYPE``: a column holds a value of the wrong type (text where a number is due);
- ``UNKNOWN_KEY_ID``: the ciphertext does not start with the id of a known data key;
- ``CIPHERTEXT_AUTH_FAILED``: AES-GCM authentication failed (tampered bytes, or a
  ciphertext copied from another row) — a *security event*;
- ``NAME_CONFLICT``: recomputing a stale name key clashes with another row's name;
- ``UNDECODABLE_CHANGE``: a change-log entry does not decode (never a quarantine reason
  of a row: the service reloads the table instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydantic import ValidationError as PydanticValidationError

from bridge.keystore import KEY_ID_BYTES, DecryptionError, KeyCipher
from bridge.models import LlmConfigInput, api_key_preview, field_errors, name_key
from bridge.storage.base import StoredConfig

UNDECODABLE_TEXT: Final = "UNDECODABLE_TEXT"
INVALID_TYPE: Final = "INVALID_TYPE"
UNKNOWN_KEY_ID: Final = "UNKNOWN_KEY_ID"
CIPHERTEXT_AUTH_FAILED: Final = "CIPHERTEXT_AUTH_FAILED"
NAME_CONFLICT: Final = "NAME_CONFLICT"
SECURITY_REASONS: Final = frozenset({CIPHERTEXT_AUTH_FAILED})
"""Reasons that are security events (logged as ``security_event``)."""

_STORED_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_TEXT_FIELDS: Final = (
    ("id", "id"),
    ("custom_name", "customName"),
    ("name_key", "customName"),
    ("provider", "provider"),
    ("api_key_preview", "apiKey"),
    ("created_at", "createdAt"),
    ("updated_at", "updatedAt"),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`check_row` found.

    Attributes:
        reason: None when the row may be served, else the quarantine reason code.
        stale: True when a derived field (name key, key preview) no longer matches the
            row's values: the row is valid but must be rewritten through the write path.
    """

    reason: str | None
    stale: bool = False


def _is_text(value: object) -> bool:
    """True for a ``str`` that encodes to UTF-8 (no lone surrogate from a bad byte)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_stored_id(value: object) -> bool:
    """True for an id as bridge writes it: a UUID in lower-case hyphenated text."""
    return isinstance(value, str) and _STORED_ID.match(value) is not None


def valid_timestamp(value: str) -> bool:
    """True for ISO 8601 UTC with milliseconds and ``Z`` (``2026-01-31T12:00:00.000Z``)."""
    if not _is_text(value) or not _TIMESTAMP.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def check_row(row: StoredConfig, cipher: KeyCipher) -> Verdict:  # noqa: C901, PLR0911, PLR0912 - one check per rule
    """Check a stored row with the write rules (DESIGN §2–§3).

    Args:
        row: the row as the store returned it (its values are untrusted: any type).
        cipher: opens the row's API key (every known data key).

    Returns:
        A :class:`Verdict`: ``reason`` None when the row may be cached.
    """
    for attr, wire in _TEXT_FIELDS:
        value = getattr(row, attr)
        if not _is_text(value):
            return Verdict(UNDECODABLE_TEXT if isinstance(value, str) else f"{wire}.INVALID_FORMAT")
    if row.base_url is not None and not _is_text(row.base_url):
        return Verdict(UNDECODABLE_TEXT if isinstance(row.base_url, str) else "baseUrl.INVALID_FORMAT")
    if not isinstance(row.api_key_ct, bytes):
        return Verdict(INVALID_TYPE)
    if type(row.version) is not int or row.version < 1:
        return Verdict("version.INVALID_FORMAT")
    if type(row.revision) is not int or row.revision < 0:
        return Verdict("revision.INVALID_FORMAT")
    if type(row.use_auth_header) is not bool:
        return Verdict("useAuthHeader.INVALID_FORMAT")
    if not valid_stored_id(row.id):
        return Verdict("id.INVALID_FORMAT")
    if not valid_timestamp(row.created_at):
        return Verdict("createdAt.INVALID_FORMAT")
    if not valid_timestamp(row.updated_at):
        return Verdict("updatedAt.INVALID_FORMAT")
    if not cipher.knows(row.api_key_ct[:KEY_ID_BYTES]):
        return Verdict(UNKNOWN_KEY_ID)
    try:
        api_key = cipher.decrypt(row.api_key_ct, row.id)
    except DecryptionError:
        return Verdict(CIPHERTEXT_AUTH_FAILED)
    try:
        valid = LlmConfigInput.model_validate(
            {
                "customName": row.custom_name,
                "provider": row.provider,
                "apiKey": api_key,
                "baseUrl": row.base_url,
                "useAuthHeader": row.use_auth_header,
            }
        )
    except PydanticValidationError as exc:
        first = field_errors(exc)[0]
        return Verdict(f"{first.field}.{first.code}")
    # The store holds the normal form a write produces (trimmed values).
    if valid.custom_name != row.custom_name:
        return Verdict("customName.INVALID_FORMAT")
    if valid.api_key != api_key:
        return Verdict("apiKey.INVALID_FORMAT")
    if valid.base_url != row.base_url:
        return Verdict("baseUrl.INVALID_FORMAT")
    stale = row.name_key != name_key(row.custom_name) or row.api_key_preview != api_key_preview(api_key)
    return Verdict(None, stale=stale)
