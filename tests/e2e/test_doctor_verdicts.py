"""``bridge doctor`` gives the server's own verdicts on rows another program edited (DESIGN §3).

Real files and real processes: a ``bridge serve`` (or the prompt-template example's
sidecar) writes the rows, ``sqlite3`` edits them as a user would in its shell, the doctor
runs as a subprocess (``python -m bridge doctor``, or the example's own CLI: ``python -m
tests.helpers.templates doctor``, i.e. ``bridge.cli.main(registry=...)``), and then the
server starts on the same files: what it quarantines and repairs is what the doctor said.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from bridge.client import BridgeClient
from tests.conftest import openai_config, start_bridge_process
from tests.helpers import webhook_app
from tests.helpers.templates import ROOT, load_example, running

TIMEOUT_S = 60


async def doctor(data: Path, module: str = "bridge") -> tuple[int, dict[str, Any], str]:
    """Run ``python -m MODULE doctor`` on ``data``: exit code, its one JSON line, all it printed."""
    command = [sys.executable, "-m", module, "doctor", "--data-dir", str(data), "--secret-backend", "file"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=TIMEOUT_S, env=env
    )
    (line,) = done.stdout.splitlines()
    return done.returncode, json.loads(line), done.stdout + done.stderr


async def seed_configs(data: Path, *names: str) -> list[str]:
    """Create an OpenAI config per name with a real ``bridge serve``; return their ids."""
    served = start_bridge_process(data)
    try:
        async with BridgeClient(served.url, served.token) as client:
            return [(await client.create_config(openai_config(name))).id for name in names]
    finally:
        served.stop()


def rename(db: Path, config_id: str, name: str) -> None:
    """``UPDATE configs SET custom_name = …`` as in the sqlite3 shell: the name key is left stale."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("UPDATE configs SET custom_name = ? WHERE id = ?", (name, config_id))
    finally:
        conn.close()


async def served_state(data: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Start ``bridge serve`` on ``data``: hello's ``quarantined`` and each served config's version."""
    served = start_bridge_process(data)
    try:
        async with BridgeClient(served.url, served.token) as client:
            hello = await client.invoke("bridge:hello")
            configs = await client.invoke("llm-config:list")
            return hello["quarantined"], {c["id"]: c["version"] for c in configs}
    finally:
        served.stop()


async def test_doctor_reports_a_renamed_config_as_repaired_at_start_and_exits_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    alpha, gamma = await seed_configs(data, "Alpha", "Gamma")
    rename(data / "bridge.db", gamma, "Gamma2")
    before = (data / "bridge.db").read_bytes()
    code, report, printed = await doctor(data)
    assert code == 0, printed
    assert report["quarantined"] == []
    assert report["repairs"] == [{"id": gamma, "reason": "STALE_DERIVED_FIELDS"}]
    assert (data / "bridge.db").read_bytes() == before
    # The server does what the doctor said: nothing held, Gamma rewritten (edit + repair).
    quarantined, versions = await served_state(data)
    assert quarantined == []
    assert versions == {alpha: 1, gamma: 3}


async def test_doctor_reports_a_config_renamed_onto_another_name_as_the_servers_name_conflict(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    alpha, beta = await seed_configs(data, "Alpha", "Beta")
    rename(data / "bridge.db", beta, "ALPHA")
    before = (data / "bridge.db").read_bytes()
    code, report, printed = await doctor(data)
    assert code == 1, printed
    assert report["quarantined"] == [{"id": beta, "reason": "NAME_CONFLICT"}]
    assert report["repairs"] == []
    assert "STALE_DERIVED_FIELDS" not in printed
    assert (data / "bridge.db").read_bytes() == before
    quarantined, versions = await served_state(data)
    assert quarantined == report["quarantined"]
    assert versions == {alpha: 1}


def edit_items(db: Path, *edits: tuple[str, Any, str]) -> None:
    """``UPDATE items SET data = json_set(data, PATH, VALUE) WHERE id = ?`` per ``(path, value, id)``."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for path, value, item_id in edits:
            conn.execute("UPDATE items SET data = json_set(data, ?, ?) WHERE id = ?", (path, value, item_id))
    finally:
        conn.close()


async def test_an_applications_own_cli_doctor_applies_its_collections_rules_as_the_server_does(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    example = load_example()
    async with running(data) as served:
        templates = served.collections["prompt-template"]
        made = [
            await templates.create(example.PromptTemplate(name=name, template=f"{name}: {{text}}"))
            for name in ("One", "Two", "Three", "Four", "Five")
        ]
    one, two, three, four, five = (item.id for item in made)
    # By hand: a unique name differing only by case, a name of spaces, a number for a text.
    edit_items(
        data / "collections.db",
        ("$.name", "one", two),
        ("$.name", "   ", three),
        ("$.template", 42, four),
    )
    before = (data / "collections.db").read_bytes()
    code, report, printed = await doctor(data, "tests.helpers.templates")
    assert code == 1, printed
    expected = [
        {"collection": "prompt-template", "id": two, "reason": "NAME_CONFLICT"},
        {"collection": "prompt-template", "id": three, "reason": "name.INVALID_LENGTH"},
        {"collection": "prompt-template", "id": four, "reason": "template.INVALID_FORMAT"},
    ]
    assert report["collections"]["quarantined"] == expected
    assert report["collectionRules"] == {"model": ["prompt-template"], "storedForm": []}
    # Plain ``bridge doctor`` has no definitions: it says so and finds none of these.
    code, plain, printed = await doctor(data)
    assert code == 0, printed
    assert plain["collections"]["quarantined"] == []
    assert plain["collectionRules"]["storedForm"] == ["prompt-template"]
    assert "application's own CLI" in plain["collectionRules"]["note"]
    assert (data / "collections.db").read_bytes() == before
    # The server, with the same definitions, holds exactly those rows for the same reasons.
    async with running(data) as served:
        templates = served.collections["prompt-template"]
        assert templates.quarantined() == {q["id"]: q["reason"] for q in expected}
        assert [view.id for view in templates.list()] == [one, five]


async def test_of_two_configs_renamed_onto_one_new_name_the_newer_is_held_by_doctor_and_server(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    alpha, beta, gamma = await seed_configs(data, "Alpha", "Beta", "Gamma")
    rename(data / "bridge.db", gamma, "delta")
    rename(data / "bridge.db", beta, "Delta")
    code, report, printed = await doctor(data)
    assert code == 1, printed
    # Repairs run in creation order (DESIGN §3: a clash quarantines the newer row).
    assert report["repairs"] == [{"id": beta, "reason": "STALE_DERIVED_FIELDS"}]
    assert report["quarantined"] == [{"id": gamma, "reason": "NAME_CONFLICT"}]
    quarantined, versions = await served_state(data)
    assert quarantined == report["quarantined"]
    assert versions == {alpha: 1, beta: 3}


async def test_an_applications_cli_doctor_finds_a_plaintext_secret_no_row_holds_sealed_and_a_wrong_type(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running(data, webhook_app.build_registry()) as served:
        hooks = served.collections["hook"]
        made = [await hooks.create(webhook_app.Hook(url=f"https://{n}.example")) for n in "abc"]
    plain, wrong, kept = (item.id for item in made)
    # No row holds a token sealed: only the definitions tell that ``token`` is a secret.
    edit_items(data / "collections.db", ("$.token", "s3cr3t-in-clear", plain), ("$.retries", "three", wrong))
    code, report, printed = await doctor(data, "tests.helpers.webhook_app")
    assert code == 1, printed
    expected = [
        {"collection": "hook", "id": plain, "reason": "PLAINTEXT_SECRET"},
        {"collection": "hook", "id": wrong, "reason": "retries.INVALID_FORMAT"},
    ]
    assert report["collections"]["quarantined"] == expected
    assert "s3cr3t-in-clear" not in printed
    code, bare, _ = await doctor(data)
    assert (code, bare["collections"]["quarantined"]) == (0, [])
    async with running(data, webhook_app.build_registry()) as served:
        hooks = served.collections["hook"]
        assert hooks.quarantined() == {q["id"]: q["reason"] for q in expected}
        assert [view.id for view in hooks.list()] == [kept]
