"""The state core both services stand on: the state service, cache, quarantine, follower, writes, clock.

``bridge.service.llm_config`` (LLM configs) and ``bridge.collection.service`` (every
collection) keep the same guarantees (DESIGN §3–§4); each piece of them exists once, here:

- :class:`~bridge.state.service.StateService`: the one flow of a served state (cache
  discipline, write flow, load/reload/follow lifecycle, quarantine handling); each
  service is it plus a policy of hooks;
- :class:`~bridge.state.cache.Cache`: the ordered write-through cache whose views are one
  shared tuple until it changes;
- :class:`~bridge.state.quarantine.Quarantine`: rows held out of the cache, logged once per
  reason; :func:`~bridge.state.quarantine.printable_id`;
- :func:`~bridge.state.follow.follow`: the loop that follows other processes' commits,
  with capped exponential backoff and a full reload after a failure;
- :func:`~bridge.state.feed.apply_feed`: a change feed applied in revision order, or a
  reload when the log cannot tell;
- :func:`~bridge.state.write.write_through`: store first, cache after commit, in a task
  that no caller's cancellation splits (its parts :func:`~bridge.state.write.shielded`
  and :func:`~bridge.state.write.committed`, one translation of a store failure);
- :func:`~bridge.state.clock.utc_now`.

It sits below both services and imports neither (nor the wire: no websockets, rpc or
orjson); an import-linter contract keeps it so.
"""

from __future__ import annotations

from bridge.state.cache import Cache
from bridge.state.clock import utc_now
from bridge.state.feed import apply_feed
from bridge.state.follow import follow
from bridge.state.quarantine import Quarantine, printable_id
from bridge.state.service import StateService
from bridge.state.write import committed, shielded, write_through

__all__ = [
    "Cache",
    "Quarantine",
    "StateService",
    "apply_feed",
    "committed",
    "follow",
    "printable_id",
    "shielded",
    "utc_now",
    "write_through",
]
