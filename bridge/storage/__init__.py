"""Durable stores behind the service: the ``ConfigStore`` protocol and its backends."""

from bridge.storage.base import (
    Change,
    ConfigStore,
    Mutation,
    StoredConfig,
    StoreState,
    WriteOutcome,
)
from bridge.storage.sqlite import DB_FILE_NAME, SqliteConfigStore

__all__ = [
    "DB_FILE_NAME",
    "Change",
    "ConfigStore",
    "Mutation",
    "SqliteConfigStore",
    "StoreState",
    "StoredConfig",
    "WriteOutcome",
]
