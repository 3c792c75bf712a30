"""One backoff schedule for every reconnect loop: capped exponential, full jitter."""

from __future__ import annotations

from bridge import backoff
from bridge.client import connection
from bridge.collection import postgres as collection_postgres
from bridge.collection import service as collection_service
from bridge.service import llm_config
from bridge.storage import base, postgres


def test_delays_stay_under_a_doubling_ceiling_up_to_the_cap() -> None:
    delay = backoff.backoff_delays(base_s=0.1, cap_s=1.0)
    delays = [delay() for _ in range(200)]
    assert all(0 <= d <= min(1.0, 0.1 * 2**i) for i, d in enumerate(delays))
    assert len(set(delays)) > 190  # jittered, not a fixed schedule
    assert max(delays[10:]) > 0.5  # the ceiling did grow to the cap


def test_each_schedule_starts_over() -> None:
    first = backoff.backoff_delays(base_s=0.01, cap_s=100.0)
    for _ in range(20):
        first()
    second = backoff.backoff_delays(base_s=0.01, cap_s=100.0)
    assert second() <= 0.01


def test_the_client_the_postgresql_listener_and_the_store_follower_share_the_helper() -> None:
    assert vars(connection)["backoff_delays"] is backoff.backoff_delays
    assert vars(postgres)["backoff_delays"] is backoff.backoff_delays
    assert vars(base)["backoff_delays"] is backoff.backoff_delays
    assert vars(llm_config)["backoff_delays"] is backoff.backoff_delays


def test_the_collections_listener_and_follower_share_it_too() -> None:
    assert vars(collection_postgres)["backoff_delays"] is backoff.backoff_delays
    assert vars(collection_service)["backoff_delays"] is backoff.backoff_delays
