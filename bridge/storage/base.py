"""The async ``ConfigStore`` protocol every backend implements (DESIGN §3).

Write checks happen in the database, inside the write transaction: existence,
``expectedVersion``, the merged result's rules (through ``mutate``), the unique
``name_key`` index, version + 1, and one increment of the global ``revision`` counter.
Every write returns the changes committed since the caller's last seen revision, its own
last, so a process publishes other processes' changes before its own, in revision order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

# Retry delays shared by the PostgreSQL listener, the service's store follower and the
# client's reconnect: one helper (bridge.backoff), re-exported for the storage layer.
from bridge.backoff import backoff_delays as backoff_delays  # noqa: PLC0414 - an explicit re-export for mypy
from bridge.storage.changes import Feed


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """One config row as the store holds it; the API key only as ciphertext.

    Attributes:
        id: UUID v4 string (lower case).
        custom_name: the name as given (trimmed).
        name_key: ``casefold(NFC(trim(name)))``; unique.
        provider: provider value (``openai``...).
        api_key_ct: ``keystore.KeyCipher`` ciphertext sealed for ``id``.
        api_key_preview: masked preview shown to renderers.
        base_url: URL as given (trimmed), or None.
        use_auth_header: whether the key goes in an auth header.
        created_at: ISO 8601 UTC with milliseconds and ``Z``.
        updated_at: same format; equal to ``created_at`` on create.
        version: 1 on create, +1 on every effective update.
        revision: the global revision of the row's last write (0 until the store sets it,
            and for rows migrated from schema 1 with no logged change).
    """

    id: str
    custom_name: str
    name_key: str
    provider: str
    api_key_ct: bytes = field(repr=False)
    api_key_preview: str
    base_url: str | None
    use_auth_header: bool
    created_at: str
    updated_at: str
    version: int
    revision: int = 0


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(StoredConfig))
"""Column names of a stored config, in :class:`StoredConfig` field order (every backend)."""


def row_values(config: StoredConfig) -> tuple[object, ...]:
    """Return the values of ``config`` in :data:`COLUMNS` order, for an INSERT."""
    return tuple(getattr(config, name) for name in COLUMNS)


@dataclass(frozen=True, slots=True)
class StoreState:
    """Everything in the store: ``configs`` in creation order at ``revision``."""

    revision: int
    configs: list[StoredConfig]


@dataclass(frozen=True, slots=True)
class WriteOutcome(Feed[StoredConfig]):
    """What a write or a catch-up returns: the :class:`~bridge.storage.changes.Feed` of configs.

    Attributes:
        revision: the store's revision after the write (or now).
        changes: changes with a revision above the caller's ``since``, in revision order;
            the caller's own change (if any) is last. ``None`` when the feed no longer
            reaches back to ``since``: the caller must reload everything.
        current: for ``update``, the row after the write (or unchanged, for a no-op).
        written: True when the write changed a row (False: no-op update, unknown delete).
    """

    current: StoredConfig | None = None
    written: bool = False


Mutation = Callable[[StoredConfig], StoredConfig | None]
"""Given the current row, returns the updated row (version and ``updated_at`` set), or
None when nothing changes. Runs inside the write transaction and may raise
``bridge.errors.ValidationError`` for the merged result."""


class ConfigStore(Protocol):
    """Durable storage of configs with a change feed.

    Failures other than the domain errors named below are raised as-is; the service
    turns them into ``ConfigOperationFailedError`` (5000) and leaves its cache unchanged.
    """

    recovered_from: str | None
    """Path a corrupt database was moved to when opened, else None."""

    repaired: list[str]
    """Structural findings repaired without loss (e.g. ``revision row missing``)."""

    async def open(self) -> None:
        """Open (creating or migrating) the store; quarantine a corrupt one."""

    async def close(self) -> None:
        """Close the store; idempotent."""

    async def has_ciphertexts(self) -> bool:
        """Return True when any row holds an encrypted API key."""

    async def key_ids(self) -> set[bytes]:
        """Return the ids (8 bytes each) of the data keys named by the stored ciphertexts."""

    def moved(self) -> bool:
        """True when another process may have committed since the last load or feed read.

        Cheap and synchronous (no table read, no thread hop): the read path asks it on a
        cache miss, inside the reply to a read.
        """

    async def load(self) -> StoreState:
        """Return every config in creation order and the current revision (one read)."""

    async def insert(self, config: StoredConfig, since: int) -> WriteOutcome:
        """Insert ``config`` at the next revision.

        Raises:
            DuplicateConfigNameError: another row has the same ``name_key``.
        """

    async def update(
        self, config_id: str, mutate: Mutation, expected_version: int | None, since: int
    ) -> WriteOutcome:
        """Apply ``mutate`` to the current row at the next revision (none for a no-op).

        Raises:
            ConfigNotFoundError: no row has ``config_id``.
            VersionConflictError: ``expected_version`` differs from the stored version.
            ValidationError: raised by ``mutate`` for the merged result.
            DuplicateConfigNameError: the new name collides.
        """

    async def delete(self, config_id: str, expected_version: int | None, since: int) -> WriteOutcome:
        """Delete the row at the next revision; no change when the id is unknown.

        Raises:
            VersionConflictError: the row exists and ``expected_version`` differs.
        """

    async def changes_since(self, since: int) -> WriteOutcome:
        """Return the changes committed after revision ``since`` (``changes`` None: reload)."""

    async def wait_for_change(self) -> None:
        """Return once another process may have committed (a poll or a notification)."""

    async def reseal(self, seal: Callable[[StoredConfig], bytes | None]) -> int:
        """Replace every row's ciphertext by ``seal(row)`` (None: keep) in one transaction.

        Returns:
            How many rows were re-sealed.
        """
