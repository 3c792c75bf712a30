"""A store whose revision went back (another program removed a collection's counter and log).

After create x (1), create y (2) and delete y (3), removing both tables leaves no trace of
revision 3: the next write takes revision 2 again. The cache, at 3, must not skip it as
already applied: it reloads the table (``state.apply_feed``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from structlog.testing import capture_logs

from bridge.collection.service import CollectionService
from bridge.collection.sqlite import SqliteCollectionStore
from bridge.keystore import DataKey, KeyCipher
from tests.helpers.templates import load_example


async def test_a_write_after_the_store_went_back_is_served_not_skipped(tmp_path: Path) -> None:
    example = load_example()
    rules = example.PROMPT_TEMPLATES.rules
    path = tmp_path / "collections.db"
    store = SqliteCollectionStore(path)
    await store.open()
    service = CollectionService(rules, store, KeyCipher(DataKey(b"k" * 32, "file")))
    await service.start()
    try:
        x = await service.create(example.PromptTemplate(name="x", template="one"))
        y = await service.create(example.PromptTemplate(name="y", template="one"))
        assert await service.delete(y.id)
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM revisions")
            db.execute("DELETE FROM changes")
        db.close()
        with capture_logs() as logs:
            answer = await service.update(x.id, rules.types.patch(template="two"))
        assert (answer.template, answer.version) == ("two", 2)
        cached = await service.fetch(x.id)
        assert cached is not None
        assert (cached.template, cached.version) == ("two", 2)
        assert "store_revision_went_back" in [entry["event"] for entry in logs]
    finally:
        await service.close()
        await store.close()
