"""llm-config is declared as a Collection: its specs are derived from the definition (issue 14)."""

from __future__ import annotations

import pytest

from bridge import api
from bridge.collection import Collection, Wire
from bridge.errors import ConfigNotFoundError, DuplicateConfigNameError
from bridge.llm_config import LLM_CONFIG
from bridge.models import LlmConfigInput, WireModel


class Note(WireModel):
    title: str


def test_the_llm_config_specs_of_api_are_the_collections_own() -> None:
    derived = LLM_CONFIG.channels.all()
    assert api.LLM_CONFIG_CHANNELS[: len(derived)] == derived
    assert all(a is b for a, b in zip(api.LLM_CONFIG_CHANNELS, derived, strict=False))
    assert api.LLM_CONFIG_CHANGED is LLM_CONFIG.changed
    assert [spec.name for spec in derived] == [
        f"llm-config:{verb}" for verb in ("create", "read", "update", "delete", "list", "snapshot")
    ]


def test_llm_config_keeps_its_own_errors_and_keys() -> None:
    assert ConfigNotFoundError in api.LLM_CONFIG_UPDATE.errors
    assert DuplicateConfigNameError in api.LLM_CONFIG_CREATE.errors
    assert "config" in api.LLM_CONFIG_CREATE.params.model_fields
    assert LLM_CONFIG.wire.items_key == "configs"
    assert not LLM_CONFIG.wire.generic


def test_a_reserved_name_is_refused_unless_builtin() -> None:
    with pytest.raises(ValueError, match="bad collection name"):
        Collection("llm-config", LlmConfigInput)


def test_a_wire_with_an_unknown_verb_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown verbs"):
        Collection("note", Note, wire=Wire(summaries={"rename": "Rename a note."}))


def test_wire_keys_the_types_do_not_have_are_refused() -> None:
    with pytest.raises(ValueError, match="wire keys"):
        Collection("note", Note, wire=Wire(item_key="config"))


def test_a_collection_with_its_own_wording_uses_it() -> None:
    notes = Collection("note", Note, wire=Wire(summaries={"read": "Read a note."}))
    assert notes.channels.read.summary == "Read a note."
    assert notes.channels.list.summary == "Every item of note in creation order."
    assert notes.wire.generic
