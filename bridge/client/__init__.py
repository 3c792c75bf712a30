"""Python renderer client (never imports the service or storage).

``BridgeClient`` is the facade: a ``Connection`` (transport, pending calls, reconnect with
the shared backoff, :mod:`bridge.backoff`) plus ``CollectionMirror`` objects (the items of a
collection by id and revision, resynced by snapshot after every reconnect: the LLM
configs' one, ``LlmConfigMirror``, and any other through ``BridgeClient.collection``) and
typed helpers.
"""

from bridge.client.client import ANNOUNCED_SCHEMA, BridgeClient, SchemaMismatchWarning, builtin_schema_hash
from bridge.client.connection import Connection, ConnectionProvider
from bridge.client.mirror import CollectionMirror, LlmConfigMirror
from bridge.connection_file import ConnectionInfo, read_connection_file

__all__ = [
    "ANNOUNCED_SCHEMA",
    "BridgeClient",
    "CollectionMirror",
    "Connection",
    "ConnectionInfo",
    "ConnectionProvider",
    "LlmConfigMirror",
    "SchemaMismatchWarning",
    "builtin_schema_hash",
    "read_connection_file",
]
