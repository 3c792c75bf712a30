"""``bridge doctor`` on rows another program wrote with the wrong SQLite types (DESIGN §3).

A ``collections.db`` row whose ``collection`` (or ``id``) is a BLOB, not text, must be
reported like any other finding, in the one JSON line, never crash the command (a
traceback and exit code 1, which reads as "findings").
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from bridge.collection.sqlite import COLLECTIONS_DB_FILE_NAME, SqliteCollectionStore
from bridge.storage import SqliteConfigStore

NOW = "2026-01-01T00:00:00.000Z"


async def make_stores(data: Path) -> None:
    data.mkdir(mode=0o700)
    for store in (
        SqliteConfigStore(data / "bridge.db"),
        SqliteCollectionStore(data / COLLECTIONS_DB_FILE_NAME),
    ):
        await store.open()
        await store.close()


async def test_doctor_reports_rows_whose_collection_or_id_is_a_blob_in_its_json_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_stores(data)
    with sqlite3.connect(data / COLLECTIONS_DB_FILE_NAME) as db:
        for revision, (collection, item_id, fields) in enumerate(
            [
                (b"web\xffhook", "a", json.dumps({"$sealed": {"token": "not hex"}})),
                ("webhook", b"\xfe\xff", "not json"),
            ],
            1,
        ):
            db.execute(
                "INSERT INTO items (collection, id, data, created_at, updated_at, version, revision) "
                "VALUES (?, ?, ?, ?, ?, 1, ?)",
                (collection, item_id, fields, NOW, NOW, revision),
            )
    db.close()
    command = [sys.executable, "-m", "bridge", "doctor", "--data-dir", str(data), "--secret-backend", "file"]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stdout.splitlines()
    found = json.loads(line)["collections"]["quarantined"]
    assert found == [
        {"collection": "b'web\\xffhook'", "id": "a", "reason": "token.INVALID_FORMAT"},
        {"collection": "webhook", "id": "b'\\xfe\\xff'", "reason": "UNDECODABLE_ROW"},
    ]
