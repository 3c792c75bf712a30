"""Domain rules of DESIGN §2 and their field errors (DESIGN §5)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from bridge.models import (
    CreateParams,
    DeleteParams,
    IdParams,
    LlmConfigInput,
    LlmConfigPatch,
    UpdateParams,
    api_key_preview,
    field_errors,
    name_key,
    validation_error,
)
from tests.conftest import ANTHROPIC_KEY, CUSTOM_KEY, GOOGLE_KEY, OPENAI_KEY, openai_config


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


# ---- boundaries of every rule (DESIGN §2) --------------------------------------------


def custom_config(**extra: Any) -> dict[str, Any]:
    return {
        "customName": "Local",
        "provider": "custom",
        "apiKey": "k",
        "baseUrl": "http://127.0.0.1:8080/v1",
        **extra,
    }


def accepted(config: dict[str, Any]) -> LlmConfigInput:
    return CreateParams.model_validate({"config": config}, by_alias=True, by_name=False).config


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("n" * 100, []),
        ("n" * 101, [("config.customName", "INVALID_LENGTH")]),
        ("  " + "n" * 100 + "\t", []),
        ("e\u0301" * 100, []),  # 200 code points, 100 after NFC
        ("e\u0301" * 101, [("config.customName", "INVALID_LENGTH")]),
        ("", [("config.customName", "INVALID_LENGTH")]),
        (" \t\n ", [("config.customName", "INVALID_LENGTH")]),
    ],
)
def test_custom_name_length_boundaries_count_nfc_code_points(
    name: str, expected: list[tuple[str, str]]
) -> None:
    config = openai_config(name)
    if expected:
        assert errors_of({"config": config}) == expected
    else:
        assert accepted(config).custom_name == name.strip()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("k" * 500, []),
        ("k" * 501, [("config.apiKey", "INVALID_LENGTH")]),
        ("", [("config.apiKey", "INVALID_LENGTH")]),
        ("   ", [("config.apiKey", "INVALID_LENGTH")]),
        ("ab cd", [("config.apiKey", "API_KEY_FORMAT")]),
        ("ab\tcd", [("config.apiKey", "API_KEY_FORMAT")]),
    ],
)
def test_api_key_length_and_whitespace_boundaries(key: str, expected: list[tuple[str, str]]) -> None:
    config = custom_config(apiKey=key)
    if expected:
        assert errors_of({"config": config}) == expected
    else:
        assert accepted(config).api_key == key


def test_api_key_is_trimmed() -> None:
    assert accepted(custom_config(apiKey="  abc  ")).api_key == "abc"


@pytest.mark.parametrize(
    ("provider", "key", "ok"),
    [
        ("openai", "sk-" + "a" * 36, False),  # 39
        ("openai", "sk-" + "a" * 37, True),  # 40
        ("openai", "xk-" + "a" * 37, False),
        ("anthropic", "sk-ant-" + "a" * 42, False),  # 49
        ("anthropic", "sk-ant-" + "a" * 43, True),  # 50
        ("anthropic", "sk-" + "a" * 60, False),
        ("google", "G" * 34, False),
        ("google", "G" * 35, True),
        ("google", "G_-9" * 11 + "G", True),  # 45
        ("google", "G" * 46, False),
        ("google", "G" * 39 + "!", False),
        ("custom", "anything-goes", True),
    ],
)
def test_api_key_format_per_provider_boundaries(provider: str, key: str, ok: bool) -> None:
    config = {"customName": "x", "provider": provider, "apiKey": key, "baseUrl": "https://a.example"}
    if ok:
        assert accepted(config).api_key == key
    else:
        assert errors_of({"config": config}) == [("config.apiKey", "API_KEY_FORMAT")]


def test_base_url_length_boundary_is_2048() -> None:
    head = "https://example.com/"
    at_limit = head + "a" * (2048 - len(head))
    assert accepted(openai_config(baseUrl=at_limit)).base_url == at_limit
    assert errors_of({"config": openai_config(baseUrl=at_limit + "a")}) == [
        ("config.baseUrl", "INVALID_LENGTH")
    ]


@pytest.mark.parametrize(
    "url",
    ["https://user@example.com", "http://", "https:///path", "/relative/path", "mailto:a@b.c", "", "  "],
)
def test_base_url_without_host_or_with_userinfo_is_invalid_url(url: str) -> None:
    assert errors_of({"config": openai_config(baseUrl=url)}) == [("config.baseUrl", "INVALID_URL")]


def test_custom_without_base_url_is_provider_specific() -> None:
    config = custom_config()
    del config["baseUrl"]
    assert errors_of({"config": config}) == [("config.baseUrl", "PROVIDER_SPECIFIC")]
    assert errors_of({"config": {**config, "baseUrl": None}}) == [("config.baseUrl", "PROVIDER_SPECIFIC")]


@pytest.mark.parametrize("value", ["true", 1, 0, "yes", None, [], {}])
def test_use_auth_header_is_a_strict_boolean(value: object) -> None:
    assert errors_of({"config": openai_config(useAuthHeader=value)}) == [
        ("config.useAuthHeader", "INVALID_FORMAT")
    ]


@pytest.mark.parametrize(
    ("value", "code"), [("azure", "INVALID_ENUM"), ("OpenAI", "INVALID_ENUM"), (3, "INVALID_ENUM")]
)
def test_unknown_provider_is_invalid_enum(value: object, code: str) -> None:
    assert errors_of({"config": openai_config(provider=value)}) == [("config.provider", code)]


def test_wrong_types_are_invalid_format_and_missing_fields_required() -> None:
    assert errors_of({"config": {"customName": 5, "apiKey": ["x"]}}) == [
        ("config.customName", "INVALID_FORMAT"),
        ("config.provider", "REQUIRED"),
        ("config.apiKey", "INVALID_FORMAT"),
    ]
    assert errors_of({}) == [("config", "REQUIRED")]
    assert errors_of({"config": "x"}) == [("config", "INVALID_FORMAT")]


def test_unknown_fields_are_reported_after_model_fields() -> None:
    assert errors_of({"config": openai_config(customName="", extra=1), "more": 2}) == [
        ("config.customName", "INVALID_LENGTH"),
        ("config.extra", "UNKNOWN_FIELD"),
        ("more", "UNKNOWN_FIELD"),
    ]


# ---- patches and update params ------------------------------------------------------------

ID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"


def update_errors(params: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(PydanticValidationError) as caught:
        UpdateParams.model_validate(params, by_alias=True, by_name=False)
    return [(e.field, e.code) for e in field_errors(caught.value)]


@pytest.mark.parametrize("field", ["customName", "provider", "apiKey", "useAuthHeader"])
def test_patch_null_is_invalid_format_except_base_url(field: str) -> None:
    assert update_errors({"id": ID, "updates": {field: None}}) == [(f"updates.{field}", "INVALID_FORMAT")]


def test_patch_base_url_null_clears_and_omitted_fields_are_kept() -> None:
    params = UpdateParams.model_validate(
        {"id": ID, "updates": {"baseUrl": None}}, by_alias=True, by_name=False
    )
    assert params.updates.changes() == {"base_url": None}
    empty = UpdateParams.model_validate({"id": ID, "updates": {}}, by_alias=True, by_name=False)
    assert empty.updates.changes() == {}


def test_update_params_report_every_error_in_field_order() -> None:
    params = {
        "id": "not-a-uuid",
        "updates": {"customName": " ", "baseUrl": "ftp://x", "useAuthHeader": "no", "zzz": 1},
        "expectedVersion": "1",
    }
    assert update_errors(params) == [
        ("id", "INVALID_FORMAT"),
        ("updates.customName", "INVALID_LENGTH"),
        ("updates.baseUrl", "INVALID_URL"),
        ("updates.useAuthHeader", "INVALID_FORMAT"),
        ("updates.zzz", "UNKNOWN_FIELD"),
        ("expectedVersion", "INVALID_FORMAT"),
    ]


@pytest.mark.parametrize("version", [0, -1, True, 1.0])
def test_expected_version_must_be_a_positive_integer(version: object) -> None:
    assert update_errors({"id": ID, "updates": {}, "expectedVersion": version}) == [
        ("expectedVersion", "INVALID_FORMAT")
    ]


@pytest.mark.parametrize("model", [IdParams, DeleteParams])
def test_non_uuid_id_is_invalid_format_on_id(model: type[IdParams | DeleteParams]) -> None:
    with pytest.raises(PydanticValidationError) as caught:
        model.model_validate({"id": "42"}, by_alias=True, by_name=False)
    assert [(e.field, e.code) for e in field_errors(caught.value)] == [("id", "INVALID_FORMAT")]


def test_id_is_lower_cased() -> None:
    assert IdParams.model_validate({"id": ID.upper()}).id == ID


# ---- secrets never echoed ------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        openai_config(apiKey="sk-short-secret-value"),
        {"customName": "x", "provider": "google", "apiKey": "Gsecret" * 10},
        openai_config(apiKey="sk-secret with space inside-0123456789abcdefghij"),
        openai_config(baseUrl="https://user:sk-secret-in-url-0123@example.com"),
    ],
)
def test_errors_and_their_text_never_contain_submitted_values(config: dict[str, Any]) -> None:
    secret = config.get("baseUrl") or config["apiKey"]
    with pytest.raises(PydanticValidationError) as caught:
        CreateParams.model_validate({"config": config}, by_alias=True, by_name=False)
    bridge_error = validation_error(caught.value)
    rendered = [str(caught.value), repr(caught.value), str(bridge_error), repr(bridge_error.to_data())]
    assert all("secret" not in text and secret not in text for text in rendered), rendered


@pytest.mark.parametrize("key", [OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, CUSTOM_KEY])
def test_repr_of_models_never_shows_the_api_key(key: str) -> None:
    provider = {OPENAI_KEY: "openai", ANTHROPIC_KEY: "anthropic", GOOGLE_KEY: "google"}.get(key, "custom")
    config = accepted(
        {"customName": "x", "provider": provider, "apiKey": key, "baseUrl": "https://a.example"}
    )
    patch = LlmConfigPatch.model_validate({"apiKey": key})
    update = UpdateParams.model_validate({"id": ID, "updates": {"apiKey": key}})
    for model in (config, patch, update, CreateParams(config=config)):
        assert key not in repr(model)
        assert key not in str(model)


# ---- control characters (issue 15 item 5) ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/v1\r\nX-Injected: 1",  # header injection into a later request
        "https://api.openai.com\t.evil.com/v1",  # the parser drops the tab: host ...openai.com.evil.com
        "https://api.openai.com\n.evil.com/v1",
        "https://example.com/v 1",  # an inner space
        "https://example.com/\x00",
        "https://example.com/\x1fx",
        "https://example.com/\x7f",
    ],
)
def test_base_url_with_spaces_or_control_characters_is_invalid_url(url: str) -> None:
    assert errors_of({"config": openai_config(baseUrl=url)}) == [("config.baseUrl", "INVALID_URL")]
    with pytest.raises(PydanticValidationError) as caught:
        LlmConfigPatch.model_validate({"baseUrl": url})
    assert [(e.field, e.code) for e in field_errors(caught.value, ("updates",))] == [
        ("updates.baseUrl", "INVALID_URL")
    ]


def test_base_url_control_characters_around_it_are_trimmed_first() -> None:
    params = CreateParams.model_validate(
        {"config": openai_config(baseUrl="\t https://example.com/v1 \r\n")}, by_alias=True, by_name=False
    )
    assert params.config.base_url == "https://example.com/v1"


@pytest.mark.parametrize(
    "name",
    [
        "Work\nOpenAI",
        "Work\x00",
        "Work\x1b[31m",  # an ANSI escape
        "Work\x7f",
        "Work\x85x",  # C1: NEL inside (trimming removes it only at the ends)
        "Work\x9b",  # C1: CSI
        "Work \u202eIAnepO",  # right-to-left override ("Trojan Source")
        "Work \u202a",
        "Work \u2066x\u2069",  # isolates
    ],
)
def test_custom_name_with_control_characters_or_bidi_overrides_is_invalid_format(name: str) -> None:
    assert errors_of({"config": openai_config(name)}) == [("config.customName", "INVALID_FORMAT")]
    with pytest.raises(PydanticValidationError) as caught:
        LlmConfigPatch.model_validate({"customName": name})
    assert [(e.field, e.code) for e in field_errors(caught.value, ("updates",))] == [
        ("updates.customName", "INVALID_FORMAT")
    ]
    rendered = str(validation_error(caught.value).to_data())
    assert name not in rendered


@pytest.mark.parametrize("name", ["Arbeit – OpenAI", "עבודה", "مفتاح العمل", "東京 🗼", "Work\u200fOpenAI"])
def test_custom_name_keeps_ordinary_unicode_and_bidi_marks(name: str) -> None:
    params = CreateParams.model_validate({"config": openai_config(name)}, by_alias=True, by_name=False)
    assert params.config.custom_name == name
