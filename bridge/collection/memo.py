"""The wire JSON of each served view, built once per view object (the reads' hot path).

Every collection's channel binding (:mod:`bridge.collection.channels`, llm-config's
included) keeps each view's JSON in a :class:`JsonMemo` and splices it into its replies
as an ``orjson.Fragment``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from bridge.models import ChangeType

_NULL = orjson.Fragment(b"null")


M = TypeVar("M", bound=BaseModel)


class JsonMemo(Generic[M]):
    """The wire JSON of each entry's model, built once per model object.

    The service returns the same model object while an entry is unchanged, so the memo
    is keyed by the object's identity: a hit is one ``dict`` lookup, with no attribute
    read or comparison (the hot path of ``read`` and ``list``). The memo holds the one
    object per entry id whose JSON it keeps (so no other object can take its identity);
    a new object for the same id replaces it, and ``deleted`` drops it
    (:meth:`on_changed`).

    Args:
        model: the model class (with an ``id`` field); its own serializer, by alias
            (camelCase), builds the JSON.
    """

    __slots__ = ("_array", "_dump", "_held", "_json")

    def __init__(self, model: type[M]) -> None:
        """Start empty."""
        self._dump = model.__pydantic_serializer__.to_json
        self._json: dict[int, bytes] = {}
        """``id()`` of a held model object → its JSON."""
        self._held: dict[str, M] = {}
        """Entry id → the model object whose JSON is kept."""
        self._array: tuple[tuple[M, ...], bytes] = ((), b"[]")
        """The last tuple :meth:`array` serialised, held, and its JSON."""

    def json(self, item: M) -> bytes:
        """Return ``item``'s wire JSON (UTF-8), built once per object."""
        data = self._json.get(id(item))
        if data is not None:
            return data
        data = self._dump(item, by_alias=True)
        key: str = item.id  # type: ignore[attr-defined]
        old = self._held.get(key)
        if old is not None:
            del self._json[id(old)]
        self._held[key] = item
        self._json[id(item)] = data
        return data

    def one(self, item: M | None) -> orjson.Fragment:
        """``item`` as a JSON fragment; ``null`` for None."""
        if item is None:
            return _NULL
        data = self._json.get(id(item))  # the hit path of every read, inlined
        return orjson.Fragment(data if data is not None else self.json(item))

    def array(self, items: tuple[M, ...]) -> bytes:
        """A JSON array of ``items``' JSON, in order; the same tuple again is one lookup.

        Args:
            items: a tuple the caller hands out again while nothing in it changed (the
                service's shared views), so the last one's JSON is kept by identity.
        """
        last, data = self._array
        if items is last:
            return data
        memo = self._json
        data = b"[" + b",".join([memo.get(id(item)) or self.json(item) for item in items]) + b"]"
        self._array = (items, data)
        return data

    def on_changed(self, event: Any) -> None:
        """Subscriber of the service's events (``<Model>Changed``): drops the JSON of a ``deleted`` entry."""
        if event.type is ChangeType.DELETED:
            old = self._held.pop(event.id, None)
            if old is not None:
                del self._json[id(old)]
