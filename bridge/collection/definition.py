"""What a collection is: a pydantic model plus its rules, and the channels derived from it.

A :class:`Collection` names a model of user-editable fields and says which of them are
unique (ignoring case), which are secret (write-only, encrypted at rest) and which
reference another collection. From that, the wire models (:mod:`.rules`) and the
:class:`~bridge.api.ChannelSpec` of each channel are built once, so OpenRPC, the JSON
Schemas and the TypeScript types come from the registry as for any channel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, get_args

from bridge.collection.rules import PREVIEW_SUFFIX, VERBS, CollectionTypes, Ref, Rules, Wire, build_types
from bridge.errors import (
    ConfigOperationFailedError,
    ServiceUnavailableError,
    ValidationError,
    VersionConflictError,
)
from bridge.models import DeleteResult, EmptyParams, WireModel
from bridge.spec import ChannelSpec, TopicSpec

NAME_PATTERN: Final = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*\Z")
"""A collection name: lower-case words joined by ``-`` (``prompt-template``)."""
RESERVED_NAMES: Final = frozenset({"llm-config", "bridge", "rpc"})
"""Names taken by bridge's own channels (``llm-config`` is bridge's own collection)."""


class Collection:
    """A collection: a model of user-editable fields and its rules.

    Args:
        name: channel namespace, e.g. ``prompt-template`` (channels
            ``prompt-template:create`` ... and topic ``prompt-template:changed``).
        model: a :class:`~bridge.models.WireModel` subclass of the user-editable fields
            (camelCase on the wire, unknown keys refused).
        unique: fields whose value is unique in the collection ignoring case
            (``casefold(NFC(trim(value)))``, as llm-config names), held in a unique index.
        secret: string fields that are write-only on the wire, encrypted at rest (bound
            to collection, id and field), shown as ``<field>Preview``, never logged.
        references: field → :class:`Ref`; the field must accept null (``set-null``).
        secret_bound_to: secret field → the fields it is bound to (e.g. ``{"api_key":
            ("base_url", "provider")}``: where the key is sent). An update that changes
            any of them (to null included) must send the secret again, else -32602
            ``updates.<secret>`` REQUIRED "is required when baseUrl or provider changes":
            a stored secret never follows a new destination on its own. Targets are
            non-secret fields of the model.
        description: one line for the OpenRPC summaries.
        types: the wire models, when given instead of built from ``model`` (bridge's own
            llm-config keeps the models it had before collections); None → built.
        wire: keys, errors, summaries and examples of the channels (:class:`Wire`);
            None → the collection wire.
        builtin: bridge's own collection (``llm-config``): its name may be a reserved one.

    Raises:
        ValueError: a bad name, an unknown field, a secret or unique field that is not a
            string, a reference field that does not accept null, a ``secret_bound_to`` key
            that is not a secret field or a target that is not a non-secret field, a
            :attr:`Wire.summaries` key that is not a verb, or wire keys the types do not have.
    """

    def __init__(
        self,
        name: str,
        model: type[WireModel],
        *,
        unique: tuple[str, ...] = (),
        secret: tuple[str, ...] = (),
        references: Mapping[str, Ref] | None = None,
        secret_bound_to: Mapping[str, tuple[str, ...]] | None = None,
        description: str = "",
        types: CollectionTypes | None = None,
        wire: Wire | None = None,
        builtin: bool = False,
    ) -> None:
        """Check the rules against the model and build the wire types."""
        if not NAME_PATTERN.match(name) or (name in RESERVED_NAMES and not builtin):
            raise ValueError(f"bad collection name {name!r}: lower-case words joined by '-', not reserved")
        wire = wire or Wire()
        unknown = {*wire.summaries, *wire.examples} - set(VERBS)
        if unknown:
            raise ValueError(f"unknown verbs {sorted(unknown)}: the verbs are {VERBS}")
        fields = model.model_fields
        refs = dict(references or {})
        for field in (*unique, *secret, *refs):
            if field not in fields:
                raise ValueError(f"{model.__name__} has no field {field!r}")
        for field in (*unique, *secret):
            if str not in (fields[field].annotation, *get_args(fields[field].annotation)):
                raise ValueError(f"{field!r} must be a string field to be unique or secret")
        for field in refs:
            if type(None) not in get_args(fields[field].annotation):
                raise ValueError(f"reference field {field!r} must accept null (on_delete='set-null')")
        _check_names(model, unique, secret, refs)
        bound = {field: tuple(targets) for field, targets in (secret_bound_to or {}).items()}
        _check_bound(model, secret, bound)
        self.name = name
        self.model = model
        self.unique = tuple(unique)
        self.secret = tuple(secret)
        self.references = refs
        self.secret_bound_to = bound
        self.description = description or f"{model.__name__} items"
        self.wire = wire
        self.builtin = builtin
        self.types: CollectionTypes = types or build_types(name, model, self.secret)
        if wire.item_key not in self.types.create.model_fields or wire.items_key not in (
            self.types.snapshot.model_fields
        ):
            raise ValueError(f"the wire keys {wire.item_key!r}/{wire.items_key!r} are not the types' keys")
        self.rules = Rules(
            name,
            model,
            self.unique,
            self.secret,
            refs,
            self.types,
            bound=bound,
            unopened=wire.unopened_secret,
        )
        self.channels = _build_specs(self)
        self.changed = TopicSpec(
            f"{name}:changed",
            self.types.changed,
            wire.summaries.get(
                "changed", f"An item of {name} was created, updated or deleted (by any renderer or process)."
            ),
            examples=wire.examples.get("changed", ()),
        )

    def __repr__(self) -> str:
        """``Collection('prompt-template', PromptTemplate)``."""
        return f"Collection({self.name!r}, {self.model.__name__})"


_VIEW_FIELDS: Final = frozenset({"id", "created_at", "updated_at", "version"})


def _check_names(
    model: type[WireModel], unique: tuple[str, ...], secret: tuple[str, ...], refs: dict[str, Ref]
) -> None:
    """Refuse clashing rules: the view's own fields, a preview's name, a secret unique or a reference."""
    fields = model.model_fields
    taken = _VIEW_FIELDS & set(fields)
    if taken:
        raise ValueError(f"{model.__name__} may not define {sorted(taken)}: the view adds them")
    for field in secret:
        if field + PREVIEW_SUFFIX in fields:
            raise ValueError(
                f"{model.__name__}.{field}{PREVIEW_SUFFIX} clashes with the preview of secret {field!r}"
            )
        if field in unique or field in refs:
            raise ValueError(
                f"secret field {field!r} cannot be unique or a reference (it is never compared in clear)"
            )


def _check_bound(model: type[WireModel], secret: tuple[str, ...], bound: dict[str, tuple[str, ...]]) -> None:
    """Refuse a binding whose key is not a secret field, or whose targets are not non-secret fields."""
    for field, targets in bound.items():
        if field not in secret:
            raise ValueError(f"secret_bound_to key {field!r} must be a secret field of {model.__name__}")
        if not targets:
            raise ValueError(f"secret {field!r} is bound to no field")
        for target in targets:
            if target not in model.model_fields or target in secret:
                raise ValueError(
                    f"secret {field!r} is bound to {target!r}: not a non-secret field of {model.__name__}"
                )


@dataclass(frozen=True)
class CollectionSpecs:
    """The :class:`~bridge.spec.ChannelSpec` of each channel of one collection."""

    create: ChannelSpec[Any, Any]
    read: ChannelSpec[Any, Any]
    update: ChannelSpec[Any, Any]
    delete: ChannelSpec[Any, Any]
    list: ChannelSpec[Any, Any]
    snapshot: ChannelSpec[Any, Any]

    def all(self) -> tuple[ChannelSpec[Any, Any], ...]:
        """Every spec, in CRUD order."""
        return (self.create, self.read, self.update, self.delete, self.list, self.snapshot)


def _build_specs(collection: Collection) -> CollectionSpecs:
    name, types, wire = collection.name, collection.types, collection.wire
    write = (ConfigOperationFailedError, ServiceUnavailableError)

    def spec(
        verb: str, params: Any, result: Any, summary: str, errors: Any, **kw: Any
    ) -> ChannelSpec[Any, Any]:
        return ChannelSpec(
            f"{name}:{verb}",
            params,
            result,
            wire.summaries.get(verb, summary),
            errors,
            examples=wire.examples.get(verb, ()),
            **kw,
        )

    return CollectionSpecs(
        create=spec(
            "create",
            types.create,
            types.view,
            f"Create an item of {name}; returns its view.",
            (ValidationError, wire.duplicate, *write),
        ),
        read=spec(
            "read",
            types.read,
            types.view | None,
            f"Read one item of {name} by id from the cache; null when unknown.",
            (ValidationError, ServiceUnavailableError),
        ),
        update=spec(
            "update",
            types.update,
            types.view,
            f"Patch an item of {name}; omitted fields keep their value.",
            (ValidationError, wire.not_found, VersionConflictError, wire.duplicate, *write),
        ),
        delete=spec(
            "delete",
            types.delete,
            DeleteResult,
            f"Delete an item of {name}; {{deleted: false}} when the id is unknown.",
            (ValidationError, VersionConflictError, *write),
        ),
        list=spec(
            "list",
            EmptyParams,
            list[types.view],  # type: ignore[name-defined]
            f"Every item of {name} in creation order.",
            (ServiceUnavailableError,),
            params_optional=True,
        ),
        snapshot=spec(
            "snapshot",
            EmptyParams,
            types.snapshot,
            f"Every item of {name} and the revision they reflect (for resync after reconnect).",
            (ServiceUnavailableError,),
            params_optional=True,
        ),
    )
