"""Durable stores behind the service: the ``ConfigStore`` protocol and its backends.

``PostgresConfigStore`` is imported on first use: it needs ``asyncpg`` (the
``bridge[postgresql]`` extra), which an embedded SQLite deployment does not install.
"""

from typing import Any

from bridge.storage.base import (
    ConfigStore,
    Mutation,
    StoredConfig,
    StoreState,
    WriteOutcome,
)
from bridge.storage.changes import Change
from bridge.storage.sqlite import DB_FILE_NAME, SqliteConfigStore

__all__ = [
    "DB_FILE_NAME",
    "Change",
    "ConfigStore",
    "Mutation",
    "PostgresConfigStore",
    "SqliteConfigStore",
    "StoreState",
    "StoredConfig",
    "WriteOutcome",
]


def __getattr__(name: str) -> Any:
    """Import ``PostgresConfigStore`` lazily (PEP 562): only PostgreSQL users need asyncpg."""
    if name == "PostgresConfigStore":
        from bridge.storage.postgres import PostgresConfigStore  # noqa: PLC0415

        return PostgresConfigStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
