"""The collections' write protocol (pure functions) and the rules of a definition."""

from __future__ import annotations

import orjson
import pytest

import bridge
from bridge.collection.protocol import (
    StaleBaseError,
    StoredItem,
    associated_data,
    check_write,
    decode_data,
    decode_entry,
    encode_data,
    encode_entry,
    feed_reaches,
    merge,
    recovered_revision,
    trim_below,
    unique_key,
    unique_keys,
)
from bridge.errors import ConfigNotFoundError, VersionConflictError
from bridge.keystore import DataKey, DecryptionError, KeyCipher
from bridge.storage.protocol import CHANGE_LOG_KEEP, TRIM_EVERY

ITEM = StoredItem("0b7e2f44-5c1a-4d3e-9f6b-2a8c7d1e4f90", 3, {"name": "A", "model": None}, "t0", "t1", 2, 7)


def test_unique_keys_ignore_case_spacing_and_normal_form() -> None:
    assert unique_key(" Straße ") == unique_key("STRASSE")
    assert unique_key("e\u0301") == unique_key("\u00e9")
    assert unique_keys(("name", "model"), {"name": "Ab", "model": None}) == [("name", "ab")]


def test_check_write_passes_when_versions_match() -> None:
    check_write("x", 2, 2, 2)
    check_write("x", 2, None, 2)
    check_write("x", None, None, None)  # deleting an unknown id is no error


def test_check_write_refuses_unknown_id_on_update() -> None:
    with pytest.raises(ConfigNotFoundError):
        check_write("x", None, None, 1)


def test_check_write_refuses_a_wrong_expected_version() -> None:
    with pytest.raises(VersionConflictError) as raised:
        check_write("x", 3, 2, 3)
    assert raised.value.context == {"id": "x", "expectedVersion": 2, "actualVersion": 3}
    with pytest.raises(VersionConflictError) as bad:
        check_write("x", "3", 3, None)  # an untrusted non-integer version never matches
    assert bad.value.actual is None


def test_check_write_reports_a_stale_base_without_expected_version() -> None:
    with pytest.raises(StaleBaseError):
        check_write("x", 4, None, 3)


def test_merge_replaces_only_sent_fields() -> None:
    assert merge({"a": 1, "b": 2}, {"b": None}) == {"a": 1, "b": None}


def test_trim_keeps_the_last_entries_once_every_trim_every() -> None:
    assert trim_below(TRIM_EVERY) is None
    assert trim_below(CHANGE_LOG_KEEP + 1) is None
    revision = CHANGE_LOG_KEEP + TRIM_EVERY
    assert trim_below(revision) == revision - CHANGE_LOG_KEEP


def test_feed_reaches_only_without_a_gap() -> None:
    assert feed_reaches(None, 5, 5)
    assert feed_reaches(6, 5, 9)
    assert not feed_reaches(7, 5, 9)
    assert not feed_reaches(None, 5, 6)


def test_data_codec_round_trips_and_refuses_junk() -> None:
    assert decode_data(encode_data({"b": 1, "a": [1]})) == {"a": [1], "b": 1}
    assert encode_data({"b": 1, "a": 2}) == encode_data({"a": 2, "b": 1})
    for junk in ("not json", "[1]", b"\xff", None, 5):
        assert decode_data(junk) is None


def test_log_entries_round_trip_and_junk_is_undecodable() -> None:
    change = decode_entry(7, ITEM.id, "updated", encode_entry(ITEM))
    assert change.item == ITEM
    assert not change.undecodable
    assert decode_entry(8, ITEM.id, "deleted", None).item is None
    assert decode_entry(8, ITEM.id, "updated", encode_entry(ITEM)).undecodable  # revision mismatch
    assert decode_entry(7, "other", "updated", encode_entry(ITEM)).undecodable
    assert decode_entry(7, ITEM.id, "updated", "{}").undecodable
    assert decode_entry(7, ITEM.id, "weird", None).undecodable
    assert decode_entry("7", ITEM.id, "created", None).undecodable


@pytest.mark.parametrize(
    ("column", "lie"),
    [
        ("seq", "1"),
        ("seq", None),
        ("version", "2"),
        ("version", True),
        ("created_at", 1),
        ("updated_at", None),
    ],
)
def test_a_log_entry_with_a_column_of_the_wrong_type_is_undecodable(column: str, lie: object) -> None:
    entry = orjson.loads(encode_entry(ITEM))
    entry[column] = lie
    assert decode_entry(7, ITEM.id, "updated", orjson.dumps(entry)).undecodable


def test_a_secret_opens_only_for_its_collection_item_and_field() -> None:
    cipher = KeyCipher(DataKey(b"k" * 32, "file"))
    sealed = cipher.encrypt("s3cret", associated_data("webhook", ITEM.id, "token"))
    assert cipher.decrypt(sealed, associated_data("webhook", ITEM.id, "token")) == "s3cret"
    for other in (
        associated_data("webhook", ITEM.id, "signing_key"),
        associated_data("webhook", "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d", "token"),
        associated_data("other", ITEM.id, "token"),
        ITEM.id,  # an llm-config's associated data
    ):
        with pytest.raises(DecryptionError):
            cipher.decrypt(sealed, other)


class Item(bridge.WireModel):
    """A test model."""

    name: str
    size: int = 0
    ref: str | None = None


class Clashing(bridge.WireModel):
    """A secret ``name`` beside a field named like its preview."""

    name: str
    name_preview: str


class Viewish(bridge.WireModel):
    """A field the view adds itself."""

    version: int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad_Name"}, "bad collection name"),
        ({"name": "llm-config"}, "bad collection name"),
        ({"unique": ("nope",)}, "has no field"),
        ({"unique": ("size",)}, "must be a string field"),
        ({"secret": ("size",)}, "must be a string field"),
        ({"references": {"name": bridge.Ref("llm-config")}}, "must accept null"),
        ({"secret": ("name",), "unique": ("name",)}, "cannot be unique"),
        (
            {"secret": ("ref",), "references": {"ref": bridge.Ref("llm-config")}},
            "cannot be unique or a reference",
        ),
        ({"model": "clashing"}, "clashes with the preview"),
        ({"model": "viewish"}, "the view adds them"),
    ],
)
def test_a_collection_with_bad_rules_is_refused(kwargs: dict[str, object], message: str) -> None:
    name = kwargs.pop("name", "item")
    model = {"clashing": Clashing, "viewish": Viewish}.get(str(kwargs.pop("model", "")), Item)
    if model is Clashing:
        kwargs["secret"] = ("name",)
    with pytest.raises(ValueError, match=message):
        bridge.Collection(name, model, **kwargs)  # type: ignore[arg-type]


def test_a_collection_registers_six_channels_and_a_topic() -> None:
    registry = bridge.Registry()
    registry.add_collection(bridge.Collection("item", Item, references={"ref": bridge.Ref("item")}))
    assert registry.names() == [
        f"item:{v}" for v in ("create", "delete", "list", "read", "snapshot", "update")
    ]
    assert [t.name for t in registry.topics] == ["item:changed"]
    with pytest.raises(ValueError, match="already registered"):
        registry.add_collection(bridge.Collection("item", Item))


def test_a_lost_counter_restarts_from_the_highest_logged_or_stored_integer() -> None:
    assert recovered_revision(None, None) == 0
    assert recovered_revision(7, None) == 7
    assert recovered_revision(None, 9) == 9
    assert recovered_revision(7, 9) == 9
    assert recovered_revision(12, 9) == 12
    # Another program's values that are not integers count as none.
    assert recovered_revision("99", 3) == 3
    assert recovered_revision(True, None) == 0  # noqa: FBT003 - a bool stored by another program
