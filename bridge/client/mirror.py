"""``LlmConfigMirror``: the LLM-config views a client's subscribers know, kept gap-free across reconnects.

The state half of the Python client (DESIGN §8): it follows ``llm-config:changed`` by
revision, and after each (re)connect resyncs through ``llm-config:snapshot``:
notifications that arrive while the snapshot is in flight are held, those with a revision
≤ the snapshot's dropped, and the differences between the views known before the drop
and the snapshot are delivered as ``created``/``updated``/``deleted`` events carrying the
snapshot's revision, then the held newer events. It does no I/O itself: it is given a
function that takes the snapshot and one that delivers an event to the subscribers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bridge import api

TOPIC = api.LLM_CONFIG_CHANGED.name


class LlmConfigMirror:
    """The view set by id and the revision it reflects.

    Args:
        deliver: called with ``(topic, event)`` for every event the subscribers must see.
    """

    def __init__(self, deliver: Callable[[str, Any], None]) -> None:
        """Start empty at revision 0."""
        self._deliver = deliver
        self.views: dict[str, dict[str, Any]] = {}
        """The last known wire view (``LlmConfigView`` JSON) of every config, by id."""
        self.revision = 0
        """The revision ``views`` reflects."""
        self._resyncing = False
        self._held: list[dict[str, Any]] = []

    def receive(self, event: dict[str, Any]) -> None:
        """A ``llm-config:changed`` notification: held during a resync, dropped when stale."""
        if self._resyncing:
            self._held.append(event)
        elif self._track(event):
            self._deliver(TOPIC, event)

    def _track(self, event: dict[str, Any]) -> bool:
        """Apply a change event to the known view set; False when it is stale."""
        revision = event.get("revision")
        if not isinstance(revision, int) or revision <= self.revision:
            return False
        self.revision = revision
        if event.get("type") == "deleted":
            self.views.pop(str(event.get("id")), None)
        elif isinstance(event.get("config"), dict):
            self.views[str(event.get("id"))] = event["config"]
        return True

    async def resync(self, take_snapshot: Callable[[], Awaitable[Any]]) -> None:
        """Take a snapshot; deliver what changed while away; then the held newer notifications.

        Args:
            take_snapshot: returns the ``llm-config:snapshot`` result (wire JSON:
                ``{revision, configs}``).

        Raises:
            Whatever ``take_snapshot`` raises (e.g. ConnectionLostError); nothing is
            delivered then, and the held notifications are dropped.
        """
        first = not self.views and self.revision == 0
        self._resyncing = True
        try:
            snapshot = await take_snapshot()
        finally:
            self._resyncing = False
            held, self._held = self._held, []
        revision: int = snapshot["revision"]
        fresh = {view["id"]: view for view in snapshot["configs"]}
        old, self.views = self.views, dict(fresh)
        if not first and revision != self.revision:
            for config_id in old.keys() - fresh.keys():
                self._deliver(TOPIC, {"type": "deleted", "id": config_id, "revision": revision})
            for config_id, view in fresh.items():
                if config_id not in old:
                    self._deliver(
                        TOPIC, {"type": "created", "id": config_id, "revision": revision, "config": view}
                    )
                elif old[config_id] != view:
                    self._deliver(
                        TOPIC, {"type": "updated", "id": config_id, "revision": revision, "config": view}
                    )
        self.revision = revision
        for event in held:
            if self._track(event):
                self._deliver(TOPIC, event)
