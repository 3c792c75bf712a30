"""Python renderer client: ``BridgeClient`` (never imports the service or storage)."""

from bridge.client.client import BridgeClient, ConnectionInfo, ConnectionProvider, read_connection_file

__all__ = ["BridgeClient", "ConnectionInfo", "ConnectionProvider", "read_connection_file"]
