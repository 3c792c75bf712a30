"""httpx is imported by the first llm-config:test, not at start-up (a sidecar's cold start)."""

from __future__ import annotations

import subprocess
import sys

LOADED = "sorted(m for m in sys.modules if m.split('.')[0] in {'httpx', 'httpcore', 'anyio'})"


def test_starting_bridge_does_not_import_httpx() -> None:
    code = f"import sys, bridge.cli; print({LOADED})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
