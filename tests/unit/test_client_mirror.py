"""``LlmConfigMirror``: the views a client's subscribers know, by revision, resynced by snapshot."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.client.mirror import TOPIC, CollectionMirror, LlmConfigMirror, collection_channels


def view(config_id: str, name: str, version: int = 1) -> dict[str, Any]:
    return {"id": config_id, "customName": name, "version": version}


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, topic: str, event: dict[str, Any]) -> None:
        assert topic == TOPIC
        self.events.append(event)


async def test_the_first_snapshot_delivers_nothing_and_sets_the_revision() -> None:
    seen = Recorder()
    mirror = LlmConfigMirror(seen)

    async def snapshot() -> dict[str, Any]:
        return {"revision": 7, "configs": [view("a", "A")]}

    await mirror.resync(snapshot)
    assert seen.events == []
    assert mirror.revision == 7
    assert mirror.views == {"a": view("a", "A")}


async def test_a_resync_delivers_the_differences_at_the_snapshot_revision() -> None:
    seen = Recorder()
    mirror = LlmConfigMirror(seen)
    mirror.receive({"type": "created", "id": "a", "revision": 1, "config": view("a", "A")})
    mirror.receive({"type": "created", "id": "b", "revision": 2, "config": view("b", "B")})
    mirror.receive({"type": "created", "id": "c", "revision": 3, "config": view("c", "C")})
    seen.events.clear()

    async def snapshot() -> dict[str, Any]:
        return {"revision": 9, "configs": [view("a", "A"), view("b", "B2", 2), view("d", "D")]}

    await mirror.resync(snapshot)
    assert seen.events == [
        {"type": "deleted", "id": "c", "revision": 9},
        {"type": "updated", "id": "b", "revision": 9, "config": view("b", "B2", 2)},
        {"type": "created", "id": "d", "revision": 9, "config": view("d", "D")},
    ]


async def test_notifications_during_a_resync_are_held_and_stale_ones_dropped() -> None:
    seen = Recorder()
    mirror = LlmConfigMirror(seen)

    async def snapshot() -> dict[str, Any]:
        # Arrive while the snapshot is in flight: one it already reflects, one newer.
        mirror.receive({"type": "created", "id": "a", "revision": 4, "config": view("a", "A")})
        mirror.receive({"type": "deleted", "id": "a", "revision": 6})
        assert seen.events == []  # held, not delivered yet
        return {"revision": 5, "configs": [view("a", "A")]}

    await mirror.resync(snapshot)
    assert seen.events == [{"type": "deleted", "id": "a", "revision": 6}]
    assert mirror.views == {}
    assert mirror.revision == 6


def test_a_stale_or_repeated_notification_is_dropped() -> None:
    seen = Recorder()
    mirror = LlmConfigMirror(seen)
    event = {"type": "created", "id": "a", "revision": 3, "config": view("a", "A")}
    mirror.receive(event)
    mirror.receive(event)
    mirror.receive({"type": "deleted", "id": "a", "revision": 2})
    assert seen.events == [event]


# ---- the generic mirror (any collection: ``items``/``item`` keys) ----------------------


def item(item_id: str, name: str, version: int = 1) -> dict[str, Any]:
    return {"id": item_id, "name": name, "version": version}


def template_mirror() -> tuple[CollectionMirror, list[tuple[str, dict[str, Any]]]]:
    delivered: list[tuple[str, dict[str, Any]]] = []
    topic, snapshot_channel = collection_channels("prompt-template")
    mirror = CollectionMirror(topic, snapshot_channel, lambda t, e: delivered.append((t, e)))
    return mirror, delivered


def test_collection_channels_are_the_generic_wire_names() -> None:
    assert collection_channels("prompt-template") == ("prompt-template:changed", "prompt-template:snapshot")
    assert collection_channels("llm-config") == (TOPIC, "llm-config:snapshot")


async def test_a_collection_mirror_resyncs_by_items_and_delivers_under_its_own_topic() -> None:
    mirror, delivered = template_mirror()
    mirror.receive({"type": "created", "id": "a", "revision": 1, "item": item("a", "A")})
    mirror.receive({"type": "created", "id": "b", "revision": 2, "item": item("b", "B")})
    # The llm-config key is not this collection's: the event counts, the item is not taken.
    mirror.receive({"type": "created", "id": "c", "revision": 3, "config": item("c", "C")})
    assert mirror.views == {"a": item("a", "A"), "b": item("b", "B")}
    delivered.clear()

    async def snapshot() -> dict[str, Any]:
        return {"revision": 8, "items": [item("b", "B2", 2), item("d", "D")]}

    await mirror.resync(snapshot)
    assert delivered == [
        ("prompt-template:changed", {"type": "deleted", "id": "a", "revision": 8}),
        (
            "prompt-template:changed",
            {"type": "updated", "id": "b", "revision": 8, "item": item("b", "B2", 2)},
        ),
        ("prompt-template:changed", {"type": "created", "id": "d", "revision": 8, "item": item("d", "D")}),
    ]
    assert mirror.items == [item("b", "B2", 2), item("d", "D")]
    assert mirror.get("d") == item("d", "D")
    assert mirror.get("a") is None
    assert "b" in mirror
    assert len(mirror) == 2
    assert mirror.revision == 8


async def test_listeners_see_every_delivered_event_and_a_failing_one_does_not_stop_the_others() -> None:
    mirror, delivered = template_mirror()
    seen: list[dict[str, Any]] = []

    def broken(_event: dict[str, Any]) -> None:
        raise RuntimeError("a subscriber's bug")

    mirror.on(broken)
    off = mirror.on(seen.append)
    created = {"type": "created", "id": "a", "revision": 1, "item": item("a", "A")}
    mirror.receive(created)
    mirror.receive(created)  # repeated: dropped for everyone
    off()
    mirror.receive({"type": "deleted", "id": "a", "revision": 2})
    assert seen == [created]
    assert [event for _, event in delivered] == [created, {"type": "deleted", "id": "a", "revision": 2}]


async def test_wait_for_returns_once_the_predicate_holds_and_times_out_otherwise() -> None:
    mirror, _ = template_mirror()
    waiting = asyncio.create_task(mirror.wait_for(lambda m: "a" in m, timeout_s=10))
    await asyncio.sleep(0)
    assert not waiting.done()
    mirror.receive({"type": "created", "id": "a", "revision": 1, "item": item("a", "A")})
    await waiting
    with pytest.raises(TimeoutError):
        await mirror.wait_for(lambda m: m.revision > 1, timeout_s=0.01)


async def test_resyncs_of_one_mirror_run_one_at_a_time() -> None:
    mirror, delivered = template_mirror()
    release = asyncio.Event()
    order: list[str] = []

    async def slow() -> dict[str, Any]:
        order.append("slow started")
        await release.wait()
        order.append("slow done")
        return {"revision": 1, "items": [item("a", "A")]}

    async def fast() -> dict[str, Any]:
        order.append("fast started")
        return {"revision": 2, "items": [item("a", "A2", 2)]}

    first = asyncio.create_task(mirror.resync(slow))
    await asyncio.sleep(0)
    second = asyncio.create_task(mirror.resync(fast))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, second)
    assert order == ["slow started", "slow done", "fast started"]
    assert [event for _, event in delivered] == [
        {"type": "updated", "id": "a", "revision": 2, "item": item("a", "A2", 2)}
    ]
