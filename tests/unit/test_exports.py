"""``bridge`` exports its public API; a name that disappears fails here (websockets/httpx do the same)."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import subprocess
import sys
import typing

import pytest

import bridge
from bridge import errors
from bridge.client import BridgeClient, CollectionMirror
from bridge.errors import BridgeError
from bridge.options import BridgeOptions, InvalidSettingError, SidecarOptions

PUBLIC = {
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
    "InsecurePathError",
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
}


def test_every_public_name_is_exported() -> None:
    assert set(bridge.__all__) >= PUBLIC, sorted(PUBLIC - set(bridge.__all__))
    assert len(bridge.__all__) == len(set(bridge.__all__))


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_export_resolves_and_is_listed_by_dir(name: str) -> None:
    assert getattr(bridge, name) is not None
    assert name in dir(bridge)


def test_every_name_in_all_resolves() -> None:
    for name in bridge.__all__:
        assert getattr(bridge, name) is not None, name


def test_errors_share_one_root_and_the_client_is_the_client() -> None:
    assert bridge.BridgeError is BridgeError
    assert bridge.BridgeClient is BridgeClient
    assert bridge.CollectionMirror is CollectionMirror
    assert inspect.iscoroutinefunction(BridgeClient.collection)  # how a mirror is obtained
    for name in bridge.__all__:
        value = getattr(bridge, name)
        if name.endswith("Error") and name != "InvalidSettingError":
            assert issubclass(value, BridgeError), name
    # Options are checked as they are built, before anything runs: a ValueError, as
    # dataclasses and the standard library raise for a bad argument.
    assert bridge.InvalidSettingError is InvalidSettingError
    assert issubclass(InvalidSettingError, ValueError)
    assert not issubclass(InvalidSettingError, BridgeError)


def test_every_error_a_user_can_catch_is_exported() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BridgeError) and value.__module__ == errors.__name__
    }
    assert defined >= {"RequestCancelledError", "ResponseTooLargeError", "OutboundDisabledError"}
    assert sorted(defined - set(bridge.__all__)) == []
    for name in defined:
        assert getattr(bridge, name) is getattr(errors, name)


def _option_types(options: type) -> set[type]:
    """The option groups and enums among the field types of the dataclass ``options``."""
    found: set[type] = set()
    for hint in typing.get_type_hints(options).values():
        for candidate in (hint, *typing.get_args(hint)):
            if inspect.isclass(candidate) and (
                dataclasses.is_dataclass(candidate) or issubclass(candidate, enum.Enum)
            ):
                found.add(candidate)
    return found


def test_every_option_group_and_enum_an_option_takes_is_exported() -> None:
    needed = {BridgeOptions, SidecarOptions}
    for options in (BridgeOptions, SidecarOptions):
        needed |= _option_types(options)
    needed |= {t for group in list(needed) if dataclasses.is_dataclass(group) for t in _option_types(group)}
    names = {t.__name__ for t in needed}
    assert names >= {
        "TransportOptions",
        "StoreOptions",
        "SecretOptions",
        "OutboundOptions",
        "LogLevel",
        "EventLoop",
    }
    assert sorted(names - set(bridge.__all__)) == []
    for t in needed:
        assert getattr(bridge, t.__name__) is t


def test_the_collection_api_is_the_collection_package() -> None:
    from bridge.collection import Collection, Ref  # noqa: PLC0415 - the check is the import

    assert bridge.Collection is Collection
    assert bridge.Ref is Ref


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = bridge.NoSuchThing


def test_version_is_a_release_string() -> None:
    major, minor, *_ = bridge.__version__.split(".")
    assert major.isdigit()
    assert minor.isdigit()


def test_importing_bridge_loads_no_server_code() -> None:
    code = (
        "import sys, bridge; bridge.__version__; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'bridge', 'websockets', 'pydantic', 'structlog'})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "bridge", loaded.stdout
