"""The merge of an update into a stored row, as pure functions (DESIGN §2, §4).

The store runs them inside its write transaction, on the row it locked
(:data:`~bridge.storage.base.Mutation`): they read nothing but their arguments and write
nothing (the cipher seals a new key with a fresh nonce, its only effect). The service
binds their arguments with :func:`functools.partial` before it calls the store, so no
method of a live service runs inside a transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel

from bridge.errors import FieldError, ValidationError
from bridge.keystore import DecryptionError, KeyCipher
from bridge.models import LlmConfigInput, api_key_preview, field_errors, name_key
from bridge.service.rules import check_row, valid_timestamp
from bridge.storage.base import StoredConfig

_UPDATE_FIELDS = [f"updates.{to_camel(name)}" for name in LlmConfigInput.model_fields]
_KEY_REQUIRED = FieldError("updates.apiKey", "REQUIRED", "is required when baseUrl or provider changes")


def _with_key_rule(
    errors: list[FieldError], current: StoredConfig, changes: dict[str, Any]
) -> list[FieldError]:
    """Add ``updates.apiKey`` REQUIRED when the patch moves the key's destination without it.

    A stored key may only follow a new ``baseUrl`` (cleared included) or ``provider`` when
    the patch carries the key (DESIGN §2): otherwise whoever can send an update could have
    an in-process consumer send the key to a host of their choosing. The rule replaces the
    errors on ``updates.apiKey`` (they concern the stored key, which is not being
    submitted) and keeps model field order.
    """
    if "api_key" in changes:
        return errors
    moved = ("base_url" in changes and changes["base_url"] != current.base_url) or (
        "provider" in changes and str(changes["provider"]) != current.provider
    )
    if not moved:
        return errors
    kept = [error for error in errors if error.field != _KEY_REQUIRED.field]
    order = {name: index for index, name in enumerate(_UPDATE_FIELDS)}
    return sorted([*kept, _KEY_REQUIRED], key=lambda e: order.get(e.field, len(order)))


def merge_patch(
    current: StoredConfig,
    *,
    changes: dict[str, Any],
    cipher: KeyCipher,
    quarantined: bool,
    now: Callable[[], str],
) -> StoredConfig | None:
    """Return the row after ``changes``, or None when nothing changes.

    A quarantined (or otherwise invalid) row is rewritten whole when the merged result is
    valid: that restores it. Its API key must then be in the patch when the stored one
    does not open.

    Args:
        current: the stored row, as locked by the write transaction.
        changes: the patch's fields that were set (snake_case; ``LlmConfigPatch.changes``).
        cipher: opens the stored key (to compare and to merge) and seals a changed one.
        quarantined: the service holds ``current`` out of its cache.
        now: the clock, called once when the row is built (inside the write transaction,
            not before it waits for the lock): ISO 8601 UTC, milliseconds, ``Z``.

    Returns:
        The row to write (``updated_at`` = ``now()``, version + 1 for the record: the
        database sets the final version), or None for a no-op.

    Raises:
        ValidationError (-32602): the merged result breaks a rule (fields under
            ``updates.``; ``updates.apiKey`` REQUIRED when the key's destination moves
            without it, or when the stored key cannot be opened).
    """
    repair = quarantined or check_row(current, cipher).reason is not None
    try:
        old_key: str | None = cipher.decrypt(current.api_key_ct, current.id)
    except (DecryptionError, TypeError):
        old_key = None
    if old_key is None and "api_key" not in changes:
        raise ValidationError(
            [FieldError("updates.apiKey", "REQUIRED", "is required: the stored key cannot be opened")]
        )
    merged: dict[str, Any] = {
        "custom_name": current.custom_name,
        "provider": current.provider,
        "api_key": old_key,
        "base_url": current.base_url,
        "use_auth_header": current.use_auth_header,
    }
    merged.update(changes)
    try:
        valid = LlmConfigInput.model_validate(merged)
    except PydanticValidationError as exc:
        raise ValidationError(_with_key_rule(field_errors(exc, ("updates",)), current, changes)) from None
    if errors := _with_key_rule([], current, changes):
        raise ValidationError(errors)
    if not repair and (
        valid.custom_name == current.custom_name
        and valid.provider.value == current.provider
        and valid.api_key == old_key
        and valid.base_url == current.base_url
        and valid.use_auth_header == current.use_auth_header
    ):
        return None
    key_changed = repair or valid.api_key != old_key
    created_ok = isinstance(current.created_at, str) and valid_timestamp(current.created_at)
    stamp = now()
    return replace(
        current,
        custom_name=valid.custom_name,
        name_key=name_key(valid.custom_name),
        provider=valid.provider.value,
        api_key_ct=cipher.encrypt(valid.api_key, current.id) if key_changed else current.api_key_ct,
        api_key_preview=api_key_preview(valid.api_key),
        base_url=valid.base_url,
        use_auth_header=valid.use_auth_header,
        created_at=current.created_at if created_ok else stamp,
        updated_at=stamp,
        version=current.version + 1 if type(current.version) is int else 1,
    )


def rederive_row(current: StoredConfig, *, cipher: KeyCipher, now: Callable[[], str]) -> StoredConfig | None:
    """Return ``current`` with its derived fields recomputed, or None when they are fresh.

    Another program may edit a name or a key without its name key or preview: they are
    recomputed through the write path (a new revision, an ``updated`` event).

    Args:
        current: the stored row, as locked by the write transaction.
        cipher: opens the stored key for its preview.
        now: the clock, called (once) only when the row is rewritten, inside the write
            transaction: ISO 8601 UTC, milliseconds, ``Z``.

    Raises:
        DecryptionError: the stored key does not open.
    """
    api_key = cipher.decrypt(current.api_key_ct, current.id)
    fresh = replace(current, name_key=name_key(current.custom_name), api_key_preview=api_key_preview(api_key))
    return None if fresh == current else replace(fresh, updated_at=now())
