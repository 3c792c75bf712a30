"""bridge: a Python main process serving renderers over JSON-RPC 2.0 / WebSocket.

The public API, importable from here (each name is loaded on first use, so
``import bridge`` stays light and ``import bridge.models`` loads no server code)::

    import bridge

    registry = bridge.Registry()
    registry.add(MY_CHANNEL, my_handler)
    options = bridge.BridgeOptions(transport=bridge.TransportOptions(port=0))
    await bridge.serve(options, registry)

- embedding: :class:`Bridge`, :func:`start_bridge`, :func:`serve`, :func:`run_sidecar`;
- options: :class:`BridgeOptions` composed of :class:`TransportOptions`,
  :class:`StoreOptions`, :class:`SecretOptions`, :class:`OutboundOptions`;
  :class:`SidecarOptions` with :class:`LogLevel` and :class:`EventLoop`;
  :class:`SecretBackend`; :class:`InvalidSettingError` (a ``ValueError``: a setting out
  of its range);
- channels of your own: :class:`Registry`, :class:`ChannelSpec`, :class:`TopicSpec`,
  :class:`Progress`, :class:`WireModel`, :class:`EmptyParams`;
- state of your own: :class:`Collection` (a model plus its rules: unique, secret and
  reference fields; ``registry.add_collection``), :class:`Ref` and :data:`DisplayName`
  (a field with ``customName``'s rules);
- the client: :class:`BridgeClient`, :class:`CollectionMirror` (a collection followed by
  ``BridgeClient.collection(name)``), :class:`ConnectionInfo`, :data:`ConnectionProvider`,
  :func:`read_connection_file`;
- errors: :class:`BridgeError` and every subclass (:mod:`bridge.errors`);
- ``__version__``: the package version (the one place it is written).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

__version__: Final = "0.1.0"

if TYPE_CHECKING:
    from bridge.api import ChannelSpec, Progress, Registry, TopicSpec
    from bridge.app import Bridge, run_sidecar, serve, start_bridge
    from bridge.client import BridgeClient, CollectionMirror, ConnectionProvider
    from bridge.collection import Collection, Ref
    from bridge.connection_file import ConnectionInfo, read_connection_file
    from bridge.errors import (
        AddressUnavailableError,
        AuthenticationError,
        BridgeError,
        ConfigNotFoundError,
        ConfigOperationFailedError,
        ConnectionLostError,
        DuplicateConfigNameError,
        DuplicateItemError,
        InsecurePathError,
        InvalidRequestError,
        ItemNotFoundError,
        MethodNotFoundError,
        OutboundDisabledError,
        ParseError,
        ProtocolMismatchError,
        RateLimitedError,
        RequestCancelledError,
        ResponseTooLargeError,
        SchemaTooNewError,
        ServiceUnavailableError,
        StartupError,
        ValidationError,
        VersionConflictError,
    )
    from bridge.keystore import SecretBackend
    from bridge.models import DisplayName, EmptyParams, WireModel
    from bridge.options import (
        BridgeOptions,
        EventLoop,
        InvalidSettingError,
        LogLevel,
        OutboundOptions,
        SecretOptions,
        SidecarOptions,
        StoreOptions,
        TransportOptions,
    )

_EXPORTS: Final[dict[str, tuple[str, ...]]] = {
    "bridge.api": ("ChannelSpec", "Progress", "Registry", "TopicSpec"),
    "bridge.app": ("Bridge", "run_sidecar", "serve", "start_bridge"),
    "bridge.client": ("BridgeClient", "CollectionMirror", "ConnectionProvider"),
    "bridge.collection": ("Collection", "Ref"),
    "bridge.connection_file": ("ConnectionInfo", "read_connection_file"),
    "bridge.errors": (
        "AddressUnavailableError",
        "AuthenticationError",
        "BridgeError",
        "ConfigNotFoundError",
        "ConfigOperationFailedError",
        "ConnectionLostError",
        "DuplicateConfigNameError",
        "DuplicateItemError",
        "InsecurePathError",
        "ItemNotFoundError",
        "InvalidRequestError",
        "MethodNotFoundError",
        "OutboundDisabledError",
        "ParseError",
        "ProtocolMismatchError",
        "RateLimitedError",
        "RequestCancelledError",
        "ResponseTooLargeError",
        "SchemaTooNewError",
        "ServiceUnavailableError",
        "StartupError",
        "ValidationError",
        "VersionConflictError",
    ),
    "bridge.keystore": ("SecretBackend",),
    "bridge.models": ("DisplayName", "EmptyParams", "WireModel"),
    "bridge.options": (
        "BridgeOptions",
        "EventLoop",
        "InvalidSettingError",
        "LogLevel",
        "OutboundOptions",
        "SecretOptions",
        "SidecarOptions",
        "StoreOptions",
        "TransportOptions",
    ),
}
_LAZY: Final = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [  # noqa: RUF022 - grouped as in the docstring, each group sorted
    "__version__",
    # embedding
    "Bridge",
    "run_sidecar",
    "serve",
    "start_bridge",
    # options
    "BridgeOptions",
    "EventLoop",
    "InvalidSettingError",
    "LogLevel",
    "OutboundOptions",
    "SecretBackend",
    "SecretOptions",
    "SidecarOptions",
    "StoreOptions",
    "TransportOptions",
    # channels of your own
    "ChannelSpec",
    "EmptyParams",
    "Progress",
    "Registry",
    "TopicSpec",
    "WireModel",
    # state of your own (collections)
    "Collection",
    "DisplayName",
    "Ref",
    # the client
    "BridgeClient",
    "CollectionMirror",
    "ConnectionInfo",
    "ConnectionProvider",
    "read_connection_file",
    # errors
    "AddressUnavailableError",
    "AuthenticationError",
    "BridgeError",
    "ConfigNotFoundError",
    "ConfigOperationFailedError",
    "ConnectionLostError",
    "DuplicateConfigNameError",
    "DuplicateItemError",
    "InsecurePathError",
    "ItemNotFoundError",
    "InvalidRequestError",
    "MethodNotFoundError",
    "OutboundDisabledError",
    "ParseError",
    "ProtocolMismatchError",
    "RateLimitedError",
    "RequestCancelledError",
    "ResponseTooLargeError",
    "SchemaTooNewError",
    "ServiceUnavailableError",
    "StartupError",
    "ValidationError",
    "VersionConflictError",
]


def __getattr__(name: str) -> Any:
    """Import the public names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The module's own names and the lazily imported public ones."""
    return sorted({*globals(), *_LAZY})
