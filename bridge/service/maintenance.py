"""Operator tasks on a store, without a server: data-key rotation and the doctor's check-up.

``bridge rotate-key`` and ``bridge doctor`` call these; they take an opened store and the
data keys, and never log a key or a config value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import structlog

from bridge.keystore import KEY_ID_BYTES, DataKey, DecryptionError, KeyCipher, key_id_of, new_key_set
from bridge.service.llm_config import examine_configs
from bridge.service.rules import UNKNOWN_KEY_ID
from bridge.state import printable_id
from bridge.storage.base import ConfigStore, StoredConfig

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What :func:`rotate_data_key` did.

    Attributes:
        sealing_key_id: hex id of the key every row is now sealed with.
        resealed: rows re-sealed (each a write: new revision, version + 1).
        unopened: rows whose ciphertext no known key opens (left as they are).
        retired: hex ids of the keys removed from the key source (no row uses them).
        kept: hex ids of the older keys still in the key source (some row still uses them).
    """

    sealing_key_id: str
    resealed: int
    unopened: int
    retired: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def stage_data_key(key: DataKey, save: Callable[[DataKey], None]) -> DataKey:
    """Add a fresh key as the sealing key of the key source (``rotate-key --stage``).

    Every instance must be given (restarted with) the new key set before the rows are
    re-sealed: an instance without it cannot open re-sealed rows.

    Returns:
        The new key set (saved through ``save``).
    """
    staged = new_key_set(key)
    save(staged)
    log.info("data_key_staged", sealing_key_id=staged.key_id.hex())
    return staged


async def rotate_data_key(
    store: ConfigStore,
    key: DataKey,
    save: Callable[[DataKey], None],
    *,
    more: Callable[[KeyCipher], Awaitable[tuple[int, int, set[bytes]]]] | None = None,
) -> RotationReport:
    """Re-seal every row with the newest key in one transaction, then retire unused keys.

    When the key source holds a single key, a new one is staged first (the single-
    instance case, server stopped). Rows that no known key opens are left untouched and
    counted in ``unopened``; a key still named by some row is kept.

    Args:
        store: the opened store.
        key: the key set from the key source.
        save: writes a key set back to the key source.
        more: re-seals other secrets (the collections') with the cipher; returns
            ``(rewritten, unopened, key ids still in use)``, added to the report and to
            the keys kept.

    Returns:
        A :class:`RotationReport`.
    """
    if not key.older:
        key = stage_data_key(key, save)
    cipher = KeyCipher(key)
    newest = key.key_id
    unopened = 0

    def seal(row: StoredConfig) -> bytes | None:
        nonlocal unopened
        if not isinstance(row.api_key_ct, bytes) or row.api_key_ct[:KEY_ID_BYTES] == newest:
            return None
        try:
            plain = cipher.decrypt(row.api_key_ct, row.id)
        except DecryptionError:
            unopened += 1
            return None
        return cipher.encrypt(plain, row.id)

    resealed = await store.reseal(seal)
    in_use = await store.key_ids()
    if more is not None:
        more_resealed, more_unopened, more_in_use = await more(cipher)
        resealed += more_resealed
        unopened += more_unopened
        in_use |= more_in_use
    keep = tuple(k for k in key.older if key_id_of(k) in in_use)
    retired = [key_id_of(k).hex() for k in key.older if key_id_of(k) not in in_use]
    save(DataKey(key.secret, key.backend, keep))
    report = RotationReport(newest.hex(), resealed, unopened, retired, [key_id_of(k).hex() for k in keep])
    log.info(
        "data_key_rotated",
        sealing_key_id=report.sealing_key_id,
        resealed=resealed,
        unopened=unopened,
        retired=retired,
    )
    return report


REPAIR_STALE_DERIVED_FIELDS: Final = "STALE_DERIVED_FIELDS"
"""Repair kind (not a quarantine): a row another program edited without its derived fields
(name key, key preview); the server rewrites them at start (version + 1) and serves it."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One row the doctor reports: its id (printable) and the reason (or repair) code."""

    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RowsExamination:
    """What the server would do with ``bridge.db``'s rows at start (:func:`examine_rows`).

    Attributes:
        quarantined: the rows it would hold, with their reason codes (a finding).
        repaired: the rows it would rewrite and serve (``STALE_DERIVED_FIELDS``; not a finding).
    """

    quarantined: list[Finding]
    repaired: list[Finding]


def examine_rows(rows: list[StoredConfig], key: DataKey | None) -> RowsExamination:
    """What :class:`~bridge.service.llm_config.LlmConfigService` would do with ``rows`` at start.

    The service's own load and repair, without a store (:func:`~bridge.service.llm_config.examine_configs`):
    the write rules' verdict per row, the stale rows it would repair, and those whose
    repaired name clashes with another row's (``NAME_CONFLICT``).

    Args:
        rows: the rows as the store holds them, in creation order.
        key: the data keys; None when unavailable (then every row is reported
            ``UNKNOWN_KEY_ID``: nothing can be opened).
    """
    if key is None:
        return RowsExamination([Finding(printable_id(row.id), UNKNOWN_KEY_ID) for row in rows], [])
    found = examine_configs(rows, KeyCipher(key))
    return RowsExamination(
        [Finding(row_id, reason) for row_id, reason in found.quarantined],
        [Finding(row_id, REPAIR_STALE_DERIVED_FIELDS) for row_id in found.repaired],
    )
