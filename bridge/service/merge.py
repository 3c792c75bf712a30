"""llm-config's merge of an update into a stored row, and the repair of its derived fields (pure).

The merge itself is the collections' one (:func:`bridge.collection.merge.merge_update`,
with the rules :data:`bridge.llm_config.LLM_CONFIG` declares: ``api_key`` secret and
bound to ``base_url`` and ``provider``, "is required: the stored key cannot be opened");
:func:`merge_patch` adapts a :class:`StoredConfig` to it and builds the row it writes.

The store runs these inside its write transaction, on the row it locked
(:data:`~bridge.storage.base.Mutation`): they read nothing but their arguments and write
nothing (the cipher seals a new key with a fresh nonce, its only effect). The service
binds their arguments with :func:`functools.partial` before it calls the store, so no
method of a live service runs inside a transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic_core import to_jsonable_python

from bridge.collection.merge import merge_update
from bridge.keystore import DecryptionError, KeyCipher
from bridge.llm_config import LLM_CONFIG
from bridge.models import api_key_preview, name_key
from bridge.service.rules import check_row, valid_timestamp
from bridge.storage.base import StoredConfig


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
    fields = {
        "custom_name": current.custom_name,
        "provider": current.provider,
        "api_key": old_key,
        "base_url": current.base_url,
        "use_auth_header": current.use_auth_header,
    }
    merged = merge_update(
        fields,
        to_jsonable_python(changes),
        LLM_CONFIG.rules,
        unopened=frozenset() if old_key is not None else frozenset({"api_key"}),
        held=repair,
    )
    if merged is None:
        return None
    valid = merged.values
    # A repaired row's key is sealed again even when it opened (as before collections).
    key_changed = repair or "api_key" in merged.changed
    created_ok = isinstance(current.created_at, str) and valid_timestamp(current.created_at)
    stamp = now()
    return replace(
        current,
        custom_name=valid["custom_name"],
        name_key=name_key(valid["custom_name"]),
        provider=valid["provider"],
        api_key_ct=cipher.encrypt(valid["api_key"], current.id) if key_changed else current.api_key_ct,
        api_key_preview=api_key_preview(valid["api_key"]),
        base_url=valid["base_url"],
        use_auth_header=valid["use_auth_header"],
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
