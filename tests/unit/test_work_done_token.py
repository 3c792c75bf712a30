"""Every channel's params accept ``workDoneToken`` (LSP ``WorkDoneProgressParams``), built-in or not."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic import ValidationError as PydanticValidationError

from bridge import api
from bridge.models import EmptyParams, IdParams, LlmConfigTestParams, validation_error
from bridge.schemas import openrpc_document

ID = "0b7e2f44-5c1a-4d3e-9f6b-2a8c7d1e4f90"


class AppParams(BaseModel):
    """An application's own params model: no aliases, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid")
    text: str


class OwnToken(BaseModel):
    work_done_token: int = Field(alias="workDoneToken")


def test_builtin_params_accept_a_string_or_integer_token() -> None:
    for spec in api.BUILTIN_CHANNELS:
        if issubclass(spec.params, RootModel):
            continue
        fields = spec.params.model_fields
        assert fields["work_done_token"].alias == "workDoneToken", spec.name
    parsed = api.LLM_CONFIG_READ.params.model_validate({"id": ID, "workDoneToken": "t-1"}, by_alias=True)
    assert isinstance(parsed, IdParams)
    assert parsed.id == ID
    assert parsed.work_done_token == "t-1"  # type: ignore[attr-defined]
    assert api.LLM_CONFIG_LIST.params.model_validate({"workDoneToken": 7}).work_done_token == 7  # type: ignore[attr-defined]


def test_an_application_model_is_extended_and_handlers_get_their_own_class() -> None:
    spec: api.ChannelSpec[AppParams, str] = api.ChannelSpec("app:echo", AppParams, str, "Echo.")
    assert spec.params is not AppParams
    assert issubclass(spec.params, AppParams)
    assert spec.params.__name__ == "AppParams"
    parsed = spec.params.model_validate({"text": "hi", "workDoneToken": "x"}, by_alias=True, by_name=False)
    assert isinstance(parsed, AppParams)
    assert parsed.text == "hi"
    with pytest.raises(PydanticValidationError):  # still closed to other keys
        spec.params.model_validate({"text": "hi", "other": 1})
    again: api.ChannelSpec[AppParams, str] = api.ChannelSpec("app:again", AppParams, str, "Again.")
    assert again.params is spec.params  # one extension per model


def test_positional_and_self_declared_models_are_left_alone() -> None:
    assert api.RPC_ON.params is api.EventNames
    assert api.accepting_work_done_token(OwnToken) is OwnToken
    assert api.accepting_work_done_token(api.LLM_CONFIG_READ.params) is api.LLM_CONFIG_READ.params


@pytest.mark.parametrize("token", [None, True, False, 1.0, [], {}, "x" * 257, 2**53, -(2**53)])
def test_a_malformed_token_is_invalid_format_on_work_done_token(token: Any) -> None:
    with pytest.raises(PydanticValidationError) as info:
        api.LLM_CONFIG_LIST.params.model_validate({"workDoneToken": token}, by_alias=True, by_name=False)
    errors = validation_error(info.value).errors
    assert [(e.field, e.code) for e in errors] == [("workDoneToken", "INVALID_FORMAT")]


@pytest.mark.parametrize("token", ["", "x" * 256, 0, 2**53 - 1, -(2**53 - 1)])
def test_token_bounds_are_inclusive(token: str | int) -> None:
    parsed = api.LLM_CONFIG_LIST.params.model_validate({"workDoneToken": token}, by_alias=True, by_name=False)
    assert parsed.work_done_token == token  # type: ignore[attr-defined]


def test_openrpc_lists_work_done_token_as_an_optional_param_of_every_by_name_channel() -> None:
    document = openrpc_document(api.BUILTIN_CHANNELS, api.BUILTIN_TOPICS)
    for method in document["methods"]:
        if method.get("x-server-to-client") or method["paramStructure"] == "by-position":
            continue
        params = {p["name"]: p for p in method["params"]}
        assert params["workDoneToken"]["required"] is False, method["name"]
        assert params["workDoneToken"]["schema"]["anyOf"][0] == {"type": "string", "maxLength": 256}


def test_empty_params_base_model_itself_is_unchanged() -> None:
    assert "work_done_token" not in EmptyParams.model_fields
    with pytest.raises(PydanticValidationError):
        EmptyParams.model_validate({"workDoneToken": "t"})


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("id", "REQUIRED")]),
        ({"id": None}, [("id", "INVALID_FORMAT")]),
        ({"config": None}, [("config", "INVALID_FORMAT")]),
        ({"id": "not-a-uuid"}, [("id", "INVALID_FORMAT")]),
        ({"id": ID, "timeoutMs": True}, [("timeoutMs", "INVALID_FORMAT")]),
        ({"id": ID, "timeoutMs": "100"}, [("timeoutMs", "INVALID_FORMAT")]),
    ],
)
def test_llm_config_test_params_errors(params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    with pytest.raises(PydanticValidationError) as info:
        LlmConfigTestParams.model_validate(params, by_alias=True, by_name=False)
    assert [(e.field, e.code) for e in validation_error(info.value).errors] == expected


def test_llm_config_test_params_defaults() -> None:
    parsed = LlmConfigTestParams.model_validate({"id": ID.upper()}, by_alias=True, by_name=False)
    assert (parsed.id, parsed.config, parsed.timeout_ms) == (ID, None, 10_000)
