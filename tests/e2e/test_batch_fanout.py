"""The notifications a batch causes leave together, and every ordering guarantee still holds.

While a batch frame runs, the server holds every notification (from any origin) and
writes the held list to every connection at once: when the batch ends, before any
response leaves any connection, at ``max_batch`` entries, or ``HOLD_MAX_S`` after the
first (``bridge/rpc/server.py``). These tests run an in-process bridge on a real
SQLite store and port 0. A batch is paused half-way by a channel of the application's
own (``test:gate``, which waits for the test) so what an observer has received at that
moment is known exactly: the observer is a raw socket that sends a WebSocket ping and
reads up to the pong, which the server writes after everything it wrote before it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection

from bridge import api
from bridge.app import Bridge, BridgeOptions, SecretOptions, TransportOptions, start_bridge
from bridge.keystore import SecretBackend
from bridge.rpc import server as rpc_server
from tests.conftest import openai_config
from tests.e2e.wire import (
    TIMEOUT,
    make_registry,
    masked_frame,
    open_ws,
    raw_socket,
    read_frame,
    recv_json,
    request,
)

UNKNOWN_ID = "9b2f7c7e-0000-4000-8000-000000000000"
OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA


class GateParams(BaseModel):
    """Which gate a ``test:gate`` request waits at."""

    gate: int


GATE: api.ChannelSpec[GateParams, int] = api.ChannelSpec(
    "test:gate", GateParams, int, "Waits until the test opens the gate; returns its number."
)
CANCELLED: api.ChannelSpec[GateParams, int] = api.ChannelSpec(
    "test:cancelled", GateParams, int, "Ends its request (and the batch it is in) cancelled."
)


class Gates:
    """``test:gate`` requests: each waits until the test opens its gate."""

    def __init__(self) -> None:
        self.entered: dict[int, asyncio.Event] = {}
        self.opened: dict[int, asyncio.Event] = {}

    def _pair(self, gate: int) -> tuple[asyncio.Event, asyncio.Event]:
        return self.entered.setdefault(gate, asyncio.Event()), self.opened.setdefault(gate, asyncio.Event())

    async def handler(self, params: GateParams) -> int:
        entered, opened = self._pair(params.gate)
        entered.set()
        await opened.wait()
        return params.gate

    async def reached(self, gate: int = 1) -> None:
        await asyncio.wait_for(self._pair(gate)[0].wait(), TIMEOUT)

    def open(self, gate: int = 1) -> None:
        self._pair(gate)[1].set()


async def cancelled(_: GateParams) -> int:
    raise asyncio.CancelledError


@pytest.fixture
def gates() -> Gates:
    return Gates()


@asynccontextmanager
async def gated_bridge(data_dir: Path, gates: Gates, **options: Any) -> AsyncIterator[Bridge]:
    """An in-process bridge (port 0, real SQLite store) with ``test:gate`` and ``test:cancelled``."""
    registry = make_registry()
    registry.add(GATE, gates.handler)
    registry.add(CANCELLED, cancelled)
    bridge = await start_bridge(
        BridgeOptions(
            data_dir=data_dir,
            secrets=SecretOptions(backend=SecretBackend.FILE),
            transport=TransportOptions(port=0, **options),
        ),
        registry,
    )
    try:
        yield bridge
    finally:
        await bridge.close()


@pytest.fixture
async def bridge(tmp_path: Path, gates: Gates) -> AsyncIterator[Bridge]:
    async with gated_bridge(tmp_path / "data", gates) as running:
        yield running


async def listener(bridge: Bridge) -> socket.socket:
    """A raw WebSocket connection (blocking socket, handshake done in a thread) that only listens."""
    assert bridge.server.port is not None
    return await asyncio.to_thread(raw_socket, bridge.server.port, bridge.token)


@pytest.fixture
async def observer(bridge: Bridge) -> AsyncIterator[socket.socket]:
    with closing(await listener(bridge)) as sock:
        yield sock


# ---- helpers ------------------------------------------------------------------------


def update(config_id: str, name: str, request_id: Any = None) -> dict[str, Any]:
    """An ``llm-config:update`` renaming ``config_id`` (a notification when ``request_id`` is None)."""
    message: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": "llm-config:update",
        "params": {"id": config_id, "updates": {"customName": name}},
    }
    if request_id is not None:
        message["id"] = request_id
    return message


def gate(number: int, request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": GATE.name, "params": {"gate": number}, "id": request_id}


async def create(ws: ClientConnection, name: str) -> dict[str, Any]:
    """Create a config; its view (the notifications before the reply are read, its own checked)."""
    await ws.send(request("llm-config:create", {"config": openai_config(name)}, request_id=f"create {name}"))
    notes, reply = await until_reply(ws)
    view: dict[str, Any] = reply["result"]
    assert [(n["params"]["type"], n["params"]["id"]) for n in notes][-1:] == [("created", view["id"])]
    return view


async def drain(*connections: ClientConnection) -> None:
    """Read away the notifications each connection has been sent so far (a probe's reply follows them)."""
    for ws in connections:
        await ws.send(request("bridge:hello", request_id="drain"))
        _, reply = await until_reply(ws)
        assert reply["id"] == "drain"


async def until_reply(ws: ClientConnection) -> tuple[list[dict[str, Any]], Any]:
    """The notifications received, then the first response (an object with an id, or a batch reply)."""
    notes: list[dict[str, Any]] = []
    while True:
        message = await recv_json(ws)
        if isinstance(message, list) or "id" in message:
            return notes, message
        notes.append(message)


def _barrier(sock: socket.socket, token: bytes) -> list[Any]:
    sock.sendall(masked_frame(token, opcode=OPCODE_PING))
    texts: list[Any] = []
    while True:
        opcode, payload = read_frame(sock)
        if opcode == OPCODE_PONG and payload == token:
            return texts
        if opcode == OPCODE_TEXT:
            texts.append(orjson.loads(payload))


async def received_so_far(sock: socket.socket, token: bytes = b"barrier") -> list[Any]:
    """Every text message the server wrote to ``sock`` before it read a ping sent now."""
    return await asyncio.to_thread(_barrier, sock, token)


def _texts(sock: socket.socket, count: int) -> list[Any]:
    texts: list[Any] = []
    while len(texts) < count:
        opcode, payload = read_frame(sock)
        if opcode == OPCODE_TEXT:
            texts.append(orjson.loads(payload))
    return texts


async def next_texts(sock: socket.socket, count: int) -> list[Any]:
    """The next ``count`` text messages on ``sock`` (each read bounded by the socket timeout)."""
    return await asyncio.to_thread(_texts, sock, count)


def changes(messages: list[Any]) -> list[tuple[str, str, str]]:
    """``(type, id, name)`` of each ``llm-config:changed`` notification, asserted to be nothing else."""
    assert all(m.get("method") == "llm-config:changed" for m in messages), messages
    return [(m["params"]["type"], m["params"]["id"], m["params"]["config"]["customName"]) for m in messages]


def revisions(messages: list[Any]) -> list[int]:
    return [m["params"]["revision"] for m in messages]


async def pause_a_batch(
    sender: ClientConnection, observer: socket.socket, gates: Gates
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create configs A and B, then send ``[update A → "A1", gate 1, update B → "B1"]``.

    Returns when the batch waits at gate 1 (A1 committed, B1 not yet), with the observer's
    earlier notifications read; returns A and B as created.
    """
    a = await create(sender, "A")
    b = await create(sender, "B")
    await received_so_far(observer)
    await sender.send(orjson.dumps([update(a["id"], "A1", 1), gate(1, 2), update(b["id"], "B1", 3)]).decode())
    await gates.reached(1)
    return a, b


# ---- tests --------------------------------------------------------------------------


async def test_a_batch_holds_its_notifications_until_it_ends_then_sends_them_in_order(
    bridge: Bridge, gates: Gates, observer: socket.socket
) -> None:
    async with await open_ws(bridge) as sender:
        a, b = await pause_a_batch(sender, observer, gates)

        # A1 is committed, but its event waits for the end of the batch.
        assert await received_so_far(observer) == []
        assert bridge.server.held_count == 1
        gates.open(1)

        notes, reply = await until_reply(sender)
        assert [r["id"] for r in reply] == [1, 2, 3]
        assert [r["result"]["customName"] for r in (reply[0], reply[2])] == ["A1", "B1"]
        assert changes(notes) == [("updated", a["id"], "A1"), ("updated", b["id"], "B1")]
        seen = await next_texts(observer, 2)
        assert seen == notes
        first = revisions(seen)[0]
        assert revisions(seen) == [first, first + 1]
        assert bridge.server.held_count == 0


async def test_a_single_write_during_a_held_batch_gets_every_earlier_notification_first(
    bridge: Bridge, gates: Gates, observer: socket.socket
) -> None:
    async with await open_ws(bridge) as sender, await open_ws(bridge) as writer:
        a = await create(sender, "A")
        b = await create(sender, "B")
        c = await create(writer, "C")
        await drain(sender, writer)
        await received_so_far(observer)
        await sender.send(
            orjson.dumps([update(a["id"], "A1", 1), gate(1, 2), update(b["id"], "B1", 3)]).decode()
        )
        await gates.reached(1)

        # A single write from another connection while the batch holds: its response
        # takes the held list (A1) and its own event (C1) out first, in revision order.
        await writer.send(orjson.dumps(update(c["id"], "C1", "w")).decode())
        notes, reply = await until_reply(writer)
        assert reply["id"] == "w"
        assert changes(notes) == [("updated", a["id"], "A1"), ("updated", c["id"], "C1")]
        observed = await received_so_far(observer)
        assert observed == notes

        # A read's response, too, follows every notification made before it.
        await writer.send(orjson.dumps(update(c["id"], "C2", "w2")).decode())
        notes2, _ = await until_reply(writer)
        assert changes(notes2) == [("updated", c["id"], "C2")]
        async with await open_ws(bridge) as reader:
            await reader.send(orjson.dumps([update(c["id"], "C3")]).decode())  # a batch of one notification
            await reader.send(request("llm-config:read", {"id": c["id"]}, request_id="r"))
            read_notes, read_reply = await until_reply(reader)
            assert read_reply["result"]["customName"] == "C3"
            assert changes(read_notes) == [("updated", c["id"], "C3")]

        gates.open(1)
        batch_notes, batch_reply = await until_reply(sender)
        assert [r["id"] for r in batch_reply] == [1, 2, 3]
        assert changes(batch_notes) == [
            ("updated", a["id"], "A1"),
            ("updated", c["id"], "C1"),
            ("updated", c["id"], "C2"),
            ("updated", c["id"], "C3"),
            ("updated", b["id"], "B1"),
        ]
        seen = observed + await next_texts(observer, 3)
        assert seen == batch_notes
        first = revisions(seen)[0]
        assert revisions(seen) == list(range(first, first + 5))


async def test_revision_order_holds_while_a_batch_and_single_writes_interleave(
    bridge: Bridge, observer: socket.socket
) -> None:
    async with await open_ws(bridge) as sender, await open_ws(bridge) as writer:
        x = await create(sender, "X")
        y = await create(writer, "Y")
        await drain(sender, writer)
        await received_so_far(observer)
        batch = [update(x["id"], f"X{i}", i) for i in range(1, 51)]
        await sender.send(orjson.dumps(batch).decode())
        for i in range(1, 31):  # pipelined: they interleave with the batch's elements
            await writer.send(orjson.dumps(update(y["id"], f"Y{i}", f"y{i}")).decode())

        # The writer: each response comes after the event of its own write.
        names_seen: set[str] = set()
        for i in range(1, 31):
            notes, reply = await until_reply(writer)
            assert reply["id"] == f"y{i}"
            names_seen.update(name for _, _, name in changes(notes))
            assert f"Y{i}" in names_seen
        # The sender: all 50 events of its batch before its reply.
        sender_notes, reply = await until_reply(sender)
        assert [r["result"]["customName"] for r in reply] == [f"X{i}" for i in range(1, 51)]
        assert {name for _, _, name in changes(sender_notes)} >= {f"X{i}" for i in range(1, 51)}
        # The observer: all 80 events, each revision once, in order.
        seen = await next_texts(observer, 80)
        first = revisions(seen)[0]
        assert revisions(seen) == list(range(first, first + 80))
        assert [n for _, _, n in changes(seen) if n.startswith("X")] == [f"X{i}" for i in range(1, 51)]
        assert [n for _, _, n in changes(seen) if n.startswith("Y")] == [f"Y{i}" for i in range(1, 31)]
        assert await received_so_far(observer) == []


async def test_batches_with_errors_reads_only_or_notifications_only_answer_as_before(
    bridge: Bridge, observer: socket.socket
) -> None:
    async with await open_ws(bridge) as sender:
        a = await create(sender, "A")
        await received_so_far(observer)

        # An error element (4004), a failing handler (-32603): the others run; their
        # events come before the reply, on both connections.
        mixed = [
            update(a["id"], "A1", 1),
            update(UNKNOWN_ID, "nobody", 2),
            {"jsonrpc": "2.0", "method": "test:boom", "id": 3},
            update(a["id"], "A2", 4),
        ]
        await sender.send(orjson.dumps(mixed).decode())
        notes, reply = await until_reply(sender)
        assert [r["id"] for r in reply] == [1, 2, 3, 4]
        assert [r.get("error", {}).get("code") for r in reply] == [None, 4004, -32603, None]
        assert changes(notes) == [("updated", a["id"], "A1"), ("updated", a["id"], "A2")]
        assert await received_so_far(observer) == notes

        # Reads only: the same answers as one by one, and no event.
        await sender.send(request("llm-config:read", {"id": a["id"]}, request_id="single"))
        _, single = await until_reply(sender)
        reads = [
            {"jsonrpc": "2.0", "method": "llm-config:read", "params": {"id": a["id"]}, "id": 1},
            {"jsonrpc": "2.0", "method": "llm-config:list", "id": 2},
        ]
        await sender.send(orjson.dumps(reads).decode())
        notes, reply = await until_reply(sender)
        assert notes == []
        assert reply == [
            {"jsonrpc": "2.0", "id": 1, "result": single["result"]},
            {"jsonrpc": "2.0", "id": 2, "result": [single["result"]]},
        ]
        assert await received_so_far(observer) == []

        # Notifications only: no reply frame; the events reach everyone, the sender's
        # next response comes after them.
        await sender.send(orjson.dumps([update(a["id"], "A3"), update(a["id"], "A4")]).decode())
        await sender.send(request("bridge:hello", request_id="after"))
        notes, reply = await until_reply(sender)
        assert reply["id"] == "after"
        assert changes(notes) == [("updated", a["id"], "A3"), ("updated", a["id"], "A4")]
        assert await received_so_far(observer) == notes
        assert bridge.server.held_count == 0


async def test_held_notifications_reach_observers_when_the_sender_goes_away(
    bridge: Bridge, gates: Gates, observer: socket.socket
) -> None:
    async with await open_ws(bridge) as setup:
        a = await create(setup, "A")
        b = await create(setup, "B")
    await received_so_far(observer)
    sender = await listener(bridge)
    batch = [update(a["id"], "A1", 1), gate(1, 2), update(b["id"], "B1", 3)]
    sender.sendall(masked_frame(orjson.dumps(batch)))
    await gates.reached(1)
    sender.close()  # TCP gone; the batch runs to its end
    assert await received_so_far(observer) == []
    gates.open(1)
    assert changes(await next_texts(observer, 2)) == [("updated", a["id"], "A1"), ("updated", b["id"], "B1")]


async def test_a_batch_that_ends_cancelled_still_sends_what_it_held(
    bridge: Bridge, observer: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc_server, "HOLD_MAX_S", 3600.0)  # only the batch's end can release them
    async with await open_ws(bridge) as sender:
        a = await create(sender, "A")
        b = await create(sender, "B")
        await received_so_far(observer)
        batch = [
            update(a["id"], "A1", 1),
            {"jsonrpc": "2.0", "method": CANCELLED.name, "params": {"gate": 0}, "id": 2},
            update(b["id"], "B1", 3),
        ]
        await sender.send(orjson.dumps(batch).decode())
        # The batch ended at its second element, unanswered; A1's event was released.
        assert changes(await next_texts(observer, 1)) == [("updated", a["id"], "A1")]
        await sender.send(request("llm-config:read", {"id": b["id"]}, request_id="after"))
        notes, reply = await until_reply(sender)
        assert changes(notes) == [("updated", a["id"], "A1")]
        assert reply["id"] == "after"
        assert reply["result"]["customName"] == "B"
        assert bridge.server.held_count == 0


async def test_shutdown_during_a_held_batch_sends_its_notifications_before_closing(
    bridge: Bridge, gates: Gates, observer: socket.socket
) -> None:
    async with await open_ws(bridge) as sender:
        a, _ = await pause_a_batch(sender, observer, gates)
        closing_task = asyncio.create_task(bridge.server.shutdown())
        gates.open(1)
        notes, reply = await until_reply(sender)
        # Shutdown began before B1's element ran: that one is refused (5003) as always.
        assert [r.get("error", {}).get("code") for r in reply] == [None, None, 5003]
        assert changes(notes) == [("updated", a["id"], "A1")]
        await asyncio.wait_for(closing_task, TIMEOUT)

    def until_close() -> tuple[list[Any], bytes]:
        texts: list[Any] = []
        while True:
            opcode, payload = read_frame(observer)
            if opcode == OPCODE_CLOSE:
                return texts, payload
            if opcode == OPCODE_TEXT:
                texts.append(orjson.loads(payload))

    texts, close = await asyncio.to_thread(until_close)
    assert texts == notes
    assert int.from_bytes(close[:2], "big") == 1001


async def test_held_notifications_leave_after_hold_max_s_even_if_the_batch_still_runs(
    bridge: Bridge, gates: Gates, observer: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc_server, "HOLD_MAX_S", 0.05)
    async with await open_ws(bridge) as sender:
        a = await create(sender, "A")
        await received_so_far(observer)
        await sender.send(orjson.dumps([update(a["id"], "A1", 1), gate(1, 2)]).decode())
        await gates.reached(1)
        # The gate is still closed: only the hold's time bound can have sent it.
        assert changes(await next_texts(observer, 1)) == [("updated", a["id"], "A1")]
        assert bridge.server.held_count == 0
        gates.open(1)
        notes, reply = await until_reply(sender)
        assert changes(notes) == [("updated", a["id"], "A1")]
        assert [r["id"] for r in reply] == [1, 2]


async def test_held_notifications_leave_at_max_batch_entries(
    tmp_path: Path, gates: Gates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc_server, "HOLD_MAX_S", 3600.0)
    async with (
        gated_bridge(tmp_path / "data", gates, max_batch=3) as bridge,
        await open_ws(bridge) as one,
        await open_ws(bridge) as two,
    ):
        a = await create(one, "A")
        b = await create(one, "B")
        c = await create(two, "C")
        await drain(one, two)
        with closing(await listener(bridge)) as watcher:
            await one.send(
                orjson.dumps([update(a["id"], "A1", 1), update(b["id"], "B1", 2), gate(1, 3)]).decode()
            )
            await gates.reached(1)
            await two.send(orjson.dumps([update(c["id"], "C1", 1), gate(2, 2)]).decode())
            await gates.reached(2)
            # Three held (the limit) while both batches still run: written at once.
            assert changes(await received_so_far(watcher)) == [
                ("updated", a["id"], "A1"),
                ("updated", b["id"], "B1"),
                ("updated", c["id"], "C1"),
            ]
            gates.open(1)
            gates.open(2)
            for ws in (one, two):
                notes, _ = await until_reply(ws)
                assert len(notes) == 3


async def test_a_connection_opened_during_a_held_batch_gets_only_later_notifications(
    bridge: Bridge, gates: Gates, observer: socket.socket
) -> None:
    async with await open_ws(bridge) as sender:
        a, b = await pause_a_batch(sender, observer, gates)
        with closing(await listener(bridge)) as late:
            gates.open(1)
            await until_reply(sender)
            assert changes(await next_texts(late, 1)) == [("updated", b["id"], "B1")]
            assert await received_so_far(late) == []
        assert changes(await next_texts(observer, 2)) == [
            ("updated", a["id"], "A1"),
            ("updated", b["id"], "B1"),
        ]
