"""The main job end to end: start ``bridge serve`` as a sidecar, drive it, stop it.

1. Starts ``bridge serve --port 0`` on a data directory (a fresh temporary one unless
   ``--data-dir`` is given) and waits for its ready line on stdout.
2. Runs ``examples/renderer.py`` against the connection file it wrote.
3. Sends SIGTERM and checks that the server exits 0 and removes its connection file.

Usage::

    python examples/demo.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


def run(data_dir: Path) -> int:
    """Run the demo against ``data_dir``; returns the exit code."""
    print(f"data directory: {data_dir}")
    server = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            print("bridge serve exited before it was ready", file=sys.stderr)
            return 1
        ready = json.loads(line)
        if ready.get("event") != "ready":
            print(f"bridge serve could not start: {ready.get('message')}", file=sys.stderr)
            return 1
        print(f"bridge serve is ready at {ready['url']} (pid {ready['pid']})")
        connection_file = data_dir / "connection.json"
        code = subprocess.call(
            [sys.executable, str(HERE / "renderer.py"), "--connection-file", str(connection_file)]
        )
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        server_code = server.wait(timeout=STOP_TIMEOUT_S)
    print(f"bridge serve stopped with exit code {server_code}")
    if (data_dir / "connection.json").exists():
        print("the connection file was left behind", file=sys.stderr)
        return 1
    return code or server_code


def main() -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a new temporary one)")
    args = parser.parse_args()
    if args.data_dir is not None:
        return run(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as tmp:
        return run(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
