"""The merge of a patch into an item, once for every collection and llm-config (pure).

An update's fields are laid over the item's current fields and the result is validated
with the collection's model; then the collection's declared rules about its secrets
apply (:class:`~bridge.collection.rules.Rules`, read through :class:`MergeRules`):

- a secret bound to other fields (``Collection(secret_bound_to={"api_key": ("base_url",
  "provider")})``) must be sent again with a patch that changes any of them, else
  ``updates.<secret>`` REQUIRED "is required when baseUrl or provider changes": a stored
  secret never follows a new destination on its own (DESIGN §2);
- a stored secret that does not open (a held item's) is not a current value: with
  :attr:`Rules.unopened` set, a patch that leaves it out gets ``updates.<secret>``
  REQUIRED with that message (llm-config: "is required: the stored key cannot be
  opened"); without, it merges as null and the model judges it (a required secret
  fails ``INVALID_FORMAT``, a nullable one is cleared by the restoring write).

No I/O, no store, no wire: llm-config runs it inside its store's write transaction
(:func:`bridge.service.merge.merge_patch`, an adapter from its stored row), every other
collection in its service's write (``CollectionService._merge_and_write``). It sits
below the write protocol (:mod:`bridge.collection.protocol` re-exports :func:`merge`):
nothing here imports orjson, a store or the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel

from bridge.errors import FieldError, ValidationError
from bridge.models import field_errors

PREFIX: Final = "updates"
"""Where an update's field errors are located (``updates.<field>``, DESIGN §5)."""


class MergeRules(Protocol):
    """What the merge reads of a collection's rules (:class:`bridge.collection.rules.Rules`)."""

    @property
    def model(self) -> type[BaseModel]:
        """The model of the user-editable fields."""
        ...

    @property
    def secret(self) -> tuple[str, ...]:
        """The secret fields, in model order."""
        ...

    @property
    def bound(self) -> Mapping[str, tuple[str, ...]]:
        """Secret field → the fields a patch may not change without sending it."""
        ...

    @property
    def unopened(self) -> str | None:
        """The REQUIRED message of a secret that does not open and is not sent; None: it merges as null."""
        ...


def merge(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``current`` with the fields of ``patch`` (the ones the client sent) replaced."""
    return {**current, **patch}


@dataclass(frozen=True, slots=True)
class Merged:
    """What an update writes.

    Attributes:
        values: the validated model's fields by Python name, JSON values (``model_dump``
            in JSON mode), secrets in clear.
        changed: the fields whose value the write changes (secrets compared in clear);
            for a held item also every field sent and every secret that did not open
            (the restoring write rewrites them). Empty only for a held item.
    """

    values: dict[str, Any]
    changed: frozenset[str]


def merge_update(
    current: Mapping[str, Any],
    sent: Mapping[str, Any],
    rules: MergeRules,
    *,
    unopened: AbstractSet[str] = frozenset(),
    held: bool = False,
) -> Merged | None:
    """Merge the fields a client sent into an item's current fields and validate the result.

    Args:
        current: the item's model fields by Python name (JSON values), secrets opened.
        sent: the fields the client sent, by Python name (JSON values; a nullable field
            may be None: it clears the field).
        rules: the collection's rules (its model, secrets, bindings, wording).
        unopened: secret fields whose stored value does not open (their ``current``
            value is ignored).
        held: the item is quarantined or otherwise invalid (being restored or repaired):
            never a no-op, and every field sent is rewritten.

    Returns:
        The values to write and the fields they change; None when nothing changes (a
        no-op: no write, no version, no event).

    Raises:
        ValidationError (-32602): fields under ``updates.``, in model field order
            (unknown or nested fields after): the model's errors, a bound secret's
            REQUIRED replacing the model's errors on it, or (alone, before any other
            check) the REQUIRED of each unopened secret left out when
            :attr:`Rules.unopened` is set.
    """
    secrets = unopened & set(rules.secret)
    if rules.unopened is not None and (
        missing := [f for f in rules.secret if f in secrets and f not in sent]
    ):
        raise ValidationError([FieldError(_wire(field), "REQUIRED", rules.unopened) for field in missing])
    base = {**current, **dict.fromkeys(secrets)}
    try:
        valid = rules.model.model_validate(merge(base, sent))
    except PydanticValidationError as exc:
        raise ValidationError(_with_bound_secrets(field_errors(exc, (PREFIX,)), base, sent, rules)) from None
    if errors := _with_bound_secrets([], base, sent, rules):
        raise ValidationError(errors)
    values = valid.model_dump(mode="json", by_alias=False)
    changed = {field for field, value in values.items() if value != base.get(field)}
    if held:
        changed |= set(sent) | secrets
    elif not changed:
        return None
    return Merged(values, frozenset(changed))


def _with_bound_secrets(
    errors: list[FieldError], base: Mapping[str, Any], sent: Mapping[str, Any], rules: MergeRules
) -> list[FieldError]:
    """Add ``updates.<secret>`` REQUIRED for each bound secret whose destination the patch moves without it.

    The rule replaces the model's errors on that secret (they concern the stored value,
    which is not being submitted) and keeps model field order.
    """
    required = [
        FieldError(_wire(secret), "REQUIRED", bound_message(targets))
        for secret, targets in rules.bound.items()
        if secret not in sent and any(field in sent and sent[field] != base.get(field) for field in targets)
    ]
    if not required:
        return errors
    replaced = {error.field for error in required}
    order = {_wire(name): index for index, name in enumerate(rules.model.model_fields)}
    kept = [error for error in errors if error.field not in replaced]
    return sorted([*kept, *required], key=lambda error: order.get(error.field, len(order)))


def bound_message(targets: tuple[str, ...]) -> str:
    """The message of a bound secret's REQUIRED: ``is required when baseUrl or provider changes``."""
    return f"is required when {' or '.join(to_camel(field) for field in targets)} changes"


def _wire(field: str) -> str:
    """``updates.<camelCase field>``, as :func:`bridge.models.field_errors` locates a model field."""
    return f"{PREFIX}.{to_camel(field)}"
