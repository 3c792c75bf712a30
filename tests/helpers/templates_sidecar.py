"""An application's own sidecar: ``bridge serve`` with the example's prompt-template collection.

Run as ``python -m tests.helpers.templates_sidecar serve [bridge serve flags]`` (from the
checkout's root): every ``bridge serve`` flag, ready line, connection file and shutdown,
with ``examples/prompt_templates.py``'s registry (its ``prompt-template:*`` channels and
``prompt-template:changed`` topic) beside bridge's own.
"""

from __future__ import annotations

import sys

from bridge.cli import main
from tests.helpers.app_sidecar import load_example

if __name__ == "__main__":
    sys.exit(main(registry=load_example("prompt_templates").build_registry()))
