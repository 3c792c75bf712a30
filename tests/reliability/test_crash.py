"""Crash durability: ``bridge serve`` SIGKILLed under load keeps every acknowledged write.

Several clients run creates, updates and deletes against a ``bridge serve`` subprocess;
at a random moment (after a random number of acknowledged writes, plus jitter) the
process is SIGKILLed. Then, on the same data directory, an in-process store checks:

- every acknowledged write is there (content, version and API key exactly as acked);
- the one write per client that was in flight is either fully applied or not at all;
- nothing else exists; ``PRAGMA integrity_check`` is ``ok``; every key decrypts to the
  key that was sent; WAL and ``synchronous=FULL`` on the store's connection.

SIGKILL proves durability after a *process* crash (the OS still flushes its page cache),
not after power loss. Rounds: 5 in CI, 200 with ``BRIDGE_RELIABILITY=long``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.client import BridgeClient
from bridge.errors import BridgeError, ConnectionLostError
from bridge.keystore import KeyCipher, SecretBackend, load_data_key
from bridge.service import LlmConfigService
from bridge.storage import SqliteConfigStore
from tests.conftest import start_bridge_process
from tests.reliability.helpers import CRASH_ROUNDS, RUN_TIMEOUT_S, SEED, config_input, random_key, record

pytestmark = pytest.mark.reliability

WRITERS = 4
MAX_OPS_PER_ROUND = 400  # bound per writer; the kill normally comes far earlier


@dataclass(frozen=True)
class State:
    """What a config must look like: name, provider, plaintext key, version."""

    name: str
    provider: str
    key: str
    version: int


@dataclass
class Pending:
    """The write a writer had sent when the server died (its outcome is unknown)."""

    kind: str
    config_id: str | None
    before: State | None
    after: State | None


@dataclass
class Writer:
    """One client's view of the configs it owns (nobody else writes them)."""

    index: int
    rng: random.Random
    known: dict[str, State] = field(default_factory=dict)
    pending: Pending | None = None
    serial: int = 0
    acked: int = 0

    def _name(self) -> str:
        self.serial += 1
        return f"w{self.index}-{self.serial}"

    async def run(self, client: BridgeClient, acks: list[int], enough: asyncio.Event) -> None:
        for _ in range(MAX_OPS_PER_ROUND):
            try:
                await self._one(client)
            except ConnectionLostError:
                return  # the server was killed: self.pending holds the unknown write
            acks[0] += 1
            if acks[0] >= acks[1]:
                enough.set()

    async def _one(self, client: BridgeClient) -> None:
        roll = self.rng.random()
        if not self.known or roll < 0.4 or (len(self.known) < 3 and roll < 0.7):
            config = config_input(self.rng, self._name())
            after = State(config["customName"], config["provider"], config["apiKey"], 1)
            self.pending = Pending("create", None, None, after)
            view = await client.create_config(config)
            assert view.version == 1
            self.known[view.id] = after
        elif roll < 0.8:
            config_id = self.rng.choice(list(self.known))
            before = self.known[config_id]
            updates: dict[str, str] = {"customName": self._name()}
            key = before.key
            if self.rng.random() < 0.5:
                key = random_key(self.rng, before.provider)
                updates["apiKey"] = key
            after = State(updates["customName"], before.provider, key, before.version + 1)
            self.pending = Pending("update", config_id, before, after)
            view = await client.update_config(config_id, updates, expected_version=before.version)
            assert (view.custom_name, view.version) == (after.name, after.version)
            self.known[config_id] = after
        else:
            config_id = self.rng.choice(list(self.known))
            before = self.known[config_id]
            self.pending = Pending("delete", config_id, before, None)
            assert await client.delete_config(config_id, expected_version=before.version) is True
            del self.known[config_id]
        self.pending = None
        self.acked += 1


async def open_store(data_dir: Path) -> tuple[LlmConfigService, SqliteConfigStore]:
    store = SqliteConfigStore(data_dir / "bridge.db")
    await store.open()
    key = load_data_key(data_dir, SecretBackend.FILE, must_exist=await store.has_ciphertexts())
    return LlmConfigService(store, KeyCipher(key), watch=False), store


async def pragma(store: SqliteConfigStore, name: str) -> object:
    return await store._run(lambda c: c.execute(f"PRAGMA {name}").fetchone()[0])


async def check_and_resolve(data_dir: Path, writers: list[Writer]) -> int:
    """Check the store against every writer's acknowledged state; adopt in-flight outcomes.

    Returns the number of in-flight writes that turned out to be applied.
    """
    service, store = await open_store(data_dir)
    try:
        assert await pragma(store, "integrity_check") == "ok"
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "synchronous") == 2  # FULL, on this very connection
        views = {view.id: view for view in await service.list()}
        actual: dict[str, State] = {}
        for config_id, view in views.items():
            key = await service.get_api_key(config_id)  # decrypts with the data key on disk
            assert key is not None
            actual[config_id] = State(view.custom_name, view.provider.value, key, view.version)
        unclaimed = dict(actual)
        applied = 0
        for writer in writers:
            pending = writer.pending
            for config_id, state in writer.known.items():
                if pending is not None and pending.config_id == config_id:
                    continue
                assert unclaimed.pop(config_id, None) == state, f"acked write lost: {config_id}"
            if pending is None:
                continue
            if pending.kind == "create":
                assert pending.after is not None
                match = [cid for cid, s in unclaimed.items() if s.name == pending.after.name]
                if match:
                    assert unclaimed.pop(match[0]) == pending.after  # fully applied, never half
                    writer.known[match[0]] = pending.after
                    applied += 1
            else:
                assert pending.config_id is not None
                got = unclaimed.pop(pending.config_id, None)
                assert got in (pending.before, pending.after), f"half-applied {pending.kind}"
                if got != pending.before:
                    applied += 1
                if got is None:
                    writer.known.pop(pending.config_id, None)
                else:
                    writer.known[pending.config_id] = got
            writer.pending = None
        assert unclaimed == {}, f"configs nobody wrote: {sorted(unclaimed)}"
        return applied
    finally:
        await service.close()
        await store.close()


async def crash_round(data_dir: Path, writers: list[Writer], rng: random.Random) -> None:
    served = start_bridge_process(data_dir)
    clients: list[BridgeClient] = []
    try:
        probe = BridgeClient(served.url, served.token)
        await probe.connect()
        hello = await probe.hello()
        assert hello.recovered_from is None  # a crash is not corruption: nothing quarantined
        await probe.close()
        for _ in writers:
            client = BridgeClient(served.url, served.token)
            await client.connect()
            clients.append(client)
        acks = [0, rng.randint(1, 60)]
        enough = asyncio.Event()
        tasks = [asyncio.create_task(w.run(c, acks, enough)) for w, c in zip(writers, clients, strict=True)]
        waiter = asyncio.create_task(enough.wait())
        async with asyncio.timeout(60):
            await asyncio.wait([waiter, *tasks], return_when="FIRST_COMPLETED")
        waiter.cancel()
        await asyncio.sleep(rng.random() * 0.02)  # jitter: kill between and inside transactions
        served.process.send_signal(signal.SIGKILL)
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    finally:
        assert served.stop(signal.SIGKILL) == -signal.SIGKILL
        for client in clients:
            with contextlib.suppress(BridgeError, OSError):
                await client.close()


@pytest.mark.timeout(RUN_TIMEOUT_S)
async def test_sigkill_under_load_loses_no_acknowledged_write_and_half_applies_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    writers = [Writer(i, random.Random(rng.random())) for i in range(WRITERS)]
    data_dir = tmp_path / "data"
    in_flight_applied = in_flight_total = 0
    for _ in range(CRASH_ROUNDS):
        await crash_round(data_dir, writers, rng)
        in_flight_total += sum(w.pending is not None for w in writers)
        in_flight_applied += await check_and_resolve(data_dir, writers)
    acked = sum(w.acked for w in writers)
    assert acked >= CRASH_ROUNDS  # every round acknowledged at least one write
    record(
        "crash",
        rounds=CRASH_ROUNDS,
        acked_writes=acked,
        in_flight_at_kill=in_flight_total,
        in_flight_applied=in_flight_applied,
        configs_at_end=sum(len(w.known) for w in writers),
    )


async def test_store_connection_runs_wal_with_synchronous_full(tmp_path: Path) -> None:
    _, store = await open_store(tmp_path)
    try:
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "synchronous") == 2  # FULL; per connection, so this one's
        assert await pragma(store, "busy_timeout") == 5000
    finally:
        await store.close()
