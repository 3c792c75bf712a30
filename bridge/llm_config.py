"""LLM configs, the first collection: their definition (wire models, errors, wording, examples).

:data:`LLM_CONFIG` declares llm-config as a :class:`~bridge.collection.Collection` whose
wire models are the ones llm-config had before collections (:mod:`bridge.models`:
``{config}`` to create, ``{revision, configs}`` as a snapshot, ``config`` in an event,
4004 ``CONFIG_NOT_FOUND`` and 4009 ``DUPLICATE_CONFIG_NAME``), so the wire contract is
unchanged. Its six CRUD channels and its ``llm-config:changed`` topic are derived from the
definition as any collection's; the three channels of its own (``llm-config:initialize``,
``llm-config:refresh-cache``, ``llm-config:test``) are declared here beside them.
:mod:`bridge.api` re-exports every spec as ``LLM_CONFIG_*``.

Nothing here runs: the service (:mod:`bridge.service.llm_config`) and the channel binding
(:mod:`bridge.service.channels`) serve what this module describes.
"""

from __future__ import annotations

from typing import Any, Final

from bridge.collection.definition import Collection
from bridge.collection.rules import CollectionTypes, Wire
from bridge.errors import (
    BridgeError,
    ConfigNotFoundError,
    ConfigOperationFailedError,
    DuplicateConfigNameError,
    OutboundDisabledError,
    RateLimitedError,
    ServiceUnavailableError,
    ValidationError,
)
from bridge.models import (
    CreateParams,
    DeleteParams,
    DeleteResult,
    EmptyParams,
    IdParams,
    InitializeResult,
    LlmConfigChanged,
    LlmConfigInput,
    LlmConfigPatch,
    LlmConfigTestParams,
    LlmConfigTestResult,
    LlmConfigView,
    RefreshResult,
    Snapshot,
    UpdateParams,
)
from bridge.spec import ChannelSpec, Example, TopicSpec

NAME: Final = "llm-config"
"""The collection's name: its channels' namespace (a name reserved for bridge)."""

_WRITE_ERRORS: tuple[type[BridgeError], ...] = (ConfigOperationFailedError, ServiceUnavailableError)

# Documentation examples (OpenRPC "examples"); tests check each one against the server's
# params models and the published result schemas. The API key is a fake of a valid shape.
_EX_ID = "0b7e2f44-5c1a-4d3e-9f6b-2a8c7d1e4f90"
_EX_KEY = "sk-example-" + "0" * 32
_EX_VIEW: dict[str, Any] = {
    "id": _EX_ID,
    "customName": "My OpenAI",
    "provider": "openai",
    "apiKeyPreview": "sk-...000",
    "baseUrl": None,
    "useAuthHeader": True,
    "createdAt": "2025-01-15T09:30:00.000Z",
    "updatedAt": "2025-01-15T09:30:00.000Z",
    "version": 1,
}
_EX_UPDATED: dict[str, Any] = {
    **_EX_VIEW,
    "customName": "Work OpenAI",
    "baseUrl": "https://api.openai.com/v1",
    "updatedAt": "2025-01-15T10:00:00.000Z",
    "version": 2,
}

WIRE: Final = Wire(
    item_key="config",
    items_key="configs",
    not_found=ConfigNotFoundError,
    duplicate=DuplicateConfigNameError,
    unopened_secret="is required: the stored key cannot be opened",  # noqa: S106 - a message, not a secret
    summaries={
        "create": "Create an LLM provider config; returns its view (no API key).",
        "read": "Read one config by id from the cache; null when unknown.",
        "update": "Patch a config; omitted fields keep their value, baseUrl null clears it. A patch that "
        "changes baseUrl (clearing it included) or provider must carry apiKey (else updates.apiKey "
        "REQUIRED): a stored key never follows a new destination on its own.",
        "delete": "Delete a config; {deleted: false} when the id is unknown.",
        "list": "Every config in creation order.",
        "snapshot": "Every config and the revision they reflect (for resync after reconnect).",
        "changed": "A config was created, updated or deleted (by any renderer or process).",
    },
    examples={
        "create": (
            Example(
                "create-openai",
                {"config": {"customName": "My OpenAI", "provider": "openai", "apiKey": _EX_KEY}},
                _EX_VIEW,
                "Create an OpenAI config; the result carries a key preview, never the key.",
            ),
        ),
        "read": (
            Example("read-existing", {"id": _EX_ID}, _EX_VIEW, "Read a config by id."),
            Example(
                "read-unknown",
                {"id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"},
                None,
                "An unknown id reads null.",
            ),
        ),
        "update": (
            Example(
                "rename-and-set-base-url",
                {
                    "id": _EX_ID,
                    "updates": {
                        "customName": "Work OpenAI",
                        "baseUrl": "https://api.openai.com/v1",
                        "apiKey": _EX_KEY,
                    },
                    "expectedVersion": 1,
                },
                _EX_UPDATED,
                "Rename a config and set its base URL (which needs the key again), "
                "guarded by expectedVersion.",
            ),
        ),
        "delete": (
            Example("delete-existing", {"id": _EX_ID, "expectedVersion": 2}, {"deleted": True}),
            Example(
                "delete-unknown",
                {"id": "9d3c1b2a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"},
                {"deleted": False},
                "Deleting an unknown id is not an error.",
            ),
        ),
        "list": (Example("list-one", {}, [_EX_VIEW]),),
        "snapshot": (Example("snapshot-one", {}, {"revision": 1, "configs": [_EX_VIEW]}),),
        "changed": (
            Example("created", {"type": "created", "id": _EX_ID, "revision": 1, "config": _EX_VIEW}),
            Example("deleted", {"type": "deleted", "id": _EX_ID, "revision": 3}, summary="No config."),
        ),
    },
)
"""llm-config's wire: its keys, errors, summaries, examples and the wording of a key that
does not open (as before collections)."""

LLM_CONFIG: Final = Collection(
    NAME,
    LlmConfigInput,
    unique=("custom_name",),
    secret=("api_key",),
    # A stored key never follows a new destination on its own (DESIGN §2).
    secret_bound_to={"api_key": ("base_url", "provider")},
    description="LLM provider configs",
    types=CollectionTypes(
        view=LlmConfigView,
        patch=LlmConfigPatch,
        create=CreateParams,
        read=IdParams,
        update=UpdateParams,
        delete=DeleteParams,
        snapshot=Snapshot,
        changed=LlmConfigChanged,
    ),
    wire=WIRE,
    builtin=True,
)
"""LLM configs as a collection: ``customName`` unique ignoring case, ``apiKey`` secret and
bound to ``baseUrl`` and ``provider`` (a patch changing either must carry it)."""

# The derived specs, typed (bridge.api re-exports them as LLM_CONFIG_*).
CREATE: ChannelSpec[CreateParams, LlmConfigView] = LLM_CONFIG.channels.create
READ: ChannelSpec[IdParams, LlmConfigView | None] = LLM_CONFIG.channels.read
UPDATE: ChannelSpec[UpdateParams, LlmConfigView] = LLM_CONFIG.channels.update
DELETE: ChannelSpec[DeleteParams, DeleteResult] = LLM_CONFIG.channels.delete
LIST: ChannelSpec[EmptyParams, list[LlmConfigView]] = LLM_CONFIG.channels.list
SNAPSHOT: ChannelSpec[EmptyParams, Snapshot] = LLM_CONFIG.channels.snapshot
CHANGED: Final[TopicSpec] = LLM_CONFIG.changed

INITIALIZE: ChannelSpec[EmptyParams, InitializeResult] = ChannelSpec(
    "llm-config:initialize",
    EmptyParams,
    InitializeResult,
    "Load the cache if not yet loaded (idempotent).",
    (ServiceUnavailableError,),
    params_optional=True,
    examples=(Example("initialize", {}, {"initialized": True, "count": 1}),),
)
REFRESH_CACHE: ChannelSpec[EmptyParams, RefreshResult] = ChannelSpec(
    "llm-config:refresh-cache",
    EmptyParams,
    RefreshResult,
    "Reload the cache from the store; an event is sent for every difference.",
    _WRITE_ERRORS,
    params_optional=True,
    examples=(Example("refresh", {}, {"count": 1, "revision": 1}),),
)

MAX_RUNNING_TESTS_PER_CONNECTION: Final = 4
"""Most ``llm-config:test`` requests running at once on one connection; one more → 4029."""

TEST: ChannelSpec[LlmConfigTestParams, LlmConfigTestResult] = ChannelSpec(
    "llm-config:test",
    LlmConfigTestParams,
    LlmConfigTestResult,
    "List the provider's models with a saved config's key ({id}) or a draft ({config}, never saved); "
    "the key stays in the server.",
    (
        ValidationError,
        OutboundDisabledError,
        ConfigNotFoundError,
        ConfigOperationFailedError,
        RateLimitedError,
        ServiceUnavailableError,
    ),
    long_running=True,
    progress=True,
    max_running=MAX_RUNNING_TESTS_PER_CONNECTION,
    examples=(
        Example(
            "test-saved",
            {"id": _EX_ID, "timeoutMs": 5000},
            {"ok": True, "latencyMs": 412, "models": ["gpt-4o", "gpt-4o-mini"], "error": None},
            "Test a saved config with its stored key.",
        ),
        Example(
            "test-draft-refused",
            {"config": {"customName": "Draft", "provider": "openai", "apiKey": _EX_KEY}},
            {
                "ok": False,
                "latencyMs": 230,
                "models": None,
                "error": {"kind": "auth", "status": 401, "message": "The provider refused the API key"},
            },
            "Test a draft from a form (not saved); the provider refused its key.",
        ),
    ),
)

EXTRA_CHANNELS: Final[tuple[ChannelSpec[Any, Any], ...]] = (INITIALIZE, REFRESH_CACHE, TEST)
"""llm-config's channels beside the collection's six, in the order they are registered."""
CHANNELS: Final[tuple[ChannelSpec[Any, Any], ...]] = (*LLM_CONFIG.channels.all(), *EXTRA_CHANNELS)
"""Every ``llm-config:*`` channel: the collection's six, then its own three."""
