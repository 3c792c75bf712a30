"""After every reliability test, sweep the files it left for any API key it used.

Every file under the test's ``tmp_path`` (server logs, ``bridge.db`` and its ``-wal`` and
``-shm``, quarantined copies, connection and key files) is scanned for the fixed keys of
``tests/conftest.py`` and every key :func:`~tests.reliability.helpers.random_key` issued.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ANTHROPIC_KEY, CUSTOM_KEY, GOOGLE_KEY, OPENAI_KEY
from tests.reliability.helpers import ISSUED_KEYS, find_secrets

MAX_SCANNED_BYTES = 64 * 1024 * 1024


def leaks_under(root: Path, secrets: set[str]) -> dict[str, list[str]]:
    """Files under ``root`` holding any of ``secrets`` → which ones (shortened)."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.stat().st_size <= MAX_SCANNED_BYTES:
            hits = find_secrets(path.read_bytes(), secrets)
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


@pytest.fixture(autouse=True)
def no_api_key_in_left_files(tmp_path: Path) -> Iterator[None]:
    """Fail the test if any file it left under ``tmp_path`` holds an API key."""
    yield
    secrets = {OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, CUSTOM_KEY, *ISSUED_KEYS}
    assert leaks_under(tmp_path, secrets) == {}
