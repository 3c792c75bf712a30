"""An application with a secret field of its own: a ``webhook`` collection and its CLI.

Run as ``python -m tests.helpers.webhook_app doctor|serve [flags]`` (from the checkout's
root): ``bridge.cli.main(registry=...)``, as an application's ``python myapp.py`` is.
"""

from __future__ import annotations

import sys

import bridge
from bridge.cli import main


class Hook(bridge.WireModel):
    """A webhook: ``{url, token, retries}`` on the wire; ``token`` is secret and optional."""

    url: str
    token: str | None = None
    retries: int = 3


HOOKS = bridge.Collection("hook", Hook, unique=("url",), secret=("token",))


def build_registry() -> bridge.Registry:
    """A registry serving the ``hook`` collection."""
    registry = bridge.Registry()
    registry.add_collection(HOOKS)
    return registry


if __name__ == "__main__":
    sys.exit(main(registry=build_registry()))
