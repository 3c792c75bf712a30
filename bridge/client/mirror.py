"""``CollectionMirror``: the items of one collection a client knows, kept gap-free across reconnects.

The state half of the Python client (DESIGN §8). A collection ``<name>`` is served as the
channel ``<name>:snapshot`` (``{revision, items}``) and the topic ``<name>:changed``
(``{type: "created"|"updated"|"deleted", id, revision, item?}``); LLM configs, the first
collection, say ``configs``/``config`` instead of ``items``/``item``
(:class:`LlmConfigMirror`). A mirror follows the topic by revision, and after each
(re)connect resyncs through the snapshot: notifications that arrive while the snapshot is
in flight are held, those with a revision ≤ the snapshot's dropped, and the differences
between the items known before the drop and the snapshot are delivered as
``created``/``updated``/``deleted`` events carrying the snapshot's revision, then the held
newer events. It does no I/O itself: it is given a function that takes the snapshot, and
delivers each event to ``deliver`` and to its own listeners (:meth:`CollectionMirror.on`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from bridge import api
from bridge.log import library_logger

log = library_logger(__name__)

TOPIC = api.LLM_CONFIG_CHANGED.name
"""The LLM-config topic, ``llm-config:changed``."""

Listener = Callable[[dict[str, Any]], None]
"""Called with each change event (wire JSON) a mirror delivers."""


def collection_channels(name: str) -> tuple[str, str]:
    """The ``(topic, snapshot channel)`` of collection ``name``: ``<name>:changed``, ``<name>:snapshot``.

    The generic collection wire (DESIGN §1, "Collections"); for ``llm-config`` these are
    the registry's own ``llm-config:changed`` and ``llm-config:snapshot``.
    """
    return f"{name}:changed", f"{name}:snapshot"


class CollectionMirror:
    """The items of one collection by id and the revision they reflect.

    Args:
        topic: the change topic, ``<name>:changed``.
        snapshot_channel: the channel giving ``{revision, <items_key>: [...]}``,
            ``<name>:snapshot`` (the caller of :meth:`resync` invokes it).
        deliver: called with ``(topic, event)`` for every event the subscribers must see;
            None → only the mirror's own listeners see them.
        item_key: the key of an event's item (``item``; ``config`` for llm-config).
        items_key: the key of a snapshot's item list (``items``; ``configs`` for llm-config).

    Items are the server's wire JSON (camelCase dicts, e.g. ``{"id", "name", "version",
    ...}``), never validated here: the mirror keeps what the server sent.
    """

    def __init__(
        self,
        topic: str,
        snapshot_channel: str,
        deliver: Callable[[str, Any], None] | None = None,
        *,
        item_key: str = "item",
        items_key: str = "items",
    ) -> None:
        """Start empty at revision 0."""
        self.topic = topic
        """The change topic this mirror follows (``<name>:changed``)."""
        self.snapshot_channel = snapshot_channel
        """The snapshot channel it resyncs through (``<name>:snapshot``)."""
        self._deliver = deliver
        self._item_key = item_key
        self._items_key = items_key
        self.views: dict[str, dict[str, Any]] = {}
        """The last known wire view of every item, by id, in the server's list order."""
        self.revision = 0
        """The revision ``views`` reflects (0 before the first snapshot)."""
        self._resyncing = False
        self._held: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._tick = asyncio.Event()  # set (and replaced) at every change

    def __repr__(self) -> str:
        """Show the topic, the size and the revision (never an item)."""
        return f"CollectionMirror(topic={self.topic!r}, items={len(self.views)}, revision={self.revision})"

    # ---- reading ----------------------------------------------------------------------

    @property
    def items(self) -> list[dict[str, Any]]:
        """Every known item (wire JSON) in the server's list order (creation order); a new list."""
        return list(self.views.values())

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The known item with id ``item_id``; None when unknown."""
        return self.views.get(item_id)

    def __len__(self) -> int:
        """The number of known items."""
        return len(self.views)

    def __contains__(self, item_id: object) -> bool:
        """True when an item with this id is known."""
        return item_id in self.views

    def on(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event this mirror delivers; returns an unsubscriber.

        Events are ``{type, id, revision, <item_key>?}`` (wire JSON): the server's live
        notifications, and after a reconnect the differences a resync found. A listener's
        exception is logged (``client_callback_failed``) and never reaches the connection.
        """
        self._listeners.append(listener)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return off

    async def wait_for(
        self, predicate: Callable[[CollectionMirror], bool], timeout_s: float | None = None
    ) -> None:
        """Return once ``predicate(self)`` holds (checked now and after every change).

        Args:
            predicate: a test of the mirror's state (``views``, ``revision``).
            timeout_s: bound on the wait, in seconds; None waits forever.

        Raises:
            TimeoutError: it did not hold within ``timeout_s`` seconds.
        """
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                await self._tick.wait()

    # ---- following --------------------------------------------------------------------

    def receive(self, event: dict[str, Any]) -> None:
        """A ``<name>:changed`` notification: held during a resync, dropped when stale."""
        if self._resyncing:
            self._held.append(event)
        elif self._track(event):
            self._emit(event)

    def _track(self, event: dict[str, Any]) -> bool:
        """Apply a change event to the known item set; False when it is stale."""
        revision = event.get("revision")
        if not isinstance(revision, int) or revision <= self.revision:
            return False
        self.revision = revision
        if event.get("type") == "deleted":
            self.views.pop(str(event.get("id")), None)
        elif isinstance(event.get(self._item_key), dict):
            self.views[str(event.get("id"))] = event[self._item_key]
        return True

    def _emit(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to ``deliver`` and the listeners; wake :meth:`wait_for`."""
        if self._deliver is not None:
            self._deliver(self.topic, event)
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:  # a subscriber's bug must not break the connection
                log.exception("client_callback_failed", topic=self.topic)
        self._wake()

    def _wake(self) -> None:
        """Let the waiters of :meth:`wait_for` re-check their predicate."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def resync(self, take_snapshot: Callable[[], Awaitable[Any]]) -> None:
        """Take a snapshot; deliver what changed while away; then the held newer notifications.

        Resyncs of one mirror run one at a time (a reconnect's waits for one in flight).

        Args:
            take_snapshot: returns the snapshot channel's result (wire JSON:
                ``{revision, <items_key>: [view, ...]}``).

        Raises:
            Whatever ``take_snapshot`` raises (e.g. ConnectionLostError); nothing is
            delivered then, and the held notifications are dropped.
        """
        async with self._lock:
            await self._resync(take_snapshot)
        self._wake()

    async def _resync(self, take_snapshot: Callable[[], Awaitable[Any]]) -> None:
        first = not self.views and self.revision == 0
        self._resyncing = True
        try:
            snapshot = await take_snapshot()
        finally:
            self._resyncing = False
            held, self._held = self._held, []
        revision: int = snapshot["revision"]
        fresh = {view["id"]: view for view in snapshot[self._items_key]}
        old, self.views = self.views, dict(fresh)
        if not first and revision != self.revision:
            for item_id in old.keys() - fresh.keys():
                self._emit({"type": "deleted", "id": item_id, "revision": revision})
            for item_id, view in fresh.items():
                if item_id not in old:
                    self._emit({"type": "created", "id": item_id, "revision": revision, self._item_key: view})
                elif old[item_id] != view:
                    self._emit({"type": "updated", "id": item_id, "revision": revision, self._item_key: view})
        self.revision = revision
        for event in held:
            if self._track(event):
                self._emit(event)


class LlmConfigMirror(CollectionMirror):
    """The LLM-config views (``llm-config:changed``, ``llm-config:snapshot``; ``config``/``configs``).

    Args:
        deliver: called with ``(topic, event)`` for every event the subscribers must see.
    """

    def __init__(self, deliver: Callable[[str, Any], None] | None = None) -> None:
        """Start empty at revision 0."""
        super().__init__(TOPIC, api.LLM_CONFIG_SNAPSHOT.name, deliver, item_key="config", items_key="configs")
