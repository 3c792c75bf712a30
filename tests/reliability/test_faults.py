"""Fault injection at every store step, end to end through a real socket (issue 7, item 2).

An in-process ``start_bridge`` server on 127.0.0.1 port 0; the fault goes into the very
store and cipher objects it uses: the store's connection is unavailable (open), or the
N-th SQL statement of the write transaction fails (``BEGIN IMMEDIATE`` … ``COMMIT``,
every statement in between), or encryption or decryption of the API key fails. For each:
the client gets 5000 ``CONFIG_OPERATION_FAILED``, no notification, the cache equals the
store and still equals the state before, and the same connection's next request works.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection

from bridge.app import Bridge
from bridge.storage import SqliteConfigStore
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, openai_config
from tests.e2e.wire import open_ws, recv_json, request, running_bridge

pytestmark = pytest.mark.reliability


class FaultyConnection:
    """Proxy of the store's ``sqlite3.Connection``: the ``fail_at``-th statement of the next
    write transaction raises (counted from its ``BEGIN IMMEDIATE``); 0 = count only."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.fail_at = 0
        self.statements: list[str] = []
        self._in_write = False

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if sql.startswith("BEGIN IMMEDIATE"):
            self._in_write = True
            self.statements = []
        if self._in_write:
            self.statements.append(" ".join(sql.split()[:2]))
            if len(self.statements) == self.fail_at:
                self.fail_at = 0
                self._in_write = False
                raise sqlite3.OperationalError("injected: disk I/O error")
            if sql in {"COMMIT", "ROLLBACK"}:
                self._in_write = False
        return self.conn.execute(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def close(self) -> None:
        self.conn.close()


def sqlite_store(bridge: Bridge) -> SqliteConfigStore:
    """The SQLite store the server uses (the default backend), typed for fault injection."""
    store = bridge.store
    assert isinstance(store, SqliteConfigStore)
    return store


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path / "data") as running:
        yield running


NOTES: dict[int, list[dict[str, Any]]] = {}


async def call(ws: ClientConnection, method: str, params: Any, request_id: int) -> dict[str, Any]:
    """Send one request; return its response. Notifications before it go to ``NOTES[id(ws)]``."""
    await ws.send(request(method, params, request_id))
    notes = NOTES.setdefault(id(ws), [])
    notes.clear()
    for _ in range(100):
        frame = await recv_json(ws)
        if "method" not in frame:
            assert frame.get("id") == request_id, frame
            return frame  # type: ignore[no-any-return]
        notes.append(frame)
    raise AssertionError("no response among 100 frames")


Op = Callable[[str], tuple[str, dict[str, Any]]]
OPS: dict[str, Op] = {
    "create": lambda _: ("llm-config:create", {"config": openai_config("Fresh")}),
    "update-name": lambda cid: ("llm-config:update", {"id": cid, "updates": {"customName": "Renamed"}}),
    "update-key": lambda cid: ("llm-config:update", {"id": cid, "updates": {"apiKey": OPENAI_KEY + "x"}}),
    "delete": lambda cid: ("llm-config:delete", {"id": cid, "expectedVersion": 1}),
}


async def state(bridge: Bridge) -> tuple[Any, dict[str, Any]]:
    report = await bridge.service.validate_cache()
    assert report["consistent"] is True, report
    return await bridge.service.snapshot(), report


async def assert_fault_answers_5000_and_changes_nothing(
    bridge: Bridge, ws: ClientConnection, op: str, target: str, arm: Callable[[], Awaitable[None] | None]
) -> None:
    before = await state(bridge)
    method, params = OPS[op](target)
    with capture_logs() as logs:
        maybe = arm()
        if maybe is not None:
            await maybe
        reply = await call(ws, method, params, 7)
    assert reply["error"]["code"] == 5000, reply
    assert NOTES[id(ws)] == []  # a failed write announces nothing
    assert reply["error"]["data"] == {"code": "CONFIG_OPERATION_FAILED", "name": "ConfigOperationFailedError"}
    assert any(entry["log_level"] == "error" for entry in logs)  # the cause goes to the log only
    assert await state(bridge) == before  # cache equals store, and both equal the state before
    # The server keeps serving, on the same connection.
    again = await call(ws, "llm-config:read", {"id": target}, 8)
    assert "result" in again


async def seeded(bridge: Bridge, ws: ClientConnection) -> str:
    reply = await call(ws, "llm-config:create", {"config": openai_config("Target")}, 1)
    await call(ws, "llm-config:create", {"config": openai_config("Other", apiKey=OPENAI_KEY[::-1])}, 2)
    del bridge
    return str(reply["result"]["id"])


async def count_statements(bridge: Bridge, op: str) -> list[str]:
    """The statements of one successful ``op`` (run on a throwaway config)."""
    ws = await open_ws(bridge)
    try:
        cid = (await call(ws, "llm-config:create", {"config": openai_config("Probe " + op)}, 1))["result"][
            "id"
        ]
        proxy = sqlite_store(bridge)._conn
        assert isinstance(proxy, FaultyConnection)
        method, params = OPS[op](cid)
        if op == "create":
            params["config"]["customName"] = "Probe create 2"
        reply = await call(ws, method, params, 2)
        assert "result" in reply, reply
        statements = list(proxy.statements)
        await call(ws, "llm-config:delete", {"id": cid}, 3)
        if op == "create":
            await call(ws, "llm-config:delete", {"id": reply["result"]["id"]}, 4)
        return statements
    finally:
        await ws.close()


@pytest.mark.parametrize("op", list(OPS))
async def test_failure_of_each_statement_of_a_write_answers_5000_and_keeps_cache_equal_to_store(
    bridge: Bridge, op: str
) -> None:
    real = sqlite_store(bridge)._conn
    assert real is not None
    proxy = FaultyConnection(real)
    sqlite_store(bridge)._conn = proxy  # type: ignore[assignment]
    statements = await count_statements(bridge, op)
    assert statements[0] == "BEGIN IMMEDIATE", statements
    assert statements[-1] == "COMMIT", statements
    assert len(statements) >= 5  # begin, revision, write, change log, feed…, commit
    ws = await open_ws(bridge)
    try:
        target = await seeded(bridge, ws)
        for index in range(1, len(statements) + 1):

            def arm(index: int = index) -> None:
                proxy.fail_at = index

            await assert_fault_answers_5000_and_changes_nothing(bridge, ws, op, target, arm)
        # With no fault armed, the same write now succeeds.
        method, params = OPS[op](target)
        assert "result" in await call(ws, method, params, 9) or op == "create"
    finally:
        await ws.close()


async def test_store_unavailable_answers_5000_for_every_write(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = await open_ws(bridge)
    try:
        target = await seeded(bridge, ws)
        real_run = sqlite_store(bridge)._run

        async def unopenable(_fn: Any) -> Any:
            monkeypatch.setattr(sqlite_store(bridge), "_run", real_run)  # fail once
            raise sqlite3.OperationalError("injected: unable to open database file")

        for op in OPS:
            await assert_fault_answers_5000_and_changes_nothing(
                bridge, ws, op, target, lambda: monkeypatch.setattr(sqlite_store(bridge), "_run", unopenable)
            )
    finally:
        await ws.close()


@pytest.mark.parametrize(
    ("step", "op"),
    [("encrypt", "create"), ("encrypt", "update-key"), ("decrypt", "update-name"), ("decrypt", "update-key")],
)
async def test_cipher_failure_answers_5000_and_changes_nothing(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, step: str, op: str
) -> None:
    cipher = bridge.service._cipher
    real = getattr(cipher, step)
    ws = await open_ws(bridge)
    try:
        target = await seeded(bridge, ws)

        def broken(*_args: Any) -> Any:
            monkeypatch.setattr(cipher, step, real)  # fail once
            raise ValueError("injected: key unavailable")

        await assert_fault_answers_5000_and_changes_nothing(
            bridge, ws, op, target, lambda: monkeypatch.setattr(cipher, step, broken)
        )
        assert await bridge.service.get_api_key(target) == OPENAI_KEY
    finally:
        await ws.close()


async def test_failed_write_sends_no_notification_to_other_connections(bridge: Bridge) -> None:
    watcher = await open_ws(bridge)
    writer = await open_ws(bridge)
    try:
        real = sqlite_store(bridge)._conn
        assert real is not None
        proxy = FaultyConnection(real)
        sqlite_store(bridge)._conn = proxy  # type: ignore[assignment]
        proxy.fail_at = 4
        reply = await call(
            writer,
            "llm-config:create",
            {"config": openai_config("A", apiKey=ANTHROPIC_KEY, provider="anthropic")},
            1,
        )
        assert reply["error"]["code"] == 5000
        ok = await call(writer, "llm-config:create", {"config": openai_config("B")}, 2)
        assert "result" in ok
        assert NOTES[id(writer)] != []  # the successful one was announced
        # The watcher's first frame is the notification of the successful write, not the failed one.
        first = await recv_json(watcher)
        assert (first["method"], first["params"]["id"], first["params"]["revision"]) == (
            "llm-config:changed",
            ok["result"]["id"],
            1,
        )
    finally:
        await watcher.close()
        await writer.close()
