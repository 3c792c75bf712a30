"""A token bucket: the optional per-connection rate limit (DESIGN §6, 4029)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """A token bucket: ``rate_per_s`` tokens per second, holding at most ``burst``.

    Args:
        rate_per_s: refill rate, in tokens per second.
        burst: capacity, in tokens (starts full).
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Start full."""
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
