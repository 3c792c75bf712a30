"""``bridge`` exports its public API; a name that disappears fails here (websockets/httpx do the same)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bridge
from bridge.client import BridgeClient
from bridge.errors import BridgeError

PUBLIC = {
    "__version__",
    # embedding
    "Bridge",
    "run_sidecar",
    "serve",
    "start_bridge",
    # options
    "BridgeOptions",
    "SecretBackend",
    "SecretOptions",
    "SidecarOptions",
    "StoreOptions",
    "TransportOptions",
    # channels of your own
    "ChannelSpec",
    "EmptyParams",
    "Registry",
    "TopicSpec",
    "WireModel",
    # the client
    "BridgeClient",
    "ConnectionInfo",
    "read_connection_file",
    # errors
    "AddressUnavailableError",
    "AuthenticationError",
    "BridgeError",
    "ConfigNotFoundError",
    "ConfigOperationFailedError",
    "ConnectionLostError",
    "DuplicateConfigNameError",
    "InvalidRequestError",
    "MethodNotFoundError",
    "ParseError",
    "ProtocolMismatchError",
    "RateLimitedError",
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
    for name in bridge.__all__:
        value = getattr(bridge, name)
        if name.endswith("Error"):
            assert issubclass(value, BridgeError), name


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
