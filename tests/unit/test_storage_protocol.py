"""The write protocol's pure functions (``bridge.storage.protocol``): checks, codec, feed."""

from __future__ import annotations

import orjson
import pytest

from bridge.errors import ConfigNotFoundError, VersionConflictError
from bridge.models import ChangeType
from bridge.storage.base import COLUMNS, StoredConfig
from bridge.storage.protocol import (
    Written,
    build_feed,
    checked_delete,
    checked_update,
    decode_logged_row,
    is_logged,
    own_change,
)

ROW = StoredConfig(
    id="0b0c3c52-1a4e-4a51-9d4b-1f1f1f1f1f1f",
    custom_name="Name",
    name_key="name",
    provider="openai",
    api_key_ct=b"\x01\x02\xff",
    api_key_preview="sk-...abc",
    base_url=None,
    use_auth_header=True,
    created_at="2026-01-01T00:00:00.000Z",
    updated_at="2026-01-01T00:00:00.000Z",
    version=1,
    revision=7,
)


def logged(row: StoredConfig, **overrides: object) -> bytes:
    values = {name: getattr(row, name) for name in COLUMNS}
    values["api_key_ct"] = row.api_key_ct.hex()
    values.update(overrides)
    return orjson.dumps(values)


def test_update_of_missing_row_raises_not_found_before_the_merge_runs() -> None:
    def merge(_: StoredConfig) -> StoredConfig | None:
        raise AssertionError("merge ran")

    with pytest.raises(ConfigNotFoundError):
        checked_update(ROW.id, None, merge, None)


def test_update_with_stale_expected_version_raises_conflict_before_the_merge_runs() -> None:
    def merge(_: StoredConfig) -> StoredConfig | None:
        raise AssertionError("merge ran")

    with pytest.raises(VersionConflictError):
        checked_update(ROW.id, ROW, merge, 2)


def test_update_returns_what_the_merge_returns() -> None:
    assert checked_update(ROW.id, ROW, lambda _: None, 1) is None


def test_delete_of_unknown_id_is_no_change_whatever_the_expected_version() -> None:
    assert checked_delete(ROW.id, None, 5) is False
    assert checked_delete(ROW.id, 1, None) is True
    with pytest.raises(VersionConflictError):
        checked_delete(ROW.id, 1, 2)


@pytest.mark.parametrize(
    ("auth", "hex_text"), [(True, "0102ff"), (1, "0102FF")], ids=["postgresql", "sqlite"]
)
def test_both_backends_spellings_decode_to_the_same_row(auth: object, hex_text: str) -> None:
    assert decode_logged_row(logged(ROW, use_auth_header=auth, api_key_ct=hex_text)) == ROW


@pytest.mark.parametrize(
    "blob",
    [
        b"\xff not json",
        orjson.dumps(["positional", "array"]),
        orjson.dumps({"id": ROW.id}),
        logged(ROW, api_key_ct=None),
    ],
)
def test_entries_that_are_not_the_codec_s_object_do_not_decode(blob: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - orjson's error is a ValueError
        decode_logged_row(blob)


def test_own_change_is_the_written_row_and_no_write_is_no_change() -> None:
    written = Written(ROW.id, ROW, ROW, created=True)
    own = own_change(written, 6, 7)
    assert own is not None
    assert (own.revision, own.type, own.config) == (7, ChangeType.CREATED, ROW)
    assert own_change(written, 7, 7) is None
    deleted = own_change(Written(ROW.id, None, None), 6, 7)
    assert deleted is not None
    assert (deleted.type, deleted.config) == (ChangeType.DELETED, None)


def test_feed_puts_others_changes_first_and_the_own_change_is_never_decoded() -> None:
    other = StoredConfig(
        **{**{n: getattr(ROW, n) for n in COLUMNS}, "id": "1" * 8 + ROW.id[8:], "revision": 5}
    )
    own = own_change(Written(ROW.id, ROW, ROW), 6, 7)
    # The writer's own entry in the log is junk: the feed does not read it.
    outcome = build_feed(
        [(5, "created", other.id, logged(other)), (7, "updated", ROW.id, b"junk")],
        {other.id: other, ROW.id: ROW},
        revision=7,
        own=own,
        current=ROW,
    )
    assert outcome.changes is not None
    assert [(c.revision, c.id, c.undecodable) for c in outcome.changes] == [
        (5, other.id, False),
        (7, ROW.id, False),
    ]
    assert outcome.written is True


def test_feed_marks_an_entry_contradicting_the_table_and_a_deleted_entry_with_a_row() -> None:
    forged = StoredConfig(**{**{n: getattr(ROW, n) for n in COLUMNS}, "custom_name": "Forged"})
    outcome = build_feed(
        [(6, "updated", ROW.id, logged(forged)), (7, "deleted", "x", logged(ROW))],
        {ROW.id: ROW},
        revision=7,
    )
    assert outcome.changes is not None
    assert [c.undecodable for c in outcome.changes] == [True, True]
    assert outcome.written is False


def test_is_logged_confirms_exactly_the_own_change() -> None:
    own = own_change(Written(ROW.id, ROW, ROW), 6, 7)
    assert own is not None
    assert is_logged(own, ROW.id, "updated", logged(ROW))
    assert not is_logged(own, ROW.id, "updated", logged(ROW, version=2))
    assert not is_logged(own, ROW.id, "created", logged(ROW))
    assert not is_logged(own, ROW.id, "updated", b"junk")


def test_delete_of_a_row_whose_stored_version_is_no_integer_conflicts_with_no_actual_version() -> None:
    # Another program wrote version 'abc' (the row is quarantined): still 4012, not a crash.
    with pytest.raises(VersionConflictError) as caught:
        checked_delete(ROW.id, "abc", 1)
    assert caught.value.context == {"id": ROW.id, "expectedVersion": 1, "actualVersion": None}
    assert checked_delete(ROW.id, "abc", None) is True
