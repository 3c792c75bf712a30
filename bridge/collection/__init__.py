"""Collections: state of your own with the guarantees llm-config has (issue 14).

A :class:`Collection` is a pydantic model plus its rules (unique keys, secret fields,
secrets bound to the fields that say where they go, references). Added to a
:class:`~bridge.api.Registry` with ``registry.add_collection``, it gets
``<name>:create|read|update|delete|list|snapshot`` channels and a ``<name>:changed``
topic (so OpenRPC, JSON Schemas and TypeScript types), an O(1) write-through cache,
DB-side write checks, a gap-free revision counter and change log, the change feed
between processes sharing the data directory, and quarantine of rows that fail the
model. Layers: :mod:`.definition` (the public ``Collection`` and its channel specs) →
:mod:`.channels` (wire binding) → :mod:`.service` (cache, feed, secrets, references) →
:mod:`.sqlite` (SQL only) → :mod:`.rules` (wire models) → :mod:`.protocol` (the write
protocol, pure) → :mod:`.merge` (the merge of an update, pure, shared with llm-config).
"""

from __future__ import annotations

from bridge.collection.definition import Collection, CollectionSpecs
from bridge.collection.rules import CollectionTypes, ItemId, Ref, Rules, Wire

__all__ = ["Collection", "CollectionSpecs", "CollectionTypes", "ItemId", "Ref", "Rules", "Wire"]
