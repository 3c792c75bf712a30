"""bridge: a Python main process serving renderers over JSON-RPC 2.0 / WebSocket.

Embedding API (imported lazily so ``import bridge.models`` stays light)::

    import bridge
    registry = bridge.Registry()
    registry.add(MY_CHANNEL, my_handler)
    await bridge.serve(bridge.BridgeOptions(port=0), registry)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.api import ChannelSpec, Progress, Registry, TopicSpec
    from bridge.cli import Bridge, BridgeOptions, serve, start_bridge

__all__ = [
    "Bridge",
    "BridgeOptions",
    "ChannelSpec",
    "Progress",
    "Registry",
    "TopicSpec",
    "serve",
    "start_bridge",
]

_LAZY = {
    "ChannelSpec": "bridge.api",
    "Progress": "bridge.api",
    "Registry": "bridge.api",
    "TopicSpec": "bridge.api",
    "Bridge": "bridge.cli",
    "BridgeOptions": "bridge.cli",
    "serve": "bridge.cli",
    "start_bridge": "bridge.cli",
}


def __getattr__(name: str) -> Any:
    """Import the public names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)
