"""Schema generator: the OpenRPC document and the bundled JSON Schema, from a registry.

Everything is derived from the :class:`~bridge.api.Registry` and the pydantic models, so
channels an application registers itself are published too. ``schemaHash`` is
``"sha256:"`` + the hex digest of the OpenRPC document's canonical bytes (sorted keys,
2-space indent, LF, trailing newline) — the bytes of the committed
``schemas/openrpc.json`` (DESIGN §5).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from bridge import api
from bridge.errors import (
    BridgeError,
    InvalidRequestError,
    MethodNotFoundError,
    ParseError,
    ValidationError,
)

OPENRPC_VERSION: Final = "1.3.2"
SERVER_TO_CLIENT: Final = "x-server-to-client"
_REF = "#/components/schemas/{model}"
_PROTOCOL_ERRORS: tuple[type[BridgeError], ...] = (
    ParseError,
    InvalidRequestError,
    MethodNotFoundError,
    ValidationError,
    BridgeError,
)


class _NoFieldTitles(GenerateJsonSchema):
    """Drops per-field ``title``s so TypeScript generators emit no alias per field."""

    def field_title_should_be_set(self, schema: Any) -> bool:  # noqa: ARG002 - override
        return False


def _schemas(
    channels: Sequence[api.ChannelSpec[Any, Any]], topics: Sequence[api.TopicSpec]
) -> tuple[dict[Any, Any], dict[str, Any]]:
    inputs: list[tuple[Any, JsonSchemaMode, TypeAdapter[Any]]] = [
        item
        for spec in channels
        for item in (
            ((spec.name, "params"), "validation", TypeAdapter(spec.params)),
            ((spec.name, "result"), "serialization", spec.result_adapter),
        )
    ]
    inputs += [((t.name, "payload"), "serialization", TypeAdapter(t.payload)) for t in topics]
    key_map, defs = TypeAdapter.json_schemas(inputs, ref_template=_REF, schema_generator=_NoFieldTitles)
    return key_map, defs.get("$defs", {})


def _error_schema(cls: type[BridgeError]) -> dict[str, Any]:
    return {"code": cls.rpc_code, "message": cls.default_message, "data": {"code": cls.code}}


def _by_name_params(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn an object schema (usually a ``$ref``) into OpenRPC by-name params."""
    target = defs.get(schema.get("$ref", "").rsplit("/", 1)[-1], schema)
    required = set(target.get("required", []))
    return [
        {"name": name, "required": name in required, "schema": prop}
        for name, prop in target.get("properties", {}).items()
    ]


def openrpc_document(
    channels: Sequence[api.ChannelSpec[Any, Any]],
    topics: Sequence[api.TopicSpec],
    *,
    title: str = "bridge",
) -> dict[str, Any]:
    """Return the OpenRPC 1.3 document describing ``channels`` and ``topics``.

    Methods are sorted by name, channels first, then topics.

    Channel params are by-name (``paramStructure: by-name``); each channel's method
    lists the errors it may return. Topics appear as methods without a result, marked
    ``x-server-to-client: true`` (they are JSON-RPC notifications the server sends).
    """
    channels = sorted(channels, key=lambda spec: spec.name)
    topics = sorted(topics, key=lambda topic: topic.name)
    key_map, defs = _schemas(channels, topics)
    methods: list[dict[str, Any]] = []
    for spec in channels:
        params = _by_name_params(key_map[((spec.name, "params"), "validation")], defs)
        errors = [_error_schema(cls) for cls in dict.fromkeys((*spec.errors, *_PROTOCOL_ERRORS))]
        methods.append(
            {
                "name": spec.name,
                "summary": spec.summary,
                "paramStructure": "by-name",
                "params": params,
                "result": {
                    "name": "result",
                    "schema": key_map[((spec.name, "result"), "serialization")],
                },
                "errors": errors,
            }
        )
    methods.extend(
        {
            "name": topic.name,
            "summary": topic.summary,
            "paramStructure": "by-name",
            "params": _by_name_params(key_map[((topic.name, "payload"), "serialization")], defs),
            SERVER_TO_CLIENT: True,
        }
        for topic in topics
    )
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": str(api.PROTOCOL_VERSION)},
        "methods": methods,
        "components": {"schemas": defs},
    }


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """Return the canonical file bytes: sorted keys, 2-space indent, LF, final newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def schema_hash(document: dict[str, Any]) -> str:
    """Return ``"sha256:<hex>"`` of :func:`canonical_bytes` of ``document``."""
    return "sha256:" + hashlib.sha256(canonical_bytes(document)).hexdigest()


OPENRPC_FILE: Final = "openrpc.json"


def builtin_document() -> dict[str, Any]:
    """Return the OpenRPC document of a stock ``bridge serve`` (the committed file)."""
    return openrpc_document(api.BUILTIN_CHANNELS, api.BUILTIN_TOPICS)


def generated_files() -> dict[str, bytes]:
    """Return every file ``bridge schemas`` writes: name → canonical bytes."""
    return {OPENRPC_FILE: canonical_bytes(builtin_document())}


def write_schemas(out: Path, *, check: bool = False) -> int:
    """Write the generated files into ``out``, or with ``check`` compare them.

    Returns:
        Exit code: 0 when written or up to date; 1 when ``check`` finds a stale or
        missing file (each named on stderr).
    """
    stale = []
    for name, content in generated_files().items():
        path = out / name
        if check:
            if not path.exists() or path.read_bytes() != content:
                stale.append(name)
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for name in stale:
        sys.stderr.write(f"stale: {out / name} differs from the code; run 'bridge schemas'\n")
    return 1 if stale else 0
