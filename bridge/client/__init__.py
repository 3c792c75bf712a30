"""Python renderer client (never imports the service or storage).

``BridgeClient`` is the facade: a ``Connection`` (transport, pending calls, reconnect with
the shared backoff) plus an ``LlmConfigMirror`` (the LLM-config views, resynced after
every reconnect) and typed helpers.
"""

from bridge.client.client import BridgeClient, SchemaMismatchWarning, builtin_schema_hash
from bridge.client.connection import Connection, ConnectionProvider
from bridge.client.mirror import LlmConfigMirror
from bridge.connection_file import ConnectionInfo, read_connection_file

__all__ = [
    "BridgeClient",
    "Connection",
    "ConnectionInfo",
    "ConnectionProvider",
    "LlmConfigMirror",
    "SchemaMismatchWarning",
    "builtin_schema_hash",
    "read_connection_file",
]
