"""The generated schemas: fresh, valid against their meta-schemas, and TypeScript-friendly."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import BaseModel, Field
from referencing import Registry
from referencing.jsonschema import DRAFT7

from bridge import api, schemas
from bridge.cli import main
from bridge.models import LlmConfigView, Provider, WireModel

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
NODE_MODULES = ROOT / "node_modules"

# Keywords whose meaning is the same in JSON Schema draft-07 and 2020-12 (DESIGN §5).
COMMON_KEYWORDS = {
    "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "anyOf", "allOf", "oneOf", "not", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "format",
    "title", "description", "default", "examples",
}  # fmt: skip


def committed(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return result


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object under ``node`` (descending into subschemas, not into values)."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item)
    elif isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key in {"properties", "$defs"}:
                for sub in value.values():
                    yield from walk(sub)
            elif key not in {"default", "examples", "const", "enum"}:
                yield from walk(value)


# ---- freshness ---------------------------------------------------------------------------


def test_committed_schemas_match_the_code() -> None:
    files = schemas.generated_files()
    assert set(files) == {"openrpc.json", "bridge.schema.json"}
    for name, content in files.items():
        assert (SCHEMAS / name).read_bytes() == content, f"schemas/{name} is stale: run make schemas"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert schemas.write_schemas(tmp_path) == 0
    assert schemas.write_schemas(tmp_path, check=True) == 0
    (tmp_path / schemas.OPENRPC_FILE).write_text("{}\n")
    assert schemas.write_schemas(tmp_path, check=True) == 1


def test_cli_check_fails_after_a_model_changes_without_regenerating(tmp_path: Path) -> None:
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    assert main(["schemas", "--out", str(tmp_path), "--check"]) == 0

    class ChangedView(LlmConfigView):
        """The view with one more field: what a model change without `make schemas` looks like."""

        owner: str

    changed = [
        api.ChannelSpec(spec.name, spec.params, ChangedView, spec.summary)
        if spec is api.LLM_CONFIG_CREATE
        else spec
        for spec in api.BUILTIN_CHANNELS
    ]
    assert schemas.write_schemas(tmp_path, check=True, channels=changed) == 1


def test_cli_check_fails_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    (tmp_path / schemas.BUNDLE_FILE).unlink()
    assert main(["schemas", "--out", str(tmp_path), "--check"]) == 1
    assert "bridge.schema.json" in capsys.readouterr().err


def test_typescript_types_are_fresh() -> None:
    proc = subprocess.run(
        ["node", "schemas/generate-types.mjs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


# ---- validity --------------------------------------------------------------------------


def test_bundled_schema_is_valid_draft_2020_12() -> None:
    bundle = committed("bridge.schema.json")
    assert bundle["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(bundle)


def openrpc_meta_validator() -> Draft7Validator:
    """The official OpenRPC meta-schema (npm @open-rpc/meta-schema) with the schema it refers to."""
    assert NODE_MODULES.is_dir(), "node_modules missing: run `npm ci` (make check does)"
    script = 'process.stdout.write(JSON.stringify(require("@open-rpc/meta-schema").openrpcDocument))'
    meta = json.loads(
        subprocess.run(["node", "-e", script], cwd=ROOT, capture_output=True, check=True).stdout
    )
    tools = json.loads((NODE_MODULES / "@json-schema-tools/meta-schema/schema.json").read_text())
    registry: Registry[Any] = Registry().with_resources(
        (uri, DRAFT7.create_resource(tools))
        for uri in ("https://meta.json-schema.tools", "https://meta.json-schema.tools/")
    )
    return Draft7Validator(meta, registry=registry)


def test_openrpc_document_is_valid_against_the_official_meta_schema() -> None:
    validator = openrpc_meta_validator()
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(committed("openrpc.json"))
    ]
    assert errors == []


def test_openrpc_meta_schema_rejects_a_broken_document() -> None:
    broken = committed("openrpc.json")
    broken["methods"][0]["paramStructure"] = "by-magic"
    assert not openrpc_meta_validator().is_valid(broken)


def test_openrpc_component_schemas_use_only_keywords_common_to_draft_07_and_2020_12() -> None:
    components = committed("openrpc.json")["components"]["schemas"]
    for name, schema in components.items():
        Draft7Validator.check_schema(schema)
        Draft202012Validator.check_schema(schema)
        for node in walk(schema):
            assert set(node) <= COMMON_KEYWORDS, (name, set(node) - COMMON_KEYWORDS)
            if "$ref" in node:
                assert set(node) == {"$ref"}, (name, node)  # siblings differ between drafts
                target = node["$ref"].removeprefix("#/components/schemas/")
                assert target in components, node["$ref"]


def test_openrpc_methods_cover_every_channel_and_topic() -> None:
    document = committed("openrpc.json")
    methods = {m["name"]: m for m in document["methods"]}
    assert set(methods) == {c.name for c in api.BUILTIN_CHANNELS} | {t.name for t in api.BUILTIN_TOPICS}
    assert document["info"]["version"] == str(api.PROTOCOL_VERSION)
    for spec in api.BUILTIN_CHANNELS:
        method = methods[spec.name]
        # rpc.on/rpc.off take ["event"] (rpc-websockets compatibility, DESIGN §5).
        by_position = spec.name in {api.RPC_ON.name, api.RPC_OFF.name}
        assert method["paramStructure"] == ("by-position" if by_position else "by-name")
        assert "result" in method
        assert "x-server-to-client" not in method
        codes = {
            document["components"]["errors"][e["$ref"].rsplit("/", 1)[-1]]["code"] for e in method["errors"]
        }
        assert {cls.rpc_code for cls in spec.errors} | {-32602, -32603, 5003} <= codes
    changed = methods["llm-config:changed"]
    assert changed["x-server-to-client"] is True
    assert "result" not in changed
    assert [p["name"] for p in changed["params"]] == ["type", "id", "revision", "config"]
    assert {p["name"] for p in changed["params"] if p["required"]} == {"id", "revision", "type"}


def test_every_llm_config_channel_has_an_example() -> None:
    methods = {m["name"]: m for m in committed("openrpc.json")["methods"]}
    for spec in api.LLM_CONFIG_CHANNELS:
        assert methods[spec.name].get("examples"), spec.name
        for pairing in methods[spec.name]["examples"]:
            assert "result" in pairing


# ---- the shapes ------------------------------------------------------------------------


def test_result_schemas_require_every_field_the_server_always_sends() -> None:
    defs = committed("bridge.schema.json")["$defs"]
    view = defs["LlmConfigView"]
    assert view["required"] == [
        "id", "customName", "provider", "apiKeyPreview", "baseUrl", "useAuthHeader",
        "createdAt", "updatedAt", "version",
    ]  # fmt: skip
    assert view["additionalProperties"] is False
    assert defs["InitializeResult"]["required"] == ["initialized", "count"]
    assert "recoveredFrom" not in defs["HelloResult"]["required"]
    assert defs["HelloResult"]["properties"]["recoveredFrom"] == {"type": "string"}
    assert "config" not in defs["LlmConfigChanged"]["required"]
    for name in (
        "LlmConfigView",
        "DeleteResult",
        "Snapshot",
        "InitializeResult",
        "RefreshResult",
        "HelloResult",
    ):
        assert defs[name]["additionalProperties"] is False, name


def test_patch_schema_allows_null_only_for_base_url() -> None:
    patch = committed("bridge.schema.json")["$defs"]["LlmConfigPatch"]
    assert patch.get("required", []) == []
    nullable = {
        name
        for name, prop in patch["properties"].items()
        if any(branch.get("type") == "null" for branch in prop.get("anyOf", []))
    }
    assert nullable == {"baseUrl"}
    assert all("default" not in prop for name, prop in patch["properties"].items() if name != "baseUrl")


def test_error_data_schema_matches_the_error_classes() -> None:
    defs = committed("bridge.schema.json")["$defs"]
    assert defs["ErrorData"]["required"] == ["code", "name"]
    assert set(defs["ErrorData"]["properties"]) == {"code", "name", "context", "errors"}
    from bridge.models import _WIRE_CODES  # noqa: PLC0415 - the field codes the server emits

    assert set(defs["FieldErrorData"]["properties"]["code"]["enum"]) == set(_WIRE_CODES)


def test_no_field_titles_and_camel_case_properties() -> None:
    for schema in committed("bridge.schema.json")["$defs"].values():
        for name, prop in schema.get("properties", {}).items():
            assert "title" not in prop, name
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*", name), name


def test_no_exported_typescript_name_ends_in_a_digit() -> None:
    names = re.findall(
        r"^export (?:interface|type) (\w+)", (SCHEMAS / "bridge.d.ts").read_text(), re.MULTILINE
    )
    assert {"Channel", "Params", "Result", "LlmConfigView", "LlmConfigChanged", "ErrorData"} <= set(names)
    assert [n for n in names if n[-1].isdigit()] == []
    assert len(names) == len(set(names))


# ---- an application's own channels -----------------------------------------------------


class Tag(WireModel):
    """A label; its schema differs between params (default optional) and results."""

    label: str
    color: str = "blue"


class TagParams(WireModel):
    """Params of the app channel."""

    tag: Tag
    provider: Provider = Field(description="A described $ref.")


class TagResult(BaseModel):
    """Result of the app channel."""

    tag: Tag


APP_CHANNEL: api.ChannelSpec[TagParams, TagResult] = api.ChannelSpec(
    "app:tag", TagParams, TagResult, "Tag something."
)


def test_app_channels_get_readable_names_and_no_ref_siblings() -> None:
    bundle = schemas.bundled_schema([*api.BUILTIN_CHANNELS, APP_CHANNEL], api.BUILTIN_TOPICS)
    Draft202012Validator.check_schema(bundle)
    titles = [d["title"] for d in bundle["$defs"].values() if "title" in d]
    assert {"TagInput", "TagOutput"} <= set(titles)
    assert not [t for t in titles if t[-1].isdigit()]
    assert len(titles) == len(set(titles))
    assert bundle["$defs"]["TagParams"]["properties"]["provider"] == {
        "allOf": [{"$ref": "#/$defs/Provider"}],
        "description": "A described $ref.",
    }
    assert bundle["$defs"]["Tag-Output"]["required"] == ["label", "color"]
    assert bundle["$defs"]["Tag-Input"]["required"] == ["label"]
    document = schemas.openrpc_document([*api.BUILTIN_CHANNELS, APP_CHANNEL], api.BUILTIN_TOPICS)
    assert "app:tag" in {m["name"] for m in document["methods"]}
    for node in walk(document["components"]["schemas"]):
        assert "$ref" not in node or set(node) == {"$ref"}


def test_openrpc_marks_long_running_and_progress_and_lists_the_lsp_notifications() -> None:
    document = committed("openrpc.json")
    methods = {m["name"]: m for m in document["methods"]}
    test = methods["llm-config:test"]
    assert test["x-long-running"] is True
    assert test["x-progress"] is True
    assert test["x-max-running"] == api.MAX_RUNNING_TESTS_PER_CONNECTION
    for name in ("llm-config:read", "llm-config:create", "bridge:hello"):
        assert not {"x-long-running", "x-progress", "x-max-running"} & set(methods[name]), name
    notes = {n["name"]: n for n in document["x-protocol-notifications"]}
    assert notes["$/cancelRequest"]["x-direction"] == "client-to-server"
    assert [p["name"] for p in notes["$/cancelRequest"]["params"]] == ["id"]
    assert notes["$/progress"]["x-direction"] == "server-to-client"
    value = next(p for p in notes["$/progress"]["params"] if p["name"] == "value")["schema"]
    assert value["properties"]["kind"]["enum"] == ["begin", "report", "end"]
    bundle = committed("bridge.schema.json")
    assert set(bundle["properties"]["protocolNotifications"]["properties"]) == {
        "$/cancelRequest",
        "$/progress",
    }
