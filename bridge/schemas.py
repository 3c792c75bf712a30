"""Schema generator: the OpenRPC document and the bundled JSON Schema, from a registry.

Everything is derived from a :class:`~bridge.api.Registry`'s channel and topic specs and
their pydantic models (pydantic's own JSON Schema generation), so channels an
application registers itself are published the same way as ``llm-config:*``.

Files written by ``bridge schemas`` (DESIGN §5):

- ``openrpc.json``: OpenRPC 1.3 document — the exact document ``rpc.discover`` returns.
  ``schemaHash`` is ``"sha256:"`` + the hex digest of its canonical bytes (sorted keys,
  2-space indent, LF, trailing newline).
- ``bridge.schema.json``: one JSON Schema (draft 2020-12) whose ``$defs`` hold every
  params, result, notification payload and error ``data`` shape, and whose root maps each
  channel to ``{params, result}`` and each topic to its payload. ``schemas/bridge.d.ts``
  is generated from it by ``schemas/generate-types.mjs`` (npm json-schema-to-typescript).

Conventions of the generated schemas:

- params in pydantic *validation* mode (what the server accepts); results, payloads and
  error data in *serialization* mode with every field required unless it is excluded
  (``exclude_if``) — i.e. ``required`` lists what the server always sends;
- no per-field ``title`` (TypeScript generators would export an alias per field);
- a ``$ref`` never has sibling keywords (draft-07 ignores them, 2020-12 applies them):
  ``{"$ref": X, "description": D}`` becomes ``{"allOf": [{"$ref": X}], "description": D}``;
- a ``default: null`` is dropped where the schema does not accept null;
- definition titles are the definition names with non-identifier characters removed
  (``Foo-Input`` → ``FooInput``), so no generated type name gets a numeric suffix.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import Field, RootModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, SkipJsonSchema
from pydantic_core import core_schema

from bridge import api
from bridge.errors import (
    BridgeError,
    InvalidRequestError,
    MethodNotFoundError,
    ParseError,
    RateLimitedError,
    ResponseTooLargeError,
    ServiceUnavailableError,
    ValidationError,
)
from bridge.models import FieldErrorCode, WireModel

OPENRPC_VERSION: Final = "1.3.2"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
SERVER_TO_CLIENT: Final = "x-server-to-client"
"""OpenRPC extension on a method that is a notification the server sends to clients."""
LONG_RUNNING: Final = "x-long-running"
"""OpenRPC extension on a channel declared long-running: it runs beside later requests, its
response may leave out of order, and ``$/cancelRequest`` cancels it (-32800)."""
PROGRESS: Final = "x-progress"
"""OpenRPC extension on a channel that sends ``$/progress`` for a ``workDoneToken``."""
MAX_RUNNING: Final = "x-max-running"
"""OpenRPC extension: most requests to the channel running at once per connection (4029 past it)."""
PROTOCOL_NOTIFICATIONS: Final = "x-protocol-notifications"
"""OpenRPC root extension listing the LSP notifications ``$/cancelRequest`` and ``$/progress``."""
OPENRPC_FILE: Final = "openrpc.json"
BUNDLE_FILE: Final = "bridge.schema.json"

_COMPONENTS_REF: Final = "#/components/schemas/{model}"
_DEFS_REF: Final = "#/$defs/{model}"
_ERRORS_REF: Final = "#/components/errors/{name}"

_UNIVERSAL_ERRORS: tuple[type[BridgeError], ...] = (
    ValidationError,
    RateLimitedError,
    ServiceUnavailableError,
    BridgeError,
)
"""Errors any channel may return: bad params, the optional rate limit, shutdown, internal."""
_ENVELOPE_ERRORS: tuple[type[BridgeError], ...] = (
    ParseError,
    InvalidRequestError,
    MethodNotFoundError,
    ResponseTooLargeError,
)
"""Errors about the frame (its parse, its reply's size) or the method name, not a channel:
listed in ``components.errors``."""


# ---- error data shapes (DESIGN §5) ------------------------------------------------------


class FieldErrorData(WireModel):
    """One entry of ``error.data.errors``: a failed rule on one field.

    ``field`` is the dotted path from the params root in wire names (``config.baseUrl``).
    """

    field: str = Field(description="Dotted path from the params root, e.g. config.customName.")
    code: FieldErrorCode
    message: str = Field(description="Human-readable; never repeats the submitted value.")


class ErrorData(WireModel):
    """The JSON-RPC ``error.data`` of every bridge error: ``{code, name, context?, errors?}``."""

    code: str = Field(description="String code, e.g. VALIDATION_ERROR, CONFIG_NOT_FOUND.")
    name: str = Field(description="Error class name, e.g. ValidationError.")
    context: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Non-secret details (e.g. id, expectedVersion, actualVersion).",
    )
    errors: list[FieldErrorData] | SkipJsonSchema[None] = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Every failed field rule, in model field order (VALIDATION_ERROR only).",
    )


# ---- JSON Schema generation -------------------------------------------------------------


class BridgeJsonSchema(GenerateJsonSchema):
    """pydantic's generator with bridge's conventions (see the module docstring)."""

    def field_title_should_be_set(self, schema: Any) -> bool:  # noqa: ARG002 - override
        """Never: a field title would become an exported TypeScript alias per field."""
        return False

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        """In serialization mode, a field is required unless it may be excluded.

        This is ``json_schema_serialization_defaults_required=True`` for every model,
        including an application's own: the server always sends fields with defaults.
        """
        if self.mode == "serialization":
            return not field.get("serialization_exclude") and field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        """Drop ``default: null`` where the schema does not accept null (it would mislead)."""
        json_schema = super().default_schema(schema)
        if "default" in json_schema and json_schema["default"] is None and not _accepts_null(json_schema):
            del json_schema["default"]
        return json_schema


def _accepts_null(schema: JsonSchemaValue) -> bool:
    if schema.get("type") == "null":
        return True
    return any(_accepts_null(branch) for branch in schema.get("anyOf", []))


_LITERAL_KEYWORDS: Final = frozenset({"default", "examples", "const", "enum"})
_SCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "$defs", "definitions"})


def _normalize(node: Any) -> Any:
    """Return ``node`` with every ``$ref`` that has siblings wrapped in ``allOf``."""
    if isinstance(node, list):
        return [_normalize(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _normalize(sub) for name, sub in value.items()}
        elif key in _LITERAL_KEYWORDS:
            out[key] = value
        else:
            out[key] = _normalize(value)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}, *out.get("allOf", [])]
    return out


_Key = tuple[str, str]


def _generate(
    channels: Sequence[api.ChannelSpec[Any, Any]],
    topics: Sequence[api.TopicSpec],
    ref_template: str,
) -> tuple[dict[tuple[_Key, JsonSchemaMode], JsonSchemaValue], dict[str, Any]]:
    """Generate every schema in one pass so definitions are shared and named once.

    Returns:
        ``(key_map, defs)``: the schema of each ``((name, role), mode)`` (usually a
        ``$ref``) and the definitions by name, titled after their name.
    """
    inputs: list[tuple[_Key, JsonSchemaMode, TypeAdapter[Any]]] = []
    for spec in channels:
        inputs.append(((spec.name, "params"), "validation", TypeAdapter(spec.params)))
        inputs.append(((spec.name, "result"), "serialization", spec.result_adapter))
    inputs += [((t.name, "payload"), "serialization", TypeAdapter(t.payload)) for t in topics]
    inputs.append((("error", "data"), "serialization", TypeAdapter(ErrorData)))
    key_map, top = TypeAdapter.json_schemas(
        inputs, ref_template=ref_template, schema_generator=BridgeJsonSchema
    )
    defs: dict[str, Any] = _normalize(top.get("$defs", {}))
    for name, schema in defs.items():
        if "title" in schema:
            schema["title"] = re.sub(r"[^A-Za-z0-9_]", "", name)
    return {key: _normalize(value) for key, value in key_map.items()}, dict(sorted(defs.items()))


# ---- OpenRPC -----------------------------------------------------------------------------


def _error_object(cls: type[BridgeError]) -> dict[str, Any]:
    return {
        "code": cls.rpc_code,
        "message": cls.default_message,
        "data": {"code": cls.code, "name": cls.__name__},
    }


def _by_name_params(schema: JsonSchemaValue, defs: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn an object schema (usually a ``$ref``) into OpenRPC by-name content descriptors."""
    target = defs.get(schema.get("$ref", "").rsplit("/", 1)[-1], schema)
    required = set(target.get("required", []))
    return [
        {"name": name, "required": name in required, "schema": prop}
        for name, prop in target.get("properties", {}).items()
    ]


def _by_position_params(schema: JsonSchemaValue, defs: dict[str, Any]) -> list[dict[str, Any]]:
    """Describe an array-of-names params model as its first position (OpenRPC has no rest params)."""
    target = defs.get(schema.get("$ref", "").rsplit("/", 1)[-1], schema)
    return [{"name": "event", "required": True, "schema": target.get("items", {})}]


def _example_pairing(example: api.Example, *, with_result: bool) -> dict[str, Any]:
    pairing: dict[str, Any] = {
        "name": example.name,
        "params": [{"name": key, "value": value} for key, value in example.params.items()],
    }
    if example.summary:
        pairing["description"] = example.summary
    if with_result:
        pairing["result"] = {"name": "result", "value": example.result}
    return pairing


_PROGRESS_TOKEN_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [
        {"type": "string", "maxLength": 256},
        {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1},
    ],
    "description": "The workDoneToken of the request.",
}
_PROGRESS_VALUE_SCHEMA: Final[dict[str, Any]] = {
    "title": "WorkDoneProgressValue",
    "description": "LSP work-done progress: begin first, end last, reports in between.",
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["begin", "report", "end"]},
        "message": {"type": "string"},
        "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["kind"],
    "additionalProperties": False,
}
_REQUEST_ID_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [{"type": "string"}, {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1}],
    "description": "The id of the request to cancel (same connection).",
}


def _protocol_notifications() -> list[dict[str, Any]]:
    """``$/cancelRequest`` and ``$/progress`` (LSP), as OpenRPC-style method objects."""
    return [
        {
            "name": api.CANCEL_REQUEST,
            "summary": "Client → server: cancel a long-running request of this connection (answered -32800); "
            "an unknown or finished id, or a request that is not long-running, is ignored.",
            "x-direction": "client-to-server",
            "paramStructure": "by-name",
            "params": [{"name": "id", "required": True, "schema": _REQUEST_ID_SCHEMA}],
        },
        {
            "name": api.PROGRESS,
            "summary": "Server → client: progress of a request whose params carry workDoneToken, "
            "sent on that request's connection only, before its response.",
            "x-direction": "server-to-client",
            "paramStructure": "by-name",
            "params": [
                {"name": "token", "required": True, "schema": _PROGRESS_TOKEN_SCHEMA},
                {"name": "value", "required": True, "schema": _PROGRESS_VALUE_SCHEMA},
            ],
        },
    ]


def _traits(spec: api.ChannelSpec[Any, Any]) -> dict[str, Any]:
    traits: dict[str, Any] = {}
    if spec.long_running:
        traits[LONG_RUNNING] = True
    if spec.progress:
        traits[PROGRESS] = True
    if spec.max_running is not None:
        traits[MAX_RUNNING] = spec.max_running
    return traits


def _traits_text(spec: api.ChannelSpec[Any, Any]) -> str:
    parts = []
    if spec.long_running:
        parts.append(" Long-running: cancellable with $/cancelRequest (-32800), may answer out of order.")
    if spec.max_running is not None:
        parts.append(f" At most {spec.max_running} at once per connection (4029 past it).")
    if spec.progress:
        parts.append(" Sends $/progress for a workDoneToken.")
    return "".join(parts)


def openrpc_document(
    channels: Sequence[api.ChannelSpec[Any, Any]],
    topics: Sequence[api.TopicSpec],
    *,
    title: str = "bridge",
) -> dict[str, Any]:
    """Return the OpenRPC 1.3 document describing ``channels`` and ``topics``.

    Args:
        channels: channel specs (a registry's ``channels``); order does not matter.
        topics: notification topics (a registry's ``topics``).
        title: ``info.title``; ``info.version`` is :data:`bridge.api.PROTOCOL_VERSION`.

    Returns:
        A JSON-ready dict. Methods are sorted by name, channels first, then topics.
        Channel params are by-name; each method lists the errors it may return as
        references into ``components.errors`` (which also holds the envelope errors
        -32700/-32600/-32601) and carries its spec's examples. Topics appear as methods
        without a result, marked ``x-server-to-client: true``. ``components.schemas``
        holds every definition (including ``ErrorData``), referenced as
        ``#/components/schemas/<Name>``, using only keywords common to JSON Schema
        draft-07 and 2020-12.
    """
    channels = sorted(channels, key=lambda spec: spec.name)
    topics = sorted(topics, key=lambda topic: topic.name)
    key_map, defs = _generate(channels, topics, _COMPONENTS_REF)
    error_classes: dict[str, type[BridgeError]] = {}
    methods: list[dict[str, Any]] = []
    for spec in channels:
        errors = sorted(dict.fromkeys((*spec.errors, *_UNIVERSAL_ERRORS)), key=lambda cls: cls.rpc_code)
        error_classes.update((cls.__name__, cls) for cls in errors)
        params_schema = key_map[((spec.name, "params"), "validation")]
        by_position = issubclass(spec.params, RootModel)  # rpc.on/rpc.off: ["event", ...]
        method: dict[str, Any] = {
            "name": spec.name,
            "summary": spec.summary,
            "paramStructure": "by-position" if by_position else "by-name",
            "params": _by_position_params(params_schema, defs)
            if by_position
            else _by_name_params(params_schema, defs),
            "result": {"name": "result", "schema": key_map[((spec.name, "result"), "serialization")]},
            "errors": [{"$ref": _ERRORS_REF.format(name=cls.__name__)} for cls in errors],
            **_traits(spec),
        }
        if spec.examples:
            method["examples"] = [_example_pairing(ex, with_result=True) for ex in spec.examples]
        methods.append(method)
    for topic in topics:
        method = {
            "name": topic.name,
            "summary": topic.summary,
            "paramStructure": "by-name",
            "params": _by_name_params(key_map[((topic.name, "payload"), "serialization")], defs),
            SERVER_TO_CLIENT: True,
        }
        if topic.examples:
            method["examples"] = [_example_pairing(ex, with_result=False) for ex in topic.examples]
        methods.append(method)
    error_classes.update((cls.__name__, cls) for cls in _ENVELOPE_ERRORS)
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": str(api.PROTOCOL_VERSION)},
        "methods": methods,
        PROTOCOL_NOTIFICATIONS: _protocol_notifications(),
        "components": {
            "schemas": defs,
            "errors": {name: _error_object(cls) for name, cls in sorted(error_classes.items())},
        },
    }


# ---- the bundled JSON Schema -------------------------------------------------------------


def bundled_schema(
    channels: Sequence[api.ChannelSpec[Any, Any]],
    topics: Sequence[api.TopicSpec],
    *,
    title: str = "BridgeSchema",
) -> dict[str, Any]:
    """Return one JSON Schema (draft 2020-12) holding every wire shape of ``channels``.

    Args:
        channels: channel specs (a registry's ``channels``).
        topics: notification topics.
        title: title of the root (a TypeScript interface name).

    Returns:
        ``{$schema, title, type: object, properties: {channels, notifications,
        errorData}, $defs}``: ``channels`` (titled ``ChannelMap``) maps each channel name
        to ``{params, result}``; ``notifications`` (``NotificationMap``) maps each topic
        to its payload; ``errorData`` is ``ErrorData``. Refs are ``#/$defs/<Name>``; the
        definitions are the same as ``components.schemas`` of :func:`openrpc_document`.
    """
    channels = sorted(channels, key=lambda spec: spec.name)
    topics = sorted(topics, key=lambda topic: topic.name)
    key_map, defs = _generate(channels, topics, _DEFS_REF)
    channel_map = {
        spec.name: {
            "description": spec.summary + _traits_text(spec),
            "type": "object",
            "properties": {
                "params": key_map[((spec.name, "params"), "validation")],
                "result": key_map[((spec.name, "result"), "serialization")],
            },
            "required": ["params", "result"],
            "additionalProperties": False,
        }
        for spec in channels
    }
    topic_map = {
        topic.name: _normalize(
            {**key_map[((topic.name, "payload"), "serialization")], "description": topic.summary}
        )
        for topic in topics
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": title,
        "description": "Every wire shape of a bridge server: channels, notifications, error data.",
        "type": "object",
        "properties": {
            "channels": _closed_object("ChannelMap", "Channel name → {params, result}.", channel_map),
            "notifications": _closed_object(
                "NotificationMap", "Topic name → notification params.", topic_map
            ),
            "errorData": key_map[(("error", "data"), "serialization")],
            "protocolNotifications": _closed_object(
                "ProtocolNotificationMap",
                "LSP notifications (either direction) → params.",
                {
                    api.CANCEL_REQUEST: {
                        "title": "CancelParams",
                        "type": "object",
                        "properties": {"id": _REQUEST_ID_SCHEMA},
                        "required": ["id"],
                        "additionalProperties": False,
                    },
                    api.PROGRESS: {
                        "title": "ProgressParams",
                        "type": "object",
                        "properties": {"token": _PROGRESS_TOKEN_SCHEMA, "value": _PROGRESS_VALUE_SCHEMA},
                        "required": ["token", "value"],
                        "additionalProperties": False,
                    },
                },
            ),
        },
        "required": ["channels", "notifications", "errorData", "protocolNotifications"],
        "additionalProperties": False,
        "$defs": defs,
    }


def _closed_object(title: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# ---- files -------------------------------------------------------------------------------


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """Return the canonical file bytes: sorted keys, 2-space indent, LF, final newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def schema_hash(document: dict[str, Any]) -> str:
    """Return ``"sha256:<hex>"`` of :func:`canonical_bytes` of ``document``."""
    return "sha256:" + hashlib.sha256(canonical_bytes(document)).hexdigest()


def builtin_document() -> dict[str, Any]:
    """Return the OpenRPC document of a stock ``bridge serve`` (the committed file)."""
    return openrpc_document(api.BUILTIN_CHANNELS, api.BUILTIN_TOPICS)


def generated_files(
    channels: Sequence[api.ChannelSpec[Any, Any]] = api.BUILTIN_CHANNELS,
    topics: Sequence[api.TopicSpec] = api.BUILTIN_TOPICS,
) -> dict[str, bytes]:
    """Return every file ``bridge schemas`` writes: file name → canonical bytes.

    The defaults are a stock server's channels and topics; an application passes its
    registry's ``channels`` and ``topics`` to publish its own.
    """
    return {
        OPENRPC_FILE: canonical_bytes(openrpc_document(channels, topics)),
        BUNDLE_FILE: canonical_bytes(bundled_schema(channels, topics)),
    }


def write_schemas(
    out: Path,
    *,
    check: bool = False,
    channels: Sequence[api.ChannelSpec[Any, Any]] = api.BUILTIN_CHANNELS,
    topics: Sequence[api.TopicSpec] = api.BUILTIN_TOPICS,
) -> int:
    """Write the generated files into ``out``, or with ``check`` compare them.

    Args:
        out: directory (created if missing when writing).
        check: compare instead of writing.
        channels: the channels to publish (default: a stock server's).
        topics: the topics to publish (default: a stock server's).

    Returns:
        Exit code: 0 when written or up to date; 1 when ``check`` finds a stale or
        missing file (each named on stderr).
    """
    stale = []
    for name, content in generated_files(channels, topics).items():
        path = out / name
        if check:
            if not path.exists() or path.read_bytes() != content:
                stale.append(name)
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for name in stale:
        sys.stderr.write(f"stale: {out / name} differs from the code; run 'make schemas'\n")
    return 1 if stale else 0
