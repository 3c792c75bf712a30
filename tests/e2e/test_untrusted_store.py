"""Damaged rows, forged changes and edits by other programs, through ``bridge serve`` (issue 16).

Each test damages a real store (SQLite file or PostgreSQL database) with plain SQL from
a connection of its own — what the ``sqlite3`` shell or a migration script does — and
checks over a real WebSocket connection that the server serves, every valid row is
there, no invalid content reaches a renderer, and the damaged row is still in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.client import BridgeClient
from bridge.errors import DuplicateConfigNameError
from tests.conftest import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    ServedBridge,
    openai_config,
    start_bridge_process,
    subscribe,
)
from tests.e2e.store_edits import OtherProgram, cipher_for, text

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Damage:
    """One rule violation: SQL per backend (``?`` is the victim's id) and the reason code."""

    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...] | None
    reason: str


_COPY_CT = (
    "UPDATE {configs} SET api_key_ct = (SELECT api_key_ct FROM {configs} WHERE custom_name = 'Good') "
    "WHERE id = ?"
)
DAMAGES = [
    Damage(
        "provider",
        ("UPDATE {configs} SET provider = 'bogus' WHERE id = ?",) * 1,
        None,
        "provider.INVALID_ENUM",
    ),
    Damage(
        "empty-name",
        ("UPDATE {configs} SET custom_name = '' WHERE id = ?",),
        None,
        "customName.INVALID_LENGTH",
    ),
    Damage(
        "javascript-url",
        ("UPDATE {configs} SET base_url = 'javascript:alert(1)' WHERE id = ?",),
        None,
        "baseUrl.INVALID_URL",
    ),
    Damage(
        "key-format",
        ("UPDATE {configs} SET provider = 'anthropic' WHERE id = ?",),
        None,
        "apiKey.API_KEY_FORMAT",
    ),
    Damage(
        "key-id",
        (
            (
                "UPDATE {configs} SET api_key_ct = CAST(zeroblob(8) || substr(api_key_ct, 9) AS BLOB) "
                "WHERE id = ?"
            ),
        ),
        (
            (
                "UPDATE {configs} SET api_key_ct = '\\x0000000000000000'::bytea "
                "|| substring(api_key_ct from 9) "
                "WHERE id = ?"
            ),
        ),
        "UNKNOWN_KEY_ID",
    ),
    Damage(
        "tampered-ciphertext",
        (
            (
                "UPDATE {configs} SET api_key_ct = "
                "CAST(substr(api_key_ct, 1, 20) || zeroblob(length(api_key_ct) - 20) AS BLOB) WHERE id = ?"
            ),
        ),
        (
            (
                "UPDATE {configs} SET api_key_ct = substring(api_key_ct from 1 for 20) "
                "|| decode(repeat('00', length(api_key_ct) - 20), 'hex') WHERE id = ?"
            ),
        ),
        "CIPHERTEXT_AUTH_FAILED",
    ),
    Damage("copied-ciphertext", (_COPY_CT,), None, "CIPHERTEXT_AUTH_FAILED"),
    Damage(
        "created-at",
        ("UPDATE {configs} SET created_at = 'yesterday' WHERE id = ?",),
        None,
        "createdAt.INVALID_FORMAT",
    ),
    # SQLite only: PostgreSQL's column types and UTF-8 encoding refuse these values.
    Damage(
        "undecodable-name",
        ("UPDATE {configs} SET custom_name = CAST(X'FF4142' AS TEXT) WHERE id = ?",),
        (),
        "UNDECODABLE_TEXT",
    ),
    Damage(
        "text-version",
        ("DROP TRIGGER bridge_configs_counters", "UPDATE {configs} SET version = 'abc' WHERE id = ?"),
        (),
        "version.INVALID_FORMAT",
    ),
    Damage(
        "auth-header",
        ("UPDATE {configs} SET use_auth_header = 7 WHERE id = ?",),
        (),
        "useAuthHeader.INVALID_FORMAT",
    ),
]


def statements(damage: Damage, backend: str) -> tuple[str, ...]:
    if backend == "sqlite" or damage.postgresql is None:
        return damage.sqlite
    return damage.postgresql


def on_backends(damages: list[Damage]) -> pytest.MarkDecorator:
    """Parametrize ``store_backend`` × ``damage``; PostgreSQL only where its types allow it."""
    cases = [
        pytest.param(backend, d, id=f"{backend}-{d.name}")
        for d in damages
        for backend in ("sqlite", "postgresql")
        if backend == "sqlite" or d.postgresql != ()
    ]
    return pytest.mark.parametrize(("store_backend", "damage"), cases, indirect=["store_backend"])


@dataclass
class Seeded:
    good: str
    victim: str
    other: str


async def seed(served: ServedBridge) -> Seeded:
    async with BridgeClient(served.url, served.token) as client:
        good = await client.create_config(openai_config("Good"))
        victim = await client.create_config(openai_config("Victim"))
        other = await client.create_config(
            {"customName": "Other", "provider": "anthropic", "apiKey": ANTHROPIC_KEY}
        )
    return Seeded(good.id, victim.id, other.id)


async def seed_stopped(data: Path, *backend_args: str) -> Seeded:
    """Serve ``data``, :func:`seed` it and stop: a store to damage while nothing serves it."""
    with start_bridge_process(data, *backend_args) as first:
        return await seed(first)


@asynccontextmanager
async def seeded_client(
    data: Path, *backend_args: str
) -> AsyncIterator[tuple[ServedBridge, Seeded, BridgeClient]]:
    """Serve ``data``, :func:`seed` it and connect a client; the process stops after the block."""
    with start_bridge_process(data, *backend_args) as served:
        ids = await seed(served)
        async with BridgeClient(served.url, served.token) as client:
            yield served, ids, client


@pytest.fixture
async def program(tmp_path: Path, store_backend: str, backend_args: list[str]) -> AsyncIterator[OtherProgram]:
    if store_backend == "sqlite":
        yield OtherProgram(db=tmp_path / "data" / "bridge.db")
    else:
        yield OtherProgram(dsn=backend_args[backend_args.index("--store") + 1])


async def stored_row(program: OtherProgram, config_id: str) -> tuple[Any, ...] | None:
    rows = await program.fetch(
        "SELECT id, custom_name, provider, api_key_ct, base_url, use_auth_header, created_at FROM {configs} "
        "WHERE id = ?",
        config_id,
    )
    return rows[0] if rows else None


@on_backends(DAMAGES)
async def test_row_breaking_a_rule_is_quarantined_at_start_up(
    tmp_path: Path, backend_args: list[str], program: OtherProgram, damage: Damage
) -> None:
    data = tmp_path / "data"
    ids = await seed_stopped(data, *backend_args)
    for sql in statements(damage, program.backend):
        await program.execute(sql, *([ids.victim] if "?" in sql else []))
    damaged = await stored_row(program, ids.victim)
    assert damaged is not None

    with start_bridge_process(data, *backend_args) as served:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.invoke("bridge:hello")
            assert hello["quarantined"] == [{"id": ids.victim, "reason": damage.reason}]
            listed = await client.invoke("llm-config:list")
            assert [c["id"] for c in listed] == [ids.good, ids.other]
            assert await client.invoke("llm-config:read", {"id": ids.victim}) is None
            snapshot = await client.invoke("llm-config:snapshot")
            assert ids.victim not in orjson.dumps(snapshot).decode()
            # Its name stays reserved.
            with pytest.raises(DuplicateConfigNameError):
                await client.create_config(openai_config("Victim"))
            # Untouched in the store.
            assert await stored_row(program, ids.victim) == damaged
            # Delete removes it.
            assert await client.delete_config(ids.victim) is True
            hello = await client.invoke("bridge:hello")
            assert hello["quarantined"] == []
            assert await stored_row(program, ids.victim) is None
            await client.create_config(openai_config("Victim"))
    assert "Traceback" not in served.log_text()
    if damage.reason == "CIPHERTEXT_AUTH_FAILED":
        assert '"security_event"' in served.log_text()


async def wait_for(events: asyncio.Queue[dict[str, Any]], predicate: Any) -> list[dict[str, Any]]:
    """Collect events until one satisfies ``predicate``; every one is returned."""
    seen: list[dict[str, Any]] = []
    while not seen or not predicate(seen[-1]):
        seen.append(await asyncio.wait_for(events.get(), TIMEOUT_S))
    return seen


RUNNING_DAMAGES = [
    d for d in DAMAGES if d.name in {"provider", "javascript-url", "tampered-ciphertext", "undecodable-name"}
]


@on_backends(RUNNING_DAMAGES)
async def test_row_going_bad_while_served_is_sent_as_deleted_and_a_valid_update_restores_it(
    tmp_path: Path, backend_args: list[str], program: OtherProgram, damage: Damage
) -> None:
    async with seeded_client(tmp_path / "data", *backend_args) as (_, ids, client):
        events = subscribe(client)
        for sql in statements(damage, program.backend):
            await program.execute(sql, *([ids.victim] if "?" in sql else []))
        seen = await wait_for(events, lambda e: e["id"] == ids.victim)
        assert seen[-1]["type"] == "deleted"
        assert all("config" not in e or e["id"] != ids.victim for e in seen)
        hello = await client.invoke("bridge:hello")
        assert hello["quarantined"] == [{"id": ids.victim, "reason": damage.reason}]
        assert [c["id"] for c in await client.invoke("llm-config:list")] == [ids.good, ids.other]
        assert await stored_row(program, ids.victim) is not None

        # A patch whose merged row is valid restores it: renderers get "created".
        fixed = await client.update_config(
            ids.victim,
            {"customName": "Victim again", "provider": "openai", "apiKey": OPENAI_KEY, "baseUrl": None},
        )
        seen = await wait_for(events, lambda e: e["id"] == ids.victim)
        assert seen[-1]["type"] == "created"
        assert seen[-1]["config"]["customName"] == "Victim again"
        assert fixed.custom_name == "Victim again"
        hello = await client.invoke("bridge:hello")
        assert hello["quarantined"] == []
        assert [c["id"] for c in await client.invoke("llm-config:list")] == [
            ids.good,
            ids.victim,
            ids.other,
        ]


async def test_hello_reports_cache_count_and_bytes(served: ServedBridge) -> None:
    async with BridgeClient(served.url, served.token) as client:
        empty = (await client.invoke("bridge:hello"))["cache"]
        await client.create_config(openai_config("One"))
        await client.create_config(openai_config("Two"))
        cache = (await client.invoke("bridge:hello"))["cache"]
    assert empty == {"count": 0, "bytes": 0}
    assert cache["count"] == 2
    assert cache["bytes"] > 2 * len(OPENAI_KEY)


# ---- edits by other programs ----------------------------------------------------------


def key_file_of(tmp_path: Path, backend_args: list[str]) -> Path:
    if "--data-key-file" in backend_args:
        return Path(backend_args[backend_args.index("--data-key-file") + 1])
    return tmp_path / "data" / "bridge.key"


_INSERT = (
    "INSERT INTO {configs} (id, custom_name, name_key, provider, api_key_ct, api_key_preview, base_url, "
    "use_auth_header, created_at, updated_at, version) VALUES (?, ?, ?, 'openai', ?, 'sk-...9j0', NULL, ?, "
    "'2026-01-02T03:04:05.678Z', '2026-01-02T03:04:05.678Z', 1)"
)


async def test_insert_update_delete_by_another_program_are_sent_in_order_with_fresh_revisions(
    tmp_path: Path, backend_args: list[str], program: OtherProgram
) -> None:
    async with seeded_client(tmp_path / "data", *backend_args) as (served, ids, client):
        cipher = cipher_for(key_file_of(tmp_path, backend_args))
        new_id = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
        events = subscribe(client)
        start = (await client.invoke("bridge:hello"))["revision"]

        await program.execute(
            _INSERT,
            new_id,
            "Imported",
            "imported",
            cipher.encrypt(OPENAI_KEY, new_id),
            True,  # noqa: FBT003
        )
        created = (await wait_for(events, lambda e: e["id"] == new_id))[-1]
        assert created["type"] == "created"
        assert created["config"]["customName"] == "Imported"
        assert created["revision"] == start + 1

        await program.execute("UPDATE {configs} SET use_auth_header = ? WHERE id = ?", False, ids.good)  # noqa: FBT003
        updated = (await wait_for(events, lambda e: e["id"] == ids.good))[-1]
        assert updated["type"] == "updated"
        assert updated["config"]["useAuthHeader"] is False
        assert updated["config"]["version"] == 2
        assert updated["revision"] == start + 2

        # A rename that leaves the name key stale: bridge recomputes the key through
        # the write path before serving the row (the repair's revision follows the tool's).
        await program.execute("UPDATE {configs} SET custom_name = 'Renamed By Tool' WHERE id = ?", ids.other)
        renamed = await wait_for(events, lambda e: e["id"] == ids.other)
        assert [(e["config"]["customName"], e["config"]["version"], e["revision"]) for e in renamed] == [
            ("Renamed By Tool", 3, start + 4)
        ]
        [(key,)] = await program.fetch("SELECT name_key FROM {configs} WHERE id = ?", ids.other)
        assert text(key) == "renamed by tool"
        with pytest.raises(DuplicateConfigNameError):
            await client.create_config(openai_config("RENAMED by tool"))

        # A rename onto another row's name: the newer row is quarantined.
        await program.execute("UPDATE {configs} SET custom_name = 'GOOD' WHERE id = ?", new_id)
        clash = await wait_for(events, lambda e: e["id"] == new_id and e["type"] == "deleted")
        assert all(e.get("config", {}).get("customName") != "GOOD" for e in clash)
        hello = await client.invoke("bridge:hello")
        assert hello["quarantined"] == [{"id": new_id, "reason": "NAME_CONFLICT"}]
        assert await stored_row(program, new_id) is not None

        await program.execute("DELETE FROM {configs} WHERE id = ?", ids.victim)
        deleted = (await wait_for(events, lambda e: e["id"] == ids.victim))[-1]
        assert deleted["type"] == "deleted"
        listed = await client.invoke("llm-config:list")
        assert [c["id"] for c in listed] == [ids.good, ids.other]
        assert listed[0]["useAuthHeader"] is False
        assert listed[1]["customName"] == "Renamed By Tool"
    assert "Traceback" not in served.log_text()


# ---- the change log is untrusted --------------------------------------------------------


async def test_forged_and_undecodable_change_log_entries_never_reach_a_renderer(
    tmp_path: Path, backend_args: list[str], program: OtherProgram
) -> None:
    async with seeded_client(tmp_path / "data", *backend_args) as (_, ids, client):
        events = subscribe(client)
        forged_id = "11111111-2222-4333-8444-555555555555"
        bad_row = orjson.dumps(["not", "a", "row"])
        forged = (
            orjson.dumps([forged_id, "Forged", "forged", "openai", "00", "x", None, 1, "a", "b", 1, 0])
            if program.backend == "sqlite"
            else orjson.dumps(
                {
                    "id": forged_id,
                    "custom_name": "Forged",
                    "name_key": "forged",
                    "provider": "bogus",
                    "api_key_ct": "00",
                    "api_key_preview": "x",
                    "base_url": None,
                    "use_auth_header": True,
                    "created_at": "a",
                    "updated_at": "b",
                    "version": 1,
                    "revision": 0,
                }
            )
        )
        # A forger takes the next revisions as a real writer would, then logs junk.
        entries = (
            (ids.good, "created", b"\xff\xfe not json"),
            (ids.good, "updated", bad_row),
            (forged_id, "created", forged),
            (ids.victim, "deleted", None),  # a valid row the table still holds
        )
        for entry_id, kind, row in entries:
            [(revision,)] = await program.fetch("SELECT revision FROM {meta} WHERE id = 1")
            await program.execute("UPDATE {meta} SET revision = revision + 1 WHERE id = 1")
            await program.execute(
                "INSERT INTO {changes} (revision, id, type, row) VALUES (?, ?, ?, ?)",
                revision + 1,
                entry_id,
                kind,
                row,
            )
        # The follower still follows: a real edit arrives, and nothing forged came before it.
        await program.execute("UPDATE {configs} SET use_auth_header = ? WHERE id = ?", False, ids.other)  # noqa: FBT003
        seen = await wait_for(events, lambda e: e["id"] == ids.other)
        assert all(e["id"] not in {forged_id, ids.victim} for e in seen)
        assert all(e.get("config", {}).get("customName") != "Forged" for e in seen)
        # Writes and refresh-cache still work (they answered 5000 for good before).
        view = await client.create_config(openai_config("After forgery"))
        assert (await client.invoke("llm-config:refresh-cache"))["count"] == 4
        listed = await client.invoke("llm-config:list")
        assert [c["id"] for c in listed] == [ids.good, ids.victim, ids.other, view.id]
        assert forged_id not in orjson.dumps(await client.invoke("bridge:hello")).decode()


# ---- structural damage --------------------------------------------------------------------


STRUCTURAL = {
    "revision-row-deleted": ("DELETE FROM {meta}",),
    "meta-table-dropped": ("DROP TABLE {meta}",),
    "change-log-dropped": ("DROP TABLE {changes}",),
}


@pytest.mark.parametrize("damage", list(STRUCTURAL), ids=list(STRUCTURAL))
async def test_structural_damage_that_loses_nothing_is_repaired_at_start_up(
    tmp_path: Path, backend_args: list[str], program: OtherProgram, damage: str
) -> None:
    data = tmp_path / "data"
    with start_bridge_process(data, *backend_args) as first:
        ids = await seed(first)
        async with BridgeClient(first.url, first.token) as client:
            revision = (await client.invoke("bridge:hello"))["revision"]
    for sql in STRUCTURAL[damage]:
        await program.execute(sql)

    with start_bridge_process(data, *backend_args) as served:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.invoke("bridge:hello")
            assert "recoveredFrom" not in hello
            assert hello["quarantined"] == []
            # The lost revision is recomputed from what the store holds: never lower.
            assert hello["revision"] >= revision - (1 if damage == "change-log-dropped" else 0)
            listed = await client.invoke("llm-config:list")
            assert [c["id"] for c in listed] == [ids.good, ids.victim, ids.other]
            events = subscribe(client)
            view = await client.create_config(openai_config("After repair"))
            created = (await wait_for(events, lambda e: e["id"] == view.id))[-1]
            assert created["revision"] > revision
    assert "cannot start" not in served.log_text()
    assert '"store_repaired"' in served.log_text()


async def test_revision_row_deleted_while_serving_is_recomputed_on_the_next_write(
    tmp_path: Path, backend_args: list[str], program: OtherProgram, store_backend: str
) -> None:
    async with seeded_client(tmp_path / "data", *backend_args) as (_, ids, client):
        revision = (await client.invoke("bridge:hello"))["revision"]
        await program.execute("DELETE FROM {meta}")
        events = subscribe(client)
        if store_backend == "postgresql":
            # The write path does not repair on PostgreSQL: refresh (a reload) does.
            await client.invoke("llm-config:refresh-cache")
        view = await client.create_config(openai_config("After loss"))
        created = (await wait_for(events, lambda e: e["id"] == view.id))[-1]
        assert created["revision"] == revision + 1
        listed = await client.invoke("llm-config:list")
        assert [c["id"] for c in listed] == [ids.good, ids.victim, ids.other, view.id]


async def test_dropped_configs_table_is_handled_as_a_corrupt_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await seed_stopped(data)
    program = OtherProgram(db=data / "bridge.db")
    await program.execute("DROP TABLE {configs}")
    with start_bridge_process(data) as served:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.invoke("bridge:hello")
            moved = Path(hello["recoveredFrom"])
            assert moved.exists()
            assert moved.name.startswith("bridge.db.corrupt-")
            assert await client.invoke("llm-config:list") == []
            await client.create_config(openai_config("Fresh start"))
    assert "TypeError" not in served.log_text()
    # The moved-aside file still holds what was there (its change log, its revision).
    kept = OtherProgram(db=moved)
    assert len(await kept.fetch("SELECT * FROM {changes}")) == 3


async def test_row_with_an_id_that_is_not_a_uuid_is_quarantined_at_start_up(
    tmp_path: Path, backend_args: list[str], program: OtherProgram
) -> None:
    data = tmp_path / "data"
    ids = await seed_stopped(data, *backend_args)
    await program.execute("UPDATE {configs} SET id = 'not-a-uuid' WHERE id = ?", ids.victim)
    with start_bridge_process(data, *backend_args) as served:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.invoke("bridge:hello")
            assert hello["quarantined"] == [{"id": "not-a-uuid", "reason": "id.INVALID_FORMAT"}]
            assert [c["id"] for c in await client.invoke("llm-config:list")] == [ids.good, ids.other]
            with pytest.raises(DuplicateConfigNameError):
                await client.create_config(openai_config("Victim"))
    assert await stored_row(program, "not-a-uuid") is not None
