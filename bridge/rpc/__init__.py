"""The RPC layer: JSON-RPC 2.0 dispatch and the WebSocket server."""

from bridge.rpc.dispatch import Dispatcher
from bridge.rpc.server import BridgeServer, ServerSettings

__all__ = ["BridgeServer", "Dispatcher", "ServerSettings"]
