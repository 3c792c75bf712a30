"""Domain models: LLM provider configurations and their change events (DESIGN §2).

Wire names are camelCase (pydantic aliases); Python names are snake_case. Input models
reject unknown fields; every rule failure is reported as a :class:`bridge.errors.FieldError`
with the codes of DESIGN §5 by :func:`field_errors`, never with pydantic's own text
(which echoes ``input_value``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from bridge.errors import FieldError, ValidationError

NAME_MAX = 100
API_KEY_MAX = 500
BASE_URL_MAX = 2048
OPENAI_KEY_MIN = 40
ANTHROPIC_KEY_MIN = 50
GOOGLE_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{35,45}\Z")
_PREVIEW_MIN = 10
MASKED_PREVIEW = "••••••••"


class Provider(StrEnum):
    """LLM provider of a config; decides the API-key format.

    ``openai``: the key starts with ``sk-`` and has at least 40 characters. ``anthropic``:
    starts with ``sk-ant-``, at least 50. ``google``: 35 to 45 characters from A-Z, a-z,
    0-9, ``_`` and ``-``. ``custom``: any key, and ``baseUrl`` is required.
    """

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"
    CUSTOM = "custom"


class WireModel(BaseModel):
    """Base for every model that crosses the wire: camelCase aliases, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        # Validators and serializers are built on first use, not at import: a sidecar's
        # ready line needs none of them (issue 17, cold start).
        defer_build=True,
    )


def nfc_length(text: str) -> int:
    """Return the length of ``text`` in Unicode code points after NFC normalisation."""
    return len(unicodedata.normalize("NFC", text))


def name_key(name: str) -> str:
    """Return the uniqueness key of a config name: ``casefold(NFC(trim(name)))``.

    "Straße" and "STRASSE" share a key. Every backend holds it in a unique index.
    """
    return unicodedata.normalize("NFC", name.strip()).casefold()


def api_key_preview(api_key: str) -> str:
    """Return the masked preview: first 3 + ``...`` + last 3, or ``••••••••`` under 10 chars."""
    if len(api_key) < _PREVIEW_MIN:
        return MASKED_PREVIEW
    return f"{api_key[:3]}...{api_key[-3:]}"


def _fail(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


# Bidirectional embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069): they
# reorder how a name is displayed ("Trojan Source", CVE-2021-42574), so a config could pass
# for another one in a settings list.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _has_control(text: str) -> bool:
    """True when ``text`` holds a C0/C1 control (category Cc, DEL included) or a bidi control."""
    return any(unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS for ch in text)


def _check_name(value: str) -> str:
    value = value.strip()
    if not 1 <= nfc_length(value) <= NAME_MAX:
        raise _fail("INVALID_LENGTH", f"must be 1 to {NAME_MAX} characters after trimming")
    if _has_control(value):
        raise _fail("INVALID_FORMAT", "must not contain control characters or bidirectional overrides")
    return value


def _check_api_key(value: str) -> str:
    value = value.strip()
    if not 1 <= nfc_length(value) <= API_KEY_MAX:
        raise _fail("INVALID_LENGTH", f"must be 1 to {API_KEY_MAX} characters")
    if any(ch.isspace() for ch in value):
        raise _fail("API_KEY_FORMAT", "must not contain whitespace")
    return value


@functools.cache
def _url_adapter() -> TypeAdapter[HttpUrl]:
    """The URL validator, built on first use (not at import: cold start)."""
    return TypeAdapter(HttpUrl)


def _check_base_url(value: str) -> str:
    value = value.strip()
    if len(value) > BASE_URL_MAX:
        raise _fail("INVALID_LENGTH", f"must be at most {BASE_URL_MAX} characters")
    # The URL parser silently drops tabs and newlines ("https://api.openai.com\t.evil.com"
    # parses as host api.openai.com.evil.com) and the value is stored as given: anything
    # at or below U+0020, or DEL, is refused before parsing.
    if any(ch <= " " or ch == "\x7f" for ch in value):
        raise _fail("INVALID_URL", "must not contain spaces or control characters")
    try:
        url = _url_adapter().validate_python(value)
    except PydanticValidationError:
        raise _fail("INVALID_URL", "must be an absolute http or https URL with a host") from None
    # The WHATWG parser behind HttpUrl repairs "https:///x" into host "x"; the value is
    # stored as given, so its own authority must hold the host and no userinfo.
    authority = urlsplit(value).netloc
    if not url.host or not authority:
        raise _fail("INVALID_URL", "must be an absolute http or https URL with a host")
    if url.username or url.password or "@" in authority:
        raise _fail("INVALID_URL", "must not contain credentials (user:pass@)")
    return value


def check_api_key_format(provider: Provider, api_key: str) -> None:
    """Raise ``PydanticCustomError('API_KEY_FORMAT')`` when the key does not fit ``provider``.

    Formats (DESIGN §2): openai starts ``sk-`` and has ≥ 40 characters; anthropic starts
    ``sk-ant-`` and has ≥ 50; google matches ``^[A-Za-z0-9_-]{35,45}$``; custom any.
    """
    if provider is Provider.OPENAI:
        ok = api_key.startswith("sk-") and len(api_key) >= OPENAI_KEY_MIN
        rule = f"an OpenAI key starts with 'sk-' and has at least {OPENAI_KEY_MIN} characters"
    elif provider is Provider.ANTHROPIC:
        ok = api_key.startswith("sk-ant-") and len(api_key) >= ANTHROPIC_KEY_MIN
        rule = f"an Anthropic key starts with 'sk-ant-' and has at least {ANTHROPIC_KEY_MIN} characters"
    elif provider is Provider.GOOGLE:
        ok = GOOGLE_KEY_PATTERN.match(api_key) is not None
        rule = "a Google key has 35 to 45 characters from A-Z, a-z, 0-9, '_' and '-'"
    else:
        return
    if not ok:
        raise _fail("API_KEY_FORMAT", rule)


CustomName = Annotated[
    str,
    Field(
        description="Display name; unique case-insensitively; no control characters or "
        "bidirectional overrides."
    ),
]
DisplayName = Annotated[
    str,
    AfterValidator(_check_name),
    Field(
        description="Display name: trimmed, 1 to 100 characters (after NFC), no control characters or "
        "bidirectional overrides."
    ),
]
"""A name people read in a list, with ``customName``'s rules (:func:`_check_name`) for a field
of your own collection: trimmed; 1 to 100 characters after NFC, else ``INVALID_LENGTH``; no
C0/C1 control character or bidirectional override (a name that reads as another's),
else ``INVALID_FORMAT``. Pair it with ``unique=`` for "unique ignoring case"."""
ApiKey = Annotated[str, Field(description="Provider API key; write-only over IPC.")]
BaseUrl = Annotated[
    str,
    Field(description="Absolute http(s) URL of the provider's API; no spaces or control characters."),
]


class LlmConfigInput(WireModel):
    """A new LLM provider configuration (the ``config`` of ``llm-config:create``).

    ``customName``: trimmed, 1 to 100 characters (code points after NFC), no C0/C1 control
    characters or bidirectional overrides (INVALID_FORMAT), unique ignoring case ("Straße"
    and "STRASSE" clash). ``apiKey``: trimmed, 1 to 500 characters, no whitespace inside,
    in the provider's format (see ``Provider``). ``baseUrl``: optional absolute http(s)
    URL with a host and no credentials, at most 2048 characters, with no character at or
    below U+0020 or equal to U+007F after trimming (INVALID_URL), stored as given
    (trimmed); required for ``custom``. ``useAuthHeader``: a JSON boolean
    (default true).
    """

    custom_name: CustomName
    provider: Provider
    api_key: ApiKey = Field(repr=False)
    base_url: BaseUrl | None = Field(default=None, validate_default=True)
    use_auth_header: StrictBool = True

    @field_validator("custom_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: str, info: ValidationInfo) -> str:
        value = _check_api_key(value)
        provider = info.data.get("provider")
        if isinstance(provider, Provider):
            check_api_key_format(provider, value)
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("provider") is Provider.CUSTOM:
                raise _fail("PROVIDER_SPECIFIC", "is required for the custom provider")
            return None
        return _check_base_url(value)


def null_rejected(schema: dict[str, Any]) -> None:
    """JSON Schema hook: the field defaults to None in Python but refuses ``null`` on the wire.

    Drops the ``null`` branch and the default from the field's schema (llm-config's patch
    and every collection's patch use it).
    """
    options = [option for option in schema.pop("anyOf", []) if option != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    else:
        schema["anyOf"] = options
    schema.pop("default", None)


class LlmConfigPatch(WireModel):
    """``updates`` of ``llm-config:update``: every field optional.

    An omitted field keeps its value; ``baseUrl: null`` clears it; ``null`` elsewhere is
    INVALID_FORMAT. The merged result must satisfy every rule of ``LlmConfigInput``. A
    patch whose merged ``baseUrl`` or ``provider`` differs from the stored one (clearing
    ``baseUrl`` included) must carry ``apiKey`` (else ``updates.apiKey`` REQUIRED): a
    stored key never follows a new destination on its own.
    """

    # ``X | None`` keeps pydantic's nullable schema (errors located at the field, not at
    # a union member); null is refused by ``_no_null`` and dropped from the JSON Schema.
    custom_name: CustomName | None = Field(default=None, json_schema_extra=null_rejected)
    provider: Provider | None = Field(default=None, json_schema_extra=null_rejected)
    api_key: ApiKey | None = Field(default=None, repr=False, json_schema_extra=null_rejected)
    base_url: BaseUrl | None = None
    use_auth_header: StrictBool | None = Field(default=None, json_schema_extra=null_rejected)

    @field_validator("custom_name", "provider", "api_key", "use_auth_header", mode="wrap")
    @classmethod
    def _no_null(cls, value: Any, handler: Any) -> Any:
        if value is None:
            raise _fail("INVALID_FORMAT", "must not be null")
        return handler(value)

    @field_validator("custom_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: str) -> str:
        return _check_api_key(value)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_base_url(value)

    def changes(self) -> dict[str, Any]:
        """Return the fields the client sent, by Python name (``base_url`` may be None)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class LlmConfigView(WireModel):
    """A config as renderers see it: no ``apiKey``, a masked ``apiKeyPreview`` instead.

    Every key is always present; ``baseUrl`` is a string or null. Timestamps are ISO 8601
    UTC with millisecond precision and a ``Z`` suffix.
    """

    id: str = Field(description="UUID v4, server-generated.")
    custom_name: str
    provider: Provider
    api_key_preview: str = Field(description="First 3 + '...' + last 3, or '••••••••'.")
    base_url: str | None
    use_auth_header: bool
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    updated_at: str = Field(json_schema_extra={"format": "date-time"})
    version: int = Field(ge=1, description="1 on create, +1 on every effective update.")


class ChangeType(StrEnum):
    """Kind of change in ``llm-config:changed``."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class LlmConfigChanged(WireModel):
    """Payload of the ``llm-config:changed`` notification (server → renderer).

    ``config`` is the view after the change; absent for ``deleted``. ``revision`` is the
    store's gap-free global revision, increasing in commit order.
    """

    type: ChangeType
    id: str
    revision: int = Field(ge=1)
    # Absent (never null) on the wire for ``deleted``: exclude_if keeps the schema honest.
    config: LlmConfigView | SkipJsonSchema[None] = Field(default=None, exclude_if=lambda v: v is None)

    def to_wire(self) -> dict[str, Any]:
        """Return the wire payload (``config`` omitted for ``deleted``)."""
        payload: dict[str, Any] = {
            "type": self.type.value,
            "id": self.id,
            "revision": self.revision,
        }
        if self.config is not None:
            payload["config"] = self.config.model_dump(mode="json")
        return payload


# ---- channel params and results -------------------------------------------------------

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def _check_id(value: str) -> str:
    if not _UUID_RE.match(value):
        raise _fail("INVALID_FORMAT", "must be a UUID")
    return value.lower()


ConfigId = Annotated[str, AfterValidator(_check_id), Field(description="Config id (UUID).")]


class EmptyParams(WireModel):
    """Params of channels that take none: absent or ``{}``."""


class CreateParams(WireModel):
    """Params of ``llm-config:create``: ``{config: LlmConfigInput}``."""

    config: LlmConfigInput


class IdParams(WireModel):
    """Params of ``llm-config:read``: ``{id}``."""

    id: ConfigId


class UpdateParams(WireModel):
    """Params of ``llm-config:update``: ``{id, updates: LlmConfigPatch, expectedVersion?}``."""

    id: ConfigId
    updates: LlmConfigPatch
    expected_version: StrictInt | None = Field(default=None, ge=1)


class DeleteParams(WireModel):
    """Params of ``llm-config:delete``: ``{id, expectedVersion?}``."""

    id: ConfigId
    expected_version: StrictInt | None = Field(default=None, ge=1)


class DeleteResult(WireModel):
    """Result of ``llm-config:delete``: ``{deleted}``; false when the id was unknown."""

    deleted: bool


class Snapshot(WireModel):
    """Result of ``llm-config:snapshot``: every view and the revision they reflect."""

    revision: int = Field(ge=0)
    configs: list[LlmConfigView]


class InitializeResult(WireModel):
    """Result of ``llm-config:initialize``: ``{initialized: true, count}``."""

    initialized: Literal[True] = True
    count: int = Field(ge=0)


class RefreshResult(WireModel):
    """Result of ``llm-config:refresh-cache``: ``{count, revision}``."""

    count: int = Field(ge=0)
    revision: int = Field(ge=0)


# ---- llm-config:test --------------------------------------------------------------------

TEST_TIMEOUT_MS_DEFAULT = 10_000
TEST_TIMEOUT_MS_MAX = 60_000


class LlmConfigTestParams(WireModel):
    """Params of ``llm-config:test``: ``{id}`` or ``{config}``, plus ``timeoutMs?``.

    Exactly one of ``id`` (a saved config, tested with its stored key) and ``config`` (a
    draft ``LlmConfigInput`` from a form, validated with the create rules and never saved)
    is given: neither is REQUIRED on ``id``, both is INVALID_FORMAT on ``config``.
    ``timeoutMs`` bounds the whole test in milliseconds: 1 to 60,000, default 10,000.
    """

    # ``X | None`` keeps pydantic's nullable schema (errors located at the field, not at
    # a union member); null is refused by ``_no_null`` and dropped from the JSON Schema.
    id: ConfigId | None = Field(default=None, json_schema_extra=null_rejected)
    config: LlmConfigInput | None = Field(default=None, json_schema_extra=null_rejected)
    timeout_ms: StrictInt = Field(
        default=TEST_TIMEOUT_MS_DEFAULT,
        ge=1,
        le=TEST_TIMEOUT_MS_MAX,
        description="Bound of the whole test in milliseconds (1 to 60000; default 10000).",
    )

    @field_validator("id", "config", mode="wrap")
    @classmethod
    def _no_null(cls, value: Any, handler: Any) -> Any:
        if value is None:
            raise _fail("INVALID_FORMAT", "must not be null")
        return handler(value)

    @model_validator(mode="after")
    def _one_target(self) -> LlmConfigTestParams:
        # Raised as a located pydantic error so the field path is ``id``/``config`` like
        # every other rule (a plain ValueError here would be reported on ``params``).
        if self.id is None and self.config is None:
            raise _located("id", "REQUIRED", "is required unless config is given")
        if self.id is not None and self.config is not None:
            raise _located("config", "INVALID_FORMAT", "must not be given together with id")
        return self


def _located(field: str, code: str, message: str) -> PydanticValidationError:
    return PydanticValidationError.from_exception_data(
        "LlmConfigTestParams", [InitErrorDetails(type=_fail(code, message), loc=(field,), input=None)]
    )


TestFailureKind = Literal["auth", "network", "timeout", "tls", "http", "protocol"]
"""Why a provider test failed: the key was refused (``auth``), no connection (``network``),
no answer in time (``timeout``), the TLS handshake failed (``tls``), another HTTP status
or a redirect that is not followed (``http``), or an answer that is not a model list
(``protocol``)."""


class LlmConfigTestFailure(WireModel):
    """``error`` of a failed ``llm-config:test``: ``{kind, status?, message}``.

    ``status`` is the provider's HTTP status, present when it answered one (``auth``,
    ``http``). ``message`` is a fixed text per failure: never the provider's body, never
    the key.
    """

    kind: TestFailureKind
    status: int | SkipJsonSchema[None] = Field(
        default=None, exclude_if=lambda v: v is None, description="HTTP status, when the provider sent one."
    )
    message: str


class LlmConfigTestResult(WireModel):
    """Result of ``llm-config:test``: ``{ok, latencyMs, models, error}``.

    ``ok`` is true when the provider listed its models with the key. ``latencyMs`` runs
    from the start of the test to its outcome, in whole milliseconds (for a timeout: until
    it was given up).
    ``models`` holds the model ids of the provider's first page (Google's ``models/``
    prefix removed), or null when the test failed. ``error`` is null when ``ok``.
    """

    ok: bool
    latency_ms: int = Field(ge=0)
    models: list[str] | None
    error: LlmConfigTestFailure | None


# ---- pydantic errors → field errors ----------------------------------------------------

_TYPE_CODES = {
    "missing": "REQUIRED",
    "extra_forbidden": "UNKNOWN_FIELD",
    "literal_error": "INVALID_ENUM",
    "enum": "INVALID_ENUM",
    "string_too_short": "INVALID_LENGTH",
    "string_too_long": "INVALID_LENGTH",
}
_MESSAGES = {
    "REQUIRED": "is required",
    "UNKNOWN_FIELD": "is not a known field",
    "INVALID_ENUM": "is not one of the allowed values",
    "INVALID_LENGTH": "has an invalid length",
    "INVALID_FORMAT": "has the wrong type or format",
}
_RANGE_KINDS = frozenset({"greater_than_equal", "less_than_equal"})
FieldErrorCode = Literal[
    "REQUIRED",
    "INVALID_FORMAT",
    "INVALID_LENGTH",
    "INVALID_ENUM",
    "INVALID_URL",
    "API_KEY_FORMAT",
    "PROVIDER_SPECIFIC",
    "UNKNOWN_FIELD",
]
"""Every field code of DESIGN §5 (``error.data.errors[].code``)."""
_WIRE_CODES: frozenset[str] = frozenset(get_args(FieldErrorCode))


def field_errors(exc: PydanticValidationError, prefix: tuple[str, ...] = ()) -> list[FieldError]:
    """Translate a pydantic error into field errors with the codes of DESIGN §5.

    Args:
        exc: the pydantic error (validated by alias, so ``loc`` holds wire names).
        prefix: path prepended to every ``field`` (e.g. ``("updates",)``).

    Returns:
        One :class:`FieldError` per failure, in the order pydantic met them (model field
        order, unknown fields last). Messages are ours: no submitted value is echoed.
    """
    out: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        kind = err["type"]
        if kind in _WIRE_CODES:
            code, message = kind, err["msg"]
        else:
            code = _TYPE_CODES.get(kind, "INVALID_FORMAT")
            message = "is out of range" if kind in _RANGE_KINDS else _MESSAGES[code]
        # A default validated by validate_default is reported under its Python name.
        # An unknown key is reported as sent.
        loc = err["loc"]
        head = [to_camel(p) if isinstance(p, str) else str(p) for p in loc[:-1]]
        last = [
            str(p) if kind == "extra_forbidden" or not isinstance(p, str) else to_camel(p) for p in loc[-1:]
        ]
        path = (*prefix, *head, *last)
        out.append(FieldError(".".join(path) or "params", code, message))
    return out


def validation_error(exc: PydanticValidationError, prefix: tuple[str, ...] = ()) -> ValidationError:
    """Return the bridge :class:`ValidationError` (-32602) for a pydantic error."""
    return ValidationError(field_errors(exc, prefix))
