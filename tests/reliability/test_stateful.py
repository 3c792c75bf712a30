"""Stateful property test: clients, restarts and a second process against a model dict.

A hypothesis ``RuleBasedStateMachine`` drives writes through several endpoints sharing
one data directory — two clients of an in-process server, a second in-process server
(its own store connection, cache and socket), and a ``bridge serve`` subprocess started
and stopped by rules — and restarts the first server. The model is a dict in creation
order plus the expected revision. After every step, every endpoint converges to the
model: its snapshot revision equals the model's and its list equals the model exactly
(other processes' commits arrive through the change feed within the poll interval).
At the end every stored key decrypts to the key the model holds. Few examples in CI,
more with ``BRIDGE_RELIABILITY=long``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridge.app import Bridge, BridgeOptions, SecretOptions, StoreOptions, start_bridge
from bridge.client import BridgeClient
from bridge.errors import ConfigNotFoundError, DuplicateConfigNameError, ValidationError, VersionConflictError
from bridge.keystore import SecretBackend
from tests.conftest import ServedBridge, start_bridge_process
from tests.reliability.helpers import LONG, RUN_TIMEOUT_S, STATEFUL_EXAMPLES, random_key, record

pytestmark = pytest.mark.reliability

NAMES = ["Alpha", "alpha", " ALPHA ", "Beta", "Straße", "STRASSE", "Gamma", "gamma "]
PROVIDERS = ["openai", "anthropic", "google", "custom"]
CONVERGE_S = 5.0
STATS = {"steps": 0, "examples": 0, "restarts": 0, "second_process_starts": 0}


def name_key(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip()).casefold()


@dataclass
class Entry:
    name: str
    provider: str
    key: str
    version: int


class BridgeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-stateful-"))
        self.model: dict[str, Entry] = {}
        self.revision = 0
        self.primary: Bridge = self.run(self._start())
        self.secondary: Bridge = self.run(self._start())
        self.clients: list[BridgeClient] = self.run(self._connect(self.primary, 2))
        self.second_clients: list[BridgeClient] = self.run(self._connect(self.secondary, 1))
        self.process: ServedBridge | None = None
        self.process_client: BridgeClient | None = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    async def _start(self) -> Bridge:
        options = BridgeOptions(
            data_dir=self.dir,
            secrets=SecretOptions(backend=SecretBackend.FILE),
            store=StoreOptions(poll_interval_s=0.05),
        )
        return await start_bridge(options)

    @staticmethod
    async def _connect(bridge: Bridge, count: int) -> list[BridgeClient]:
        clients = [BridgeClient(bridge.url, bridge.token) for _ in range(count)]
        for client in clients:
            await client.connect()
        return clients

    def endpoints(self) -> list[BridgeClient]:
        extra = [self.process_client] if self.process_client is not None else []
        return [*self.clients, *self.second_clients, *extra]

    def pick(self, via: int) -> BridgeClient:
        endpoints = self.endpoints()
        return endpoints[via % len(endpoints)]

    def pick_id(self, choice: int) -> str:
        ids = list(self.model)
        return ids[choice % len(ids)] if ids and choice >= 0 else str(uuid.UUID(int=abs(choice), version=4))

    def taken(self, name: str, but: str | None = None) -> bool:
        return any(name_key(e.name) == name_key(name) for cid, e in self.model.items() if cid != but)

    # ---- rules --------------------------------------------------------------------------------

    @rule(
        via=st.integers(0, 5),
        name=st.sampled_from(NAMES),
        provider=st.sampled_from(PROVIDERS),
        seed=st.integers(0, 2**32),
    )
    def create(self, via: int, name: str, provider: str, seed: int) -> None:
        key = random_key(random.Random(seed), provider)
        config: dict[str, Any] = {"customName": name, "provider": provider, "apiKey": key}
        if provider == "custom":
            config["baseUrl"] = "http://127.0.0.1:9/v1"
        client = self.pick(via)
        if self.taken(name):
            with pytest.raises(DuplicateConfigNameError):
                self.run(client.create_config(config))
            return
        view = self.run(client.create_config(config))
        assert (view.custom_name, view.version) == (name.strip(), 1)
        self.model[view.id] = Entry(name.strip(), provider, key, 1)
        self.revision += 1

    @rule(
        via=st.integers(0, 5),
        choice=st.integers(-3, 20),
        name=st.sampled_from(NAMES),
        new_key_seed=st.none() | st.integers(0, 2**32),
        version_delta=st.sampled_from([None, 0, 0, 1, -1]),
    )
    def update(
        self, via: int, choice: int, name: str, new_key_seed: int | None, version_delta: int | None
    ) -> None:
        cid = self.pick_id(choice)
        entry = self.model.get(cid)
        updates: dict[str, Any] = {"customName": name}
        provider = entry.provider if entry else "custom"
        if new_key_seed is not None:
            updates["apiKey"] = random_key(random.Random(new_key_seed), provider)
        expected = None if version_delta is None else (entry.version if entry else 1) + version_delta
        coro = self.pick(via).update_config(cid, updates, expected)
        if expected is not None and expected < 1:
            with pytest.raises(ValidationError):  # params schema first (DESIGN §4)
                self.run(coro)
        elif entry is None:
            with pytest.raises(ConfigNotFoundError):
                self.run(coro)
        elif expected is not None and expected != entry.version:
            with pytest.raises(VersionConflictError):
                self.run(coro)
        elif self.taken(name, but=cid):
            with pytest.raises(DuplicateConfigNameError):
                self.run(coro)
        else:
            view = self.run(coro)
            key = updates.get("apiKey", entry.key)
            changed = name.strip() != entry.name or key != entry.key
            if changed:
                self.model[cid] = Entry(name.strip(), provider, key, entry.version + 1)
                self.revision += 1
            assert (view.custom_name, view.version) == (self.model[cid].name, self.model[cid].version)

    @rule(via=st.integers(0, 5), choice=st.integers(-3, 20), version_delta=st.sampled_from([None, 0, 1]))
    def delete(self, via: int, choice: int, version_delta: int | None) -> None:
        cid = self.pick_id(choice)
        entry = self.model.get(cid)
        expected = None if version_delta is None else (entry.version if entry else 1) + version_delta
        coro = self.pick(via).delete_config(cid, expected)
        if entry is not None and expected is not None and expected != entry.version:
            with pytest.raises(VersionConflictError):
                self.run(coro)
            return
        assert self.run(coro) is (entry is not None)
        if entry is not None:
            del self.model[cid]
            self.revision += 1

    @rule()
    def restart_primary(self) -> None:
        STATS["restarts"] += 1
        for client in self.clients:
            self.run(client.close())
        self.run(self.primary.close())
        self.primary = self.run(self._start())
        self.clients = self.run(self._connect(self.primary, 2))

    @precondition(lambda self: self.process is None)
    @rule()
    def start_second_process(self) -> None:
        STATS["second_process_starts"] += 1
        self.process = start_bridge_process(
            self.dir, "--connection-file", str(self.dir.parent / f"{self.dir.name}.json")
        )
        self.process_client = BridgeClient(self.process.url, self.process.token)
        self.run(self.process_client.connect())

    @precondition(lambda self: self.process is not None)
    @rule()
    def stop_second_process(self) -> None:
        assert self.process is not None
        assert self.process_client is not None
        self.run(self.process_client.close())
        assert self.process.stop() == 0
        self.process = self.process_client = None

    # ---- invariant ----------------------------------------------------------------------------

    @invariant()
    def every_client_reads_the_model(self) -> None:
        STATS["steps"] += 1
        expected = [(cid, e.name, e.provider, e.version) for cid, e in self.model.items()]
        for client in self.endpoints():
            self.run(self._converged(client))
            got = [
                (v.id, v.custom_name, v.provider.value, v.version) for v in self.run(client.list_configs())
            ]
            assert got == expected

    async def _converged(self, client: BridgeClient) -> None:
        """Wait (bounded) until ``client``'s server has applied every commit of the model."""
        async with asyncio.timeout(CONVERGE_S):
            # Polls the server over the wire: there is no local event to wait on.
            while (await client.snapshot()).revision != self.revision:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    def teardown(self) -> None:
        try:
            for cid, entry in self.model.items():
                assert self.run(self.primary.service.get_api_key(cid)) == entry.key
        finally:
            for client in self.endpoints():
                with contextlib.suppress(Exception):
                    self.run(client.close())
            if self.process is not None:
                self.process.stop()
            for bridge in (self.primary, self.secondary):
                self.run(bridge.close())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.dir.parent / f"{self.dir.name}.json").unlink()


BridgeMachine.TestCase.settings = settings(
    max_examples=STATEFUL_EXAMPLES,
    stateful_step_count=25 if LONG else 12,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.timeout(RUN_TIMEOUT_S)
def test_clients_restarts_and_a_second_process_always_read_the_model() -> None:
    BridgeMachine.TestCase().runTest()
    assert STATS["examples"] >= STATEFUL_EXAMPLES
    record("stateful", **STATS)
