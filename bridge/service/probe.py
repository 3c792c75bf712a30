"""What the connection test and the provider check share: progress steps and the body limit.

Light on purpose: :mod:`bridge.service.tester` imports it at start-up, while
:mod:`bridge.service.provider_check` (and httpx with it) is imported on the first test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

ProgressCallback = Callable[[str, int], None]
"""Receives ``(message, percentage)``: ``("connecting", 0)`` before the request is sent,
then ``("listing", 50)`` once the provider accepted the key and its list is being read.
The messages are fixed; the RPC layer turns them into ``$/progress`` reports."""

PROGRESS_CONNECTING: Final = ("connecting", 0)
PROGRESS_LISTING: Final = ("listing", 50)

MAX_BODY_BYTES: Final = 1024 * 1024
"""Largest model-list body read, in bytes (after decompression); more → ``protocol``."""
