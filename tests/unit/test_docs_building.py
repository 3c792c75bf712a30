"""docs/building.md shows only true code: each of its code blocks is copied from a file the tests run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "building.md"
BLOCK = re.compile(r"^```(python|js|ts|typescript|javascript)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# Where the blocks come from: the examples (run by tests/e2e) and the tests themselves.
SOURCES = [
    *sorted((ROOT / "examples").glob("*.py")),
    *sorted((ROOT / "tests").rglob("*.py")),
    *sorted((ROOT / "tests").rglob("*.mjs")),
    *sorted((ROOT / "tests").rglob("*.ts")),
]


def significant_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, without their indentation (an excerpt may be dedented)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def contains(haystack: list[str], needle: list[str]) -> bool:
    """True when ``needle`` occurs in ``haystack`` as a contiguous run."""
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def blocks() -> list[str]:
    return [match.group(2) for match in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))]


def test_the_page_has_code_blocks_and_is_linked_from_the_readme() -> None:
    assert len(blocks()) >= 5
    assert "docs/building.md" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("index", range(len(blocks())))
def test_each_code_block_is_copied_from_a_tested_file(index: int) -> None:
    block = significant_lines(blocks()[index])
    sources = [path for path in SOURCES if path.is_file() and path != Path(__file__)]
    found = [
        path.relative_to(ROOT)
        for path in sources
        if contains(significant_lines(path.read_text(encoding="utf-8")), block)
    ]
    assert found, f"block {index} of docs/building.md is in no example or test:\n" + "\n".join(block)
