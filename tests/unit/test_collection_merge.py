"""The one merge of an update (bridge.collection.merge): llm-config's rules and any collection's."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field

import bridge
from bridge.collection.merge import Merged, bound_message, merge_update
from bridge.errors import ValidationError
from bridge.llm_config import LLM_CONFIG
from tests.conftest import OPENAI_KEY


class Relay(bridge.WireModel):
    """A relay: ``token`` goes to ``url`` in ``region``; ``label`` is its own."""

    label: Annotated[str, Field(min_length=1)]
    url: str
    region: str | None = None
    token: str
    signing_key: str | None = None


RELAY = bridge.Collection(
    "relay", Relay, secret=("token", "signing_key"), secret_bound_to={"token": ("url", "region")}
)
CURRENT: dict[str, Any] = {
    "label": "Main",
    "url": "https://a.example/hook",
    "region": "eu",
    "token": "tok-1",
    "signing_key": "sig-1",
}
CONFIG: dict[str, Any] = {
    "custom_name": "Work",
    "provider": "openai",
    "api_key": OPENAI_KEY,
    "base_url": None,
    "use_auth_header": True,
}


def errors_of(info: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str, str]]:
    return [(e.field, e.code, e.message) for e in info.value.errors]


@pytest.mark.parametrize("sent", [{"url": "https://b.example/hook"}, {"region": None}, {"region": "us"}])
def test_changing_a_bound_field_without_the_secret_raises_required(sent: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        merge_update(CURRENT, sent, RELAY.rules)

    assert errors_of(info) == [("updates.token", "REQUIRED", "is required when url or region changes")]


def test_the_bound_secrets_required_keeps_model_field_order_and_replaces_its_model_errors() -> None:
    # label fails the model, the token is missing from the merge (does not open): both on
    # the wire in model order, the token's own error replaced by the binding's.
    with pytest.raises(ValidationError) as info:
        merge_update(CURRENT, {"label": "", "url": "https://b.example"}, RELAY.rules, unopened={"token"})

    assert errors_of(info) == [
        ("updates.label", "INVALID_LENGTH", "has an invalid length"),
        ("updates.token", "REQUIRED", "is required when url or region changes"),
    ]


def test_a_bound_field_sent_unchanged_needs_no_secret_and_is_a_no_op() -> None:
    assert merge_update(CURRENT, {"url": CURRENT["url"], "region": "eu"}, RELAY.rules) is None


def test_a_bound_field_changed_with_the_secret_is_merged() -> None:
    merged = merge_update(CURRENT, {"url": "https://b.example", "token": "tok-2"}, RELAY.rules)

    assert merged == Merged(
        {**CURRENT, "url": "https://b.example", "token": "tok-2"}, frozenset({"url", "token"})
    )


def test_an_unbound_field_changed_without_the_secret_keeps_it() -> None:
    merged = merge_update(CURRENT, {"label": "Renamed", "signing_key": None}, RELAY.rules)

    assert merged == Merged(
        {**CURRENT, "label": "Renamed", "signing_key": None}, frozenset({"label", "signing_key"})
    )


def test_the_same_secret_sent_again_compares_in_clear_and_is_a_no_op() -> None:
    assert merge_update(CURRENT, {"token": "tok-1"}, RELAY.rules) is None


def test_an_unopened_secret_merges_as_null_by_default() -> None:
    # The collection wire: the model judges a null secret (a required one fails).
    with pytest.raises(ValidationError) as info:
        merge_update(CURRENT, {"label": "B"}, RELAY.rules, unopened={"token"}, held=True)
    assert errors_of(info) == [("updates.token", "INVALID_FORMAT", "has the wrong type or format")]
    # A nullable one is cleared by the restoring write.
    merged = merge_update(CURRENT, {}, RELAY.rules, unopened={"signing_key"}, held=True)
    assert merged == Merged({**CURRENT, "signing_key": None}, frozenset({"signing_key"}))


def test_a_held_item_is_never_a_no_op_and_rewrites_what_was_sent() -> None:
    merged = merge_update(CURRENT, {"label": "Main"}, RELAY.rules, held=True)

    assert merged == Merged(CURRENT, frozenset({"label"}))


def test_llm_config_declares_its_key_bound_to_base_url_and_provider() -> None:
    assert LLM_CONFIG.secret_bound_to == {"api_key": ("base_url", "provider")}
    assert LLM_CONFIG.rules.bound == {"api_key": ("base_url", "provider")}
    assert bound_message(LLM_CONFIG.rules.bound["api_key"]) == "is required when baseUrl or provider changes"


@pytest.mark.parametrize(
    "sent",
    [{"base_url": "https://proxy.example/v1"}, {"provider": "custom", "base_url": "https://x.example"}],
)
def test_llm_configs_key_may_not_follow_a_new_destination_alone(sent: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        merge_update(CONFIG, sent, LLM_CONFIG.rules)

    assert errors_of(info) == [("updates.apiKey", "REQUIRED", "is required when baseUrl or provider changes")]


def test_llm_configs_key_that_does_not_open_is_required_before_any_other_check() -> None:
    with pytest.raises(ValidationError) as info:
        merge_update(CONFIG, {"custom_name": ""}, LLM_CONFIG.rules, unopened={"api_key"}, held=True)

    assert errors_of(info) == [("updates.apiKey", "REQUIRED", "is required: the stored key cannot be opened")]


def test_llm_configs_provider_change_keeps_field_order_with_a_bad_name() -> None:
    with pytest.raises(ValidationError) as info:
        merge_update(CONFIG, {"custom_name": " ", "provider": "google"}, LLM_CONFIG.rules)

    assert [(field, code) for field, code, _ in errors_of(info)] == [
        ("updates.customName", "INVALID_LENGTH"),
        ("updates.apiKey", "REQUIRED"),
    ]


@pytest.mark.parametrize(
    ("bound", "complaint"),
    [
        ({"url": ("region",)}, "must be a secret field"),
        ({"token": ("nowhere",)}, "not a non-secret field"),
        ({"token": ("signing_key",)}, "not a non-secret field"),
        ({"token": ()}, "bound to no field"),
    ],
)
def test_a_binding_must_name_a_secret_and_non_secret_fields(bound: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        bridge.Collection("relay", Relay, secret=("token", "signing_key"), secret_bound_to=bound)
