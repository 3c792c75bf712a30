"""Contract drift caught at connect (DESIGN §8): the Python client compares ``schemaHash``.

``BridgeClient`` expects bridge's built-in document's hash unless ``schema_hash`` names
the application's own; another hash in ``bridge:hello`` is logged and given to
``on_schema_mismatch`` or :func:`warnings.warn` — never silent — and the connection
proceeds. Servers: a stock ``bridge serve --allow-shutdown`` (which also serves
``bridge:shutdown``, as in sidecar mode, left out of the document) and the example application's own
(``tests/helpers/app_sidecar.py``: one channel and one topic more).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import bridge
from bridge import app, schemas
from bridge.client import (
    ANNOUNCED_SCHEMA,
    BridgeClient,
    ConnectionInfo,
    SchemaMismatchWarning,
    builtin_schema_hash,
)
from bridge.keystore import SecretBackend
from tests.conftest import ServedBridge, start_bridge_process
from tests.helpers.app_sidecar import load_example

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[ServedBridge]:
    """A stock ``bridge serve --allow-shutdown``: it serves ``bridge:shutdown``, as in sidecar mode."""
    served = start_bridge_process(tmp_path / "data", "--allow-shutdown")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def app_sidecar(tmp_path: Path) -> Iterator[ServedBridge]:
    """The example application's own sidecar (``app:echo``, ``app:tick``) on port 0."""
    command = [sys.executable, "-m", "tests.helpers.app_sidecar", "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "app-data"), "--secret-backend", "file"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    import json  # noqa: PLC0415 - only this fixture reads a ready line by hand

    ready = json.loads(process.stdout.readline())
    assert ready["event"] == "ready", ready
    served = ServedBridge(process, ready["url"], ready["token"], 0, tmp_path, ready, Path(os.devnull))
    try:
        yield served
    finally:
        assert served.stop() == 0


def test_the_builtin_hash_is_the_committed_documents() -> None:
    committed = (ROOT / "schemas" / "openrpc.json").read_bytes()
    assert builtin_schema_hash() == "sha256:" + hashlib.sha256(committed).hexdigest()


async def test_a_stock_sidecar_is_not_reported(sidecar: ServedBridge) -> None:
    with warnings.catch_warnings(record=True) as caught, capture_logs() as logs:
        warnings.simplefilter("always")
        async with BridgeClient(sidecar.url, sidecar.token) as client:
            hello = await client.hello()
            assert "bridge:shutdown" in hello.channels  # served...
            assert hello.schema_hash == builtin_schema_hash()  # ...and the hash does not move
            assert client.schema_mismatch is None
    assert [w.message for w in caught] == []
    assert [entry for entry in logs if entry["event"] == "schema_hash_mismatch"] == []


async def test_an_application_server_is_reported_with_both_hashes(app_sidecar: ServedBridge) -> None:
    with warnings.catch_warnings(record=True) as caught, capture_logs() as logs:
        warnings.simplefilter("always")
        async with BridgeClient(app_sidecar.url, app_sidecar.token) as client:
            echoed = await client.invoke("app:echo", {"text": "drift"})  # the connection proceeds
            actual = (await client.hello()).schema_hash
            assert client.schema_mismatch is not None
    assert echoed == {"text": "drift", "length": 5}
    assert actual != builtin_schema_hash()
    (warning,) = [w.message for w in caught]
    assert isinstance(warning, SchemaMismatchWarning)
    assert (warning.expected, warning.actual) == (builtin_schema_hash(), actual)
    assert builtin_schema_hash() in str(warning)
    assert actual in str(warning)
    (logged,) = [entry for entry in logs if entry["event"] == "schema_hash_mismatch"]
    assert (logged["expected"], logged["actual"], logged["log_level"]) == (
        builtin_schema_hash(),
        actual,
        "warning",
    )


async def test_a_callback_gets_the_mismatch_once_per_announced_hash(app_sidecar: ServedBridge) -> None:
    seen: list[SchemaMismatchWarning] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = BridgeClient(
            app_sidecar.url, app_sidecar.token, reconnect=True, on_schema_mismatch=seen.append
        )
        async with client:
            actual = (await client.hello()).schema_hash
            assert client._ws is not None
            await client._ws.close()
            await client.wait_connected(timeout_s=10)
            await client.hello()  # reconnected, checked again: the same hash is not reported twice
    assert [(m.expected, m.actual) for m in seen] == [(builtin_schema_hash(), actual)]
    assert client.attempts >= 2
    assert [w.message for w in caught] == []


async def test_the_applications_own_hash_is_not_reported(app_sidecar: ServedBridge, tmp_path: Path) -> None:
    # What the application publishes for its types: its registry's document, written by
    # bridge.schemas as `bridge schemas` writes a stock server's (a built registry is needed
    # for bridge's own channels: a started bridge's).
    example = load_example()
    running = await bridge.start_bridge(
        bridge.BridgeOptions(
            data_dir=tmp_path / "gen",
            secrets=bridge.SecretOptions(backend=SecretBackend.FILE),
            transport=bridge.TransportOptions(port=0),
        ),
        example.build_registry(),
    )
    try:
        document, digest = app.published_document(running.registry)
        assert running.schema_hash() == digest
    finally:
        await running.close()
    out = tmp_path / "app-schemas"
    assert schemas.write_schemas(out, channels=running.registry.channels, topics=running.registry.topics) == 0
    file_hash = "sha256:" + hashlib.sha256((out / schemas.OPENRPC_FILE).read_bytes()).hexdigest()
    assert file_hash == digest == schemas.schema_hash(document)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with BridgeClient(app_sidecar.url, app_sidecar.token, schema_hash=file_hash) as client:
            assert (await client.hello()).schema_hash == file_hash
            assert client.schema_mismatch is None
    assert [w.message for w in caught] == []


async def test_under_warnings_as_errors_the_connection_proceeds_and_the_mismatch_is_raised_at_the_call(
    app_sidecar: ServedBridge,
) -> None:
    client = BridgeClient(app_sidecar.url, app_sidecar.token)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(SchemaMismatchWarning):
                await client.connect()
        # Raised after the connection was made and marked connected: it is open and serves.
        await client.wait_connected(timeout_s=0)
        assert await client.invoke("app:echo", {"text": "on"}) == {"text": "on", "length": 2}
        assert client.schema_mismatch is not None
    finally:
        await client.close()


async def test_the_warning_points_at_the_callers_line(app_sidecar: ServedBridge) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = BridgeClient(app_sidecar.url, app_sidecar.token)
        await client.connect()
        await client.close()
        async with BridgeClient(app_sidecar.url, app_sidecar.token):
            pass
    assert [(w.category, w.filename) for w in caught] == [(SchemaMismatchWarning, __file__)] * 2


async def test_with_reconnect_under_warnings_as_errors_the_mismatch_is_raised_once_per_hash(
    app_sidecar: ServedBridge,
) -> None:
    client = BridgeClient(app_sidecar.url, app_sidecar.token, reconnect=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("error")
            with pytest.raises(SchemaMismatchWarning):
                await client.connect()
            warnings.simplefilter("always")  # recorded from here on
            await client.wait_connected(timeout_s=10)
            attempts = client.attempts
            assert client._ws is not None
            await client._ws.close()
            await client.wait_connected(timeout_s=10)
            await client.hello()  # reconnected and checked again: the same hash, not warned again
        assert client.attempts > attempts
        assert caught == []
    finally:
        await client.close()


async def test_a_client_taking_the_announced_hash_warns_only_when_a_later_server_differs(
    app_sidecar: ServedBridge, sidecar: ServedBridge
) -> None:
    servers = [app_sidecar, sidecar]

    def provider() -> ConnectionInfo:
        return ConnectionInfo(servers[0].url, servers[0].token)

    seen: list[SchemaMismatchWarning] = []
    with warnings.catch_warnings(record=True) as caught, capture_logs() as logs:
        warnings.simplefilter("always")
        client = BridgeClient(
            provider=provider, reconnect=True, schema_hash=ANNOUNCED_SCHEMA, on_schema_mismatch=seen.append
        )
        async with client:
            announced = (await client.hello()).schema_hash
            assert await client.invoke("app:echo", {"text": "own"}) == {"text": "own", "length": 3}
            assert client.schema_mismatch is None
            # The application's server is replaced by another (here a stock one) while connected.
            servers.pop(0)
            assert client._ws is not None
            await client._ws.close()
            await client.wait_connected(timeout_s=10)
            assert (await client.hello()).schema_hash == builtin_schema_hash()
    assert announced != builtin_schema_hash()
    assert [(m.expected, m.actual) for m in seen] == [(announced, builtin_schema_hash())]
    assert [w.message for w in caught] == []
    assert [(e["expected"], e["actual"]) for e in logs if e["event"] == "schema_hash_mismatch"] == [
        (announced, builtin_schema_hash())
    ]


async def test_a_client_taking_the_announced_hash_of_an_application_sidecar_is_not_reported(
    app_sidecar: ServedBridge,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with BridgeClient(app_sidecar.url, app_sidecar.token, schema_hash=ANNOUNCED_SCHEMA) as client:
            assert await client.invoke("app:echo", {"text": "x"}) == {"text": "x", "length": 1}
            assert client.schema_mismatch is None
    assert [w.message for w in caught] == []
