"""A collection's rules and the wire models derived from them (no channels, no store).

:class:`Rules` is what the service needs of a :class:`~bridge.collection.Collection`:
the model, its unique, secret and reference fields, and the wire models built from it
once (:class:`CollectionTypes`): the view (the fields, ``<field>Preview`` for a secret
one, ``id``, ``createdAt``, ``updatedAt``, ``version``), the patch, the params of each
channel, the snapshot and the ``<name>:changed`` payload, each named after the model
(``PromptTemplateView``...).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, Field, Strict, StrictInt, create_model, field_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from bridge.errors import BridgeError, DuplicateItemError, ItemNotFoundError
from bridge.models import ChangeType, WireModel, null_rejected
from bridge.spec import Example

VERBS: Final = ("create", "read", "update", "delete", "list", "snapshot", "changed")
"""The channels (and, last, the topic) of a collection, as :attr:`Wire.summaries` keys them."""
PREVIEW_SUFFIX: Final = "_preview"
"""A secret field ``f`` is shown as ``f_preview`` (``fPreview`` on the wire)."""


def _check_item_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise PydanticCustomError("INVALID_FORMAT", "must be a UUID") from None
    if len(value) != 36:  # noqa: PLR2004 - the hyphenated form only, as llm-config ids
        raise PydanticCustomError("INVALID_FORMAT", "must be a UUID")
    return str(parsed)


ItemId = Annotated[str, AfterValidator(_check_item_id), Field(description="Item id (UUID).")]
"""An item id on the wire: a hyphenated UUID, compared in lower case."""


def _no_null(cls: Any, value: Any, handler: Any) -> Any:  # noqa: ARG001 - a validator's signature
    if value is None:
        raise PydanticCustomError("INVALID_FORMAT", "must not be null")
    return handler(value)


PREVIEW_MASK: Final = "••••••••"
"""The preview of a secret under :data:`PREVIEW_MIN_CHARS` characters: nothing of it is shown."""
PREVIEW_MIN_CHARS: Final = 16
"""Shortest secret whose preview shows its last 4 characters."""


def secret_preview(secret: str) -> str:
    """Return the masked preview of a collection secret.

    ``••••`` + the last 4 characters when the secret has at least 16 characters, else
    :data:`PREVIEW_MASK` (a short secret such as a password shows nothing). LLM configs keep
    their own ``apiKeyPreview`` (first 3 + ``...`` + last 3).
    """
    if len(secret) < PREVIEW_MIN_CHARS:
        return PREVIEW_MASK
    return "••••" + secret[-4:]


@dataclass(frozen=True)
class Ref:
    """A field holding the id of an item of another collection (or of an llm-config).

    Attributes:
        target: the referenced collection's name (``llm-config`` for LLM configs).
        on_delete: what happens to the field when the referenced item is deleted:
            ``set-null`` sets it to null through a normal versioned update (an ``updated``
            event). A create or update naming an id that does not exist is refused.
    """

    target: str
    on_delete: Literal["set-null"] = "set-null"


@dataclass(frozen=True)
class CollectionTypes:
    """The wire models of one collection (each named after the model, e.g. ``PromptTemplateView``)."""

    view: type[WireModel]
    patch: type[WireModel]
    create: type[WireModel]
    read: type[WireModel]
    update: type[WireModel]
    delete: type[WireModel]
    snapshot: type[WireModel]
    changed: type[WireModel]


_STRICT_TYPES: Final = (int, float, bool)


def _strict(info: FieldInfo) -> bool:
    """Whether a field's type is int, float or bool (optionally nullable): validated strictly on the wire."""
    kinds = {arg for arg in (get_args(info.annotation) or (info.annotation,)) if arg is not type(None)}
    return bool(kinds) and kinds <= set(_STRICT_TYPES)


def _strict_input(model: type[WireModel]) -> type[WireModel]:
    """Return ``model`` with its int, float and bool fields strict, as llm-config's ``StrictBool``.

    ``"5"``, ``5.0`` and ``true`` are refused for an int (-32602), ``"1.5"`` and ``true`` for a
    float (a JSON number, ``1`` included, is accepted), ``"true"`` and ``1`` for a bool.
    Same name and JSON Schema; ``model`` itself when it has no such field.
    """
    strict = {
        field: (Annotated[info.annotation, Strict()], info)
        for field, info in model.model_fields.items()
        if _strict(info)
    }
    if not strict:
        return model
    built: type[WireModel] = create_model(  # type: ignore[call-overload]
        model.__name__, __base__=model, __module__=model.__module__, __doc__=model.__doc__, **strict
    )
    return built


def build_types(name: str, model: type[WireModel], secret: tuple[str, ...]) -> CollectionTypes:
    """Build the wire models of collection ``name`` (see :class:`CollectionTypes`)."""
    base = model.__name__
    module = model.__module__
    fields = model.model_fields
    view_fields: dict[str, Any] = {"id": (str, Field(description="Item id (UUID)."))}
    for field, info in fields.items():
        if field in secret:
            nullable = type(None) in get_args(info.annotation)
            view_fields[field + PREVIEW_SUFFIX] = (
                str | None if nullable else str,
                Field(
                    description=f"Masked preview of {field}: '••••' + last 4 chars, or '••••••••' "
                    "under 16 chars; never the secret."
                ),
            )
        else:
            view_fields[field] = (info.annotation, info)
    view_fields["created_at"] = (str, Field(description="ISO 8601 UTC, milliseconds."))
    view_fields["updated_at"] = (str, Field(description="ISO 8601 UTC, milliseconds."))
    view_fields["version"] = (int, Field(ge=1, description="Increases by one with every update."))
    view: Any = create_model(
        f"{base}View",
        __base__=WireModel,
        __module__=module,
        __doc__=f"An item of {name} as served (secret fields only as previews).",
        **view_fields,
    )
    patch_fields: dict[str, Any] = {}
    not_null: list[str] = []
    for field, info in fields.items():
        inner: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        strict = True if _strict(info) else None
        if type(None) in get_args(info.annotation):
            patch_fields[field] = (inner, Field(default=None, description=info.description, strict=strict))
        else:
            # ``X | None`` keeps the errors located at the field; null itself is refused
            # (as llm-config's patch does) and left out of the JSON Schema.
            refused = Field(
                default=None, description=info.description, json_schema_extra=null_rejected, strict=strict
            )
            patch_fields[field] = (inner | None, refused)
            not_null.append(field)
    validators = {"_no_null": field_validator(*not_null, mode="wrap")(_no_null)} if not_null else {}
    patch = create_model(
        f"{base}Patch",
        __base__=WireModel,
        __module__=module,
        __validators__=validators,
        __doc__=f"Changes to an item of {name}: omitted fields keep their value.",
        **patch_fields,
    )
    expected: Any = (
        StrictInt | None,
        Field(default=None, ge=1, description="Refuse (4012) unless at this version."),
    )
    create = create_model(
        f"{base}CreateParams",
        __base__=WireModel,
        __module__=module,
        __doc__="``{item}``.",
        item=(_strict_input(model), ...),
    )
    read = create_model(
        f"{base}IdParams", __base__=WireModel, __module__=module, __doc__="``{id}``.", id=(ItemId, ...)
    )
    update = create_model(
        f"{base}UpdateParams",
        __base__=WireModel,
        __module__=module,
        __doc__="``{id, updates, expectedVersion?}``.",
        id=(ItemId, ...),
        updates=(patch, ...),
        expected_version=expected,
    )
    delete = create_model(
        f"{base}DeleteParams",
        __base__=WireModel,
        __module__=module,
        __doc__="``{id, expectedVersion?}``.",
        id=(ItemId, ...),
        expected_version=expected,
    )
    snapshot = create_model(
        f"{base}Snapshot",
        __base__=WireModel,
        __module__=module,
        __doc__="Every item in creation order and the revision they reflect.",
        revision=(int, Field(ge=0)),
        items=(list[view], ...),
    )
    optional_view: Any = view | SkipJsonSchema[None]  # type: ignore[misc]  # view is built at run time
    changed = create_model(
        f"{base}Changed",
        __base__=WireModel,
        __module__=module,
        __doc__="Payload of ``<name>:changed``: ``item`` is absent for ``deleted``.",
        type=(ChangeType, ...),
        id=(str, ...),
        revision=(int, Field(ge=1)),
        item=(optional_view, Field(default=None, exclude_if=lambda v: v is None)),
    )
    return CollectionTypes(view, patch, create, read, update, delete, snapshot, changed)


@dataclass(frozen=True)
class Wire:
    """How a collection's channels are spelled beyond its name; the defaults are the collection wire.

    A new collection keeps the defaults. bridge's own ``llm-config``
    (:data:`bridge.llm_config.LLM_CONFIG`) gives the spelling it had before collections, so
    its wire contract is unchanged.

    Attributes:
        item_key: the item's key in ``<name>:create`` params and in a ``<name>:changed``
            event (``item``; ``config`` for llm-config). It must match the given types.
        items_key: the item list's key in a ``<name>:snapshot`` result (``items``; ``configs``).
        not_found: the error of an unknown id (4004 ``ITEM_NOT_FOUND``;
            ``CONFIG_NOT_FOUND`` for llm-config).
        duplicate: the error of a taken unique key (4009 ``DUPLICATE_ITEM``;
            ``DUPLICATE_CONFIG_NAME``).
        summaries: verb (:data:`VERBS`) → the OpenRPC summary; a verb left out gets the
            generic one, worded from the collection's name.
        examples: verb → documented calls (OpenRPC examples); none by default.
        unopened_secret: the message of ``updates.<secret>`` REQUIRED when an update of an
            item whose stored secret does not open leaves that secret out (llm-config:
            "is required: the stored key cannot be opened"); None (the collection wire):
            the secret merges as null and the model judges it (a required secret fails
            ``INVALID_FORMAT``; a nullable one is cleared by the restoring write).
    """

    item_key: str = "item"
    items_key: str = "items"
    not_found: type[BridgeError] = ItemNotFoundError
    duplicate: type[BridgeError] = DuplicateItemError
    summaries: Mapping[str, str] = dataclasses.field(default_factory=dict)
    examples: Mapping[str, tuple[Example, ...]] = dataclasses.field(default_factory=dict)
    unopened_secret: str | None = None

    @property
    def generic(self) -> bool:
        """True for the collection wire's own errors (the binding words config errors as item errors)."""
        return self.not_found is ItemNotFoundError and self.duplicate is DuplicateItemError


@dataclass(frozen=True)
class Rules:
    """One collection's rules, as the service applies them.

    Attributes:
        name: the collection's name (``prompt-template``).
        model: the model of the user-editable fields.
        unique: fields unique ignoring case.
        secret: write-only fields, encrypted at rest.
        references: field → :class:`Ref`.
        types: the wire models.
        bound: secret field → the fields it is bound to: a patch changing one of them
            must send the secret again (``Collection(secret_bound_to=...)``).
        unopened: :attr:`Wire.unopened_secret`.

    The merge of an update applies them: :func:`bridge.collection.merge.merge_update`.
    """

    name: str
    model: type[WireModel]
    unique: tuple[str, ...]
    secret: tuple[str, ...]
    references: dict[str, Ref]
    types: CollectionTypes
    bound: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    unopened: str | None = None
