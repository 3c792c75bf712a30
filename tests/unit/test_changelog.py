"""The change log's rules (``bridge.storage.changelog``), once for both layouts."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from bridge.collection.protocol import ITEM_LOG, StoredItem
from bridge.models import ChangeType
from bridge.storage import sqlite as sqlite_store
from bridge.storage.base import COLUMNS
from bridge.storage.changelog import (
    LogEntry,
    build_feed,
    cross_check,
    decode_entry,
    feed_reaches,
    log_is_whole,
    log_window,
    trim_below,
    trim_condition,
)
from bridge.storage.changes import Change
from bridge.storage.protocol import CONFIG_LOG

A = "0b7e2f44-5c1a-4d3e-9f6b-2a8c7d1e4f90"
B = "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"


def item(item_id: str, revision: int, name: str = "A", version: int = 1) -> StoredItem:
    return StoredItem(item_id, 1, {"name": name}, "t0", "t1", version, revision)


def logged(row: StoredItem, kind: str = "updated") -> LogEntry:
    return (row.revision, kind, row.id, ITEM_LOG.encode(row))


# ---- the window, the reach and the gaps ------------------------------------------------------


def test_the_window_never_holds_the_writer_s_own_revision() -> None:
    own: Change[StoredItem] = Change(8, A, ChangeType.UPDATED, item(A, 8))
    assert log_window(5, 8, own) == (5, 7)
    assert log_window(5, 8, None) == (5, 8)
    assert log_window(7, 8, own) is None  # caught up: nothing to read
    assert log_window(8, 8, None) is None


def test_the_log_reaches_a_reader_only_when_it_holds_the_revision_after_it() -> None:
    assert feed_reaches(6, 5, 9)
    assert feed_reaches(1, 5, 9)
    assert not feed_reaches(7, 5, 9)
    assert not feed_reaches(None, 5, 9)
    assert feed_reaches(None, 9, 9)  # nothing after since needs no log


def test_a_log_read_is_whole_only_with_each_revision_once_in_order() -> None:
    def entries(*revisions: object) -> list[LogEntry]:
        return [(r, "deleted", A, None) for r in revisions]

    assert log_is_whole(entries(6, 7), 5, 7)
    assert not log_is_whole(entries(6), 5, 7)  # a gap at the end
    assert not log_is_whole(entries(7), 5, 7)  # a gap at the start
    assert not log_is_whole(entries(6, 6, 7), 5, 7)  # a repeat
    assert not log_is_whole(entries(7, 6), 5, 7)  # out of order
    assert not log_is_whole([(True, "deleted", A, None)], 0, 1)  # a bool is no revision (True == 1)


def test_a_feed_whose_log_skips_a_revision_is_a_reload() -> None:
    feed = build_feed(
        ITEM_LOG,
        [logged(item(A, 6)), logged(item(B, 8))],
        {A: item(A, 6), B: item(B, 8)},
        revision=8,
        window=(5, 8),
        oldest=1,
    )
    assert (feed.revision, feed.changes) == (8, None)


def test_a_feed_the_log_no_longer_reaches_is_a_reload_whatever_it_read() -> None:
    row = item(A, 7)
    feed = build_feed(ITEM_LOG, [logged(row)], {A: row}, revision=7, window=(5, 7), oldest=7)
    assert feed.changes is None
    reached = build_feed(
        ITEM_LOG, [logged(item(A, 6)), logged(row)], {A: row}, revision=7, window=(5, 7), oldest=6
    )
    assert reached.changes is not None
    assert [(c.revision, c.undecodable) for c in reached.changes] == [(6, False), (7, False)]


# ---- decoding --------------------------------------------------------------------------------


def test_both_layouts_entries_round_trip() -> None:
    row = item(A, 7)
    assert decode_entry(ITEM_LOG, logged(row)) == Change(7, A, ChangeType.UPDATED, row)
    # The SQLite trigger's spelling of a config: 0/1 for a boolean, upper-case hex.
    trigger_row = {name: name for name in COLUMNS} | {
        "id": A,
        "api_key_ct": "0102FF",
        "use_auth_header": 1,
        "version": 1,
        "revision": 7,
    }
    change = decode_entry(CONFIG_LOG, (7, "created", A, orjson.dumps(trigger_row)))
    assert change.config is not None
    assert (change.kind, change.undecodable) == (ChangeType.CREATED, False)
    assert (change.config.id, change.config.api_key_ct, change.config.use_auth_header) == (
        A,
        b"\x01\x02\xff",
        True,
    )
    assert (change.type, change.item) == (change.kind, change.row)  # llm-config's and a collection's names


@pytest.mark.parametrize(
    "entry",
    [
        ("7", "updated", A, None),  # a revision that is no integer
        (7, "updated", 7, None),  # an id that is no text
        (7, "renamed", A, None),  # an unknown type
        (7, "updated", A, b"\xff not json"),
        (7, "updated", A, None),  # no row for an update
        (7, "deleted", A, ITEM_LOG.encode(item(A, 7))),  # a row for a deletion
        (7, "updated", B, ITEM_LOG.encode(item(A, 7))),  # a row of another id
        (7, "updated", A, ITEM_LOG.encode(item(A, 6))),  # a row of another revision (the item codec's lie)
        (7, "updated", A, orjson.dumps({**orjson.loads(ITEM_LOG.encode(item(A, 7))), "extra": 1})),
        (7, "updated", A, "[1, 2]"),
    ],
)
def test_an_entry_that_lies_is_undecodable_and_carries_no_row(entry: LogEntry) -> None:
    change = decode_entry(ITEM_LOG, entry)
    assert change.undecodable
    assert change.row is None


def test_an_undecodable_entry_keeps_its_type_when_it_is_one() -> None:
    assert decode_entry(ITEM_LOG, (7, "created", A, "junk")).kind is ChangeType.CREATED
    assert decode_entry(ITEM_LOG, (7, "renamed", A, "junk")).kind is ChangeType.UPDATED


# ---- the cross-check and the own change ------------------------------------------------------


def test_a_forged_deletion_of_a_live_row_is_undecodable_and_keeps_its_type() -> None:
    forged: Change[StoredItem] = Change(7, A, ChangeType.DELETED, None)
    (checked,) = cross_check([forged], {A: item(A, 6)})
    assert (checked.kind, checked.undecodable) == (ChangeType.DELETED, True)


def test_only_the_last_entry_of_an_id_must_match_the_table() -> None:
    older, newer = item(A, 6, "old"), item(A, 7, "new")
    changes = [decode_entry(ITEM_LOG, logged(older)), decode_entry(ITEM_LOG, logged(newer))]
    assert [c.undecodable for c in cross_check(changes, {A: newer})] == [False, False]
    assert [c.undecodable for c in cross_check(changes, {A: item(A, 7, "other")})] == [False, True]
    assert [c.undecodable for c in cross_check(changes, {})] == [False, True]


def test_an_id_written_after_its_deletion_makes_every_entry_of_it_untrusted() -> None:
    # A genuine update turned into a forged ``deleted``, a later genuine update after it: the
    # last entry matches the table, but an id is never written again once deleted.
    later = item(A, 8, "new", version=3)
    changes: list[Change[StoredItem]] = [
        Change(7, A, ChangeType.DELETED, None),
        decode_entry(ITEM_LOG, logged(later)),
        decode_entry(ITEM_LOG, logged(item(B, 9))),
    ]
    checked = cross_check(changes, {A: later, B: item(B, 9)})
    assert [(c.kind, c.undecodable) for c in checked] == [
        (ChangeType.DELETED, True),
        (ChangeType.UPDATED, True),
        (ChangeType.UPDATED, False),
    ]
    # A deletion that is the id's last entry, the table agreeing, is trusted.
    assert [c.undecodable for c in cross_check(changes[:1], {})] == [False]


def test_a_forged_row_for_the_writer_s_id_is_superseded_by_its_own_change_not_marked() -> None:
    own_row = item(A, 8, "mine", version=2)
    own: Change[StoredItem] = Change(8, A, ChangeType.UPDATED, own_row)
    other = item(B, 6)
    feed = build_feed(
        ITEM_LOG,
        [logged(other), logged(item(A, 7, "before"))],
        {A: own_row, B: other},
        revision=8,
        own=own,
        window=(5, 7),
        oldest=1,
    )
    assert feed.changes is not None
    assert [(c.revision, c.id, c.undecodable) for c in feed.changes] == [
        (6, B, False),
        (7, A, False),
        (8, A, False),
    ]
    assert feed.changes[-1] is own


def test_the_own_change_goes_last_and_its_log_entry_is_never_decoded() -> None:
    own: Change[StoredItem] = Change(7, A, ChangeType.DELETED, None)
    other = item(B, 6)
    feed = build_feed(
        ITEM_LOG, [logged(other, "created"), (7, "deleted", A, "junk")], {B: other}, revision=7, own=own
    )
    assert feed.changes == [Change(6, B, ChangeType.CREATED, other), own]


def test_a_feed_with_nothing_to_read_is_the_own_change_alone() -> None:
    own: Change[StoredItem] = Change(3, A, ChangeType.CREATED, item(A, 3))
    assert build_feed(ITEM_LOG, [], {}, revision=3, own=own).changes == [own]
    assert build_feed(ITEM_LOG, [], {}, revision=3).changes == []


# ---- the codec on disk and in the triggers ---------------------------------------------------


def test_an_item_is_logged_as_before_key_for_key() -> None:
    assert ITEM_LOG.encode(item(A, 7)) == (
        f'{{"id":"{A}","seq":1,"data":{{"name":"A"}},"created_at":"t0","updated_at":"t1",'
        '"version":1,"revision":7}'
    )


def test_the_sqlite_triggers_log_object_and_trim_are_the_recorded_text() -> None:
    # A changed trigger text would make every existing bridge.db repair its triggers.
    assert sqlite_store._LOG_OBJECT == (
        "json_object('id', id, 'custom_name', custom_name, 'name_key', name_key, 'provider', provider, "
        "'api_key_ct', hex(api_key_ct), 'api_key_preview', api_key_preview, 'base_url', base_url, "
        "'use_auth_header', use_auth_header, 'created_at', created_at, 'updated_at', updated_at, "
        "'version', version, 'revision', revision)"
    )
    assert trim_condition("r") == "r % 1000 = 0 AND revision <= r - 10000"
    triggers = "\n".join(sqlite_store._TRIGGERS[name] for name in sorted(sqlite_store._TRIGGERS))
    assert hashlib.sha256(triggers.encode()).hexdigest() == TRIGGERS_SHA256


TRIGGERS_SHA256 = "82f38e6a1fb24bb682c455dad620b4e1120e1e9f4a121737fe293be0c2cf7819"
"""sha256 of the four SQLite triggers of schema 4 (bridge.db), as recorded at its release."""


def test_the_trim_keeps_the_last_entries_once_every_thousand_revisions() -> None:
    assert trim_below(10_000) is None
    assert trim_below(11_000) == 1000
    assert trim_below(11_001) is None
    assert trim_below(8, every=4, keep=3) == 5
