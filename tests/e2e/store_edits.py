"""Another program editing a bridge store: plain SQL on SQLite or PostgreSQL (issue 16).

The "other program" is a connection of its own (``sqlite3`` or ``asyncpg``), as the
``sqlite3`` shell, a migration script or a sync tool would be. SQL is written once with
``{configs}``/``{changes}``/``{meta}`` table placeholders and ``?`` parameters.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bridge.keystore import KeyCipher, load_shared_data_key


@dataclass
class OtherProgram:
    """SQL against a store behind bridge's back: SQLite file ``db`` or PostgreSQL ``dsn``."""

    db: Path | None = None
    dsn: str | None = None

    @property
    def backend(self) -> str:
        return "sqlite" if self.db is not None else "postgresql"

    def _sql(self, sql: str) -> str:
        if self.db is not None:
            return sql.format(configs="configs", changes="changes", meta="meta")
        sql = sql.format(configs="bridge_configs", changes="bridge_changes", meta="bridge_meta")
        counter = iter(range(1, 1000))
        return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one statement in its own transaction (autocommit)."""
        if self.db is not None:
            conn = sqlite3.connect(self.db, isolation_level=None, timeout=10)
            try:
                conn.execute(self._sql(sql), args)
            finally:
                conn.close()
            return
        assert self.dsn is not None
        pg = await asyncpg.connect(self.dsn)
        try:
            await pg.execute(self._sql(sql), *args)
        finally:
            await pg.close()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of one query, as tuples (bytes for blobs)."""
        if self.db is not None:
            conn = sqlite3.connect(self.db, isolation_level=None, timeout=10)
            conn.text_factory = bytes
            try:
                return [tuple(r) for r in conn.execute(self._sql(sql), args).fetchall()]
            finally:
                conn.close()
        assert self.dsn is not None
        pg = await asyncpg.connect(self.dsn)
        try:
            return [tuple(r) for r in await pg.fetch(self._sql(sql), *args)]
        finally:
            await pg.close()


def text(value: Any) -> str:
    """A fetched text value as ``str`` (SQLite fetches bytes here)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def cipher_for(key_file: Path) -> KeyCipher:
    """The cipher of a data-key file (what a migration script sharing the key would use)."""
    key = load_shared_data_key(key_file, None)
    assert key is not None
    return KeyCipher(key)
