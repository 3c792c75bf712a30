"""Entry point of the frozen sidecar: the ``bridge`` command (``bridge serve``, ``call``...)."""

import sys

from bridge.cli import main

if __name__ == "__main__":
    sys.exit(main())
