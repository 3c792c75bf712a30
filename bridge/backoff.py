"""Reconnect delays: capped exponential backoff with full jitter, shared by every reconnect loop.

The Python client's reconnect (:mod:`bridge.client`) and the PostgreSQL listener
(:mod:`bridge.storage.postgres`) both wait :func:`backoff_delays` between attempts, so
they spread out the same way after an outage. The schedule is tenacity's
``wait_random_exponential`` ("Exponential Backoff And Jitter", AWS Architecture Blog):
the n-th delay (n from 0) is uniform in ``[0, min(cap_s, base_s * 2**n)]``. The JavaScript
client uses the same rule.
"""

from __future__ import annotations

from collections.abc import Callable


def backoff_delays(base_s: float = 0.05, cap_s: float = 5.0) -> Callable[[], float]:
    """Return a function giving successive reconnect delays, in seconds.

    Args:
        base_s: ceiling of the first delay, in seconds (it doubles on each call).
        cap_s: largest ceiling, in seconds.

    Returns:
        A function whose n-th call (n from 0) returns a delay uniform in
        ``[0, min(cap_s, base_s * 2**n)]``; independent of any other such function.
    """
    # Imported on the first retry, not at start-up: the store follower imports this module.
    from tenacity import RetryCallState, Retrying, wait_random_exponential  # noqa: PLC0415

    wait = wait_random_exponential(multiplier=base_s, max=cap_s)
    # tenacity computes a wait from a call state's attempt number; keep one per schedule.
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = 0

    def next_delay() -> float:
        state.attempt_number += 1
        return wait(state)

    return next_delay
