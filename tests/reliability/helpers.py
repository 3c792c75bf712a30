"""Shared pieces of the reliability tests: run mode, random keys, secret scanning, figures.

The mode comes from ``BRIDGE_RELIABILITY``: unset (or ``short``) is the CI mode run by
plain ``pytest``; ``long`` is the dedicated run of ``make reliability``. Each figure can
also be overridden on its own (``BRIDGE_CRASH_ROUNDS``, ``BRIDGE_FUZZ_FRAMES``,
``BRIDGE_SOAK_S``, ``BRIDGE_STATEFUL_EXAMPLES``).
"""

from __future__ import annotations

import json
import os
import random
import string
import time
from pathlib import Path
from typing import Any, Final

LONG: Final = os.environ.get("BRIDGE_RELIABILITY", "short") == "long"


def setting(env: str, short: float, long: float) -> float:
    """The figure for this run: ``env`` if set, else ``long`` in long mode, else ``short``."""
    raw = os.environ.get(env)
    return float(raw) if raw else (long if LONG else short)


CRASH_ROUNDS: Final = int(setting("BRIDGE_CRASH_ROUNDS", 5, 200))
FUZZ_FRAMES: Final = int(setting("BRIDGE_FUZZ_FRAMES", 2_000, 100_000))
SOAK_S: Final = setting("BRIDGE_SOAK_S", 30, 600)
STATEFUL_EXAMPLES: Final = int(setting("BRIDGE_STATEFUL_EXAMPLES", 8, 150))
RUN_TIMEOUT_S: Final = 3 * 3600 if LONG else 300
"""pytest-timeout bound of the long-running tests (generous: a hang must still end)."""
SEED: Final = int(os.environ.get("BRIDGE_RELIABILITY_SEED") or time.time_ns() % 2**32)

ALNUM: Final = string.ascii_letters + string.digits
ISSUED_KEYS: set[str] = set()
"""Every key :func:`random_key` handed out in this session (swept for by ``conftest.py``)."""


def random_key(rng: random.Random, provider: str) -> str:
    """A fresh API key of ``provider``'s shape (``custom``: no recognisable shape at all)."""
    if provider == "openai":
        key = "sk-" + "".join(rng.choices(ALNUM, k=45))
    elif provider == "anthropic":
        key = "sk-ant-" + "".join(rng.choices(ALNUM, k=55))
    elif provider == "google":
        key = "".join(rng.choices(ALNUM + "_-", k=39))
    else:
        key = "".join(rng.choices(ALNUM + "._~+/", k=28))
    ISSUED_KEYS.add(key)
    return key


def config_input(rng: random.Random, name: str, provider: str | None = None) -> dict[str, Any]:
    """A valid ``LlmConfigInput`` wire dict with a random key of a random (or given) provider."""
    provider = provider or rng.choice(["openai", "anthropic", "google", "custom"])
    config: dict[str, Any] = {"customName": name, "provider": provider, "apiKey": random_key(rng, provider)}
    if provider == "custom":
        config["baseUrl"] = "http://127.0.0.1:9/v1"
    return config


def find_secrets(blob: bytes, secrets: set[str]) -> list[str]:
    """The secrets of ``secrets`` that occur in ``blob`` (UTF-8 and UTF-16 forms), shortened."""
    found = []
    for secret in secrets:
        forms = (secret.encode(), secret.encode("utf-16-le"), json.dumps(secret).encode())
        if any(form in blob for form in forms):
            found.append(secret[:4] + "…")
    return found


def record(test: str, **figures: Any) -> None:
    """Print the figures of a run and append them to ``$BRIDGE_RELIABILITY_REPORT`` if set."""
    line = {"test": test, "mode": "long" if LONG else "short", "seed": SEED, **figures}
    print(json.dumps(line))
    target = os.environ.get("BRIDGE_RELIABILITY_REPORT")
    if target:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
