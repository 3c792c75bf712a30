"""An application's own sidecar: ``bridge serve`` with the example's ``app:echo`` and ``app:tick``.

Run as ``python -m tests.helpers.app_sidecar serve [bridge serve flags]`` (from the
checkout's root): the same flags, ready line and shutdown as ``bridge serve``, with one
channel and one topic more, so its ``schemaHash`` differs from a stock server's.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from bridge.cli import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom_channel.py"


def load_example() -> ModuleType:
    """Import ``examples/custom_channel.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location("custom_channel_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first, as importlib's own recipe does: pydantic resolves a model's
    # postponed annotations (``Annotated[...]``) through ``sys.modules[model.__module__]``.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(main(registry=load_example().build_registry()))
