"""Domain rules of DESIGN §2 and their field errors (DESIGN §5)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from bridge.models import CreateParams, LlmConfigInput, api_key_preview, field_errors, name_key
from tests.conftest import OPENAI_KEY, openai_config


def errors_of(params: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(PydanticValidationError) as caught:
        CreateParams.model_validate(params, by_alias=True, by_name=False)
    return [(e.field, e.code) for e in field_errors(caught.value)]


def test_valid_input_is_trimmed_and_defaults_auth_header() -> None:
    params = CreateParams.model_validate({"config": openai_config("  Work  ")}, by_alias=True, by_name=False)
    assert params.config.custom_name == "Work"
    assert params.config.use_auth_header is True
    assert params.config.base_url is None


def test_every_failure_is_reported_in_field_order() -> None:
    config = {"customName": " ", "provider": "custom", "apiKey": "a b", "useAuthHeader": "yes", "x": 1}
    assert errors_of({"config": config}) == [
        ("config.customName", "INVALID_LENGTH"),
        ("config.apiKey", "API_KEY_FORMAT"),
        ("config.baseUrl", "PROVIDER_SPECIFIC"),
        ("config.useAuthHeader", "INVALID_FORMAT"),
        ("config.x", "UNKNOWN_FIELD"),
    ]


def test_snake_case_names_are_unknown_on_the_wire() -> None:
    config = {"custom_name": "x", "provider": "openai", "apiKey": OPENAI_KEY}
    assert errors_of({"config": config}) == [
        ("config.customName", "REQUIRED"),
        ("config.custom_name", "UNKNOWN_FIELD"),
    ]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com", "INVALID_URL"),
        ("https://user:pw@example.com", "INVALID_URL"),
        ("nope", "INVALID_URL"),
    ],
)
def test_bad_base_urls_are_refused(url: str, code: str) -> None:
    assert errors_of({"config": openai_config(baseUrl=url)}) == [("config.baseUrl", code)]


def test_base_url_is_kept_exactly_as_given() -> None:
    url = "HTTPS://Example.COM:8443/v1/"
    params = CreateParams.model_validate(
        {"config": openai_config(baseUrl=f" {url} ")}, by_alias=True, by_name=False
    )
    assert params.config.base_url == url


def test_messages_never_echo_the_submitted_value() -> None:
    secret = "sk-leaked-value-123"
    with pytest.raises(PydanticValidationError) as caught:
        CreateParams.model_validate({"config": openai_config(apiKey=secret)}, by_alias=True, by_name=False)
    assert all(secret not in e.message for e in field_errors(caught.value))


def test_name_key_folds_case_and_normalises() -> None:
    assert name_key(" Straße ") == name_key("STRASSE")
    assert name_key("e\u0301") == name_key("\u00e9")


def test_preview_masks_short_keys() -> None:
    assert api_key_preview(OPENAI_KEY) == f"sk-...{OPENAI_KEY[-3:]}"
    assert api_key_preview("123456789") == "••••••••"


def test_repr_never_shows_the_key() -> None:
    model = LlmConfigInput.model_validate(openai_config())
    assert OPENAI_KEY not in repr(model)
    assert OPENAI_KEY not in str(model)
