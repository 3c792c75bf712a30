"""``LlmConfigMirror``: the views a client's subscribers know, by revision, resynced by snapshot."""

from __future__ import annotations

from typing import Any

from bridge.client.mirror import TOPIC, LlmConfigMirror


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
