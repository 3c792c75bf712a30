"""``bridge.state.service.admit``/``classify``: the one rule of a row entering a cache (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.state.service import DEFERRED, INVALID, NAME_CONFLICT, admit, classify


@dataclass(frozen=True)
class Row:
    id: str
    key: str | None
    """The row's unique key; None: its verdict fails; ``"stale"``: valid but deferred."""


def verdict(row: Row, _prepared: Any) -> tuple[Any, str | None]:
    if row.key is None:
        return None, "name.INVALID_LENGTH"
    if row.key == "stale":
        return DEFERRED, None
    return row, None


class Claims:
    def __init__(self) -> None:
        self.held: dict[str, str] = {}

    def claim(self, row_id: str, _old: Any, entry: Any) -> bool:
        owner = self.held.setdefault(entry.key.casefold(), row_id)
        return owner == row_id


def test_classify_serves_the_first_holder_of_a_key_and_holds_the_later_one_name_conflict() -> None:
    rows = [Row("a", "Alpha"), Row("b", "ALPHA"), Row("c", None), Row("d", "stale"), Row("e", "Epsilon")]
    found = classify(rows, verdict, Claims().claim)
    assert found.served == ["a", "e"]
    assert found.held == {"b": NAME_CONFLICT, "c": "name.INVALID_LENGTH"}
    assert found.deferred == ["d"]


def test_admit_gives_invalid_row_when_a_verdict_names_no_reason_and_claims_nothing() -> None:
    claims = Claims()
    assert admit("x", Row("x", "X"), None, lambda _row, _p: (None, None), claims.claim) == (None, INVALID)
    assert claims.held == {}
