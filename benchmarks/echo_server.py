"""The transport floor: a raw ``websockets`` echo server, compression off.

Usage: ``python benchmarks/echo_server.py --loop asyncio|uvloop`` → prints
``{"event": "ready", "url": ...}`` and echoes every message until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=256 * 1024) as server:
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write(json.dumps({"event": "ready", "url": f"ws://127.0.0.1:{port}"}) + "\n")
        sys.stdout.flush()
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    choice = parser.parse_args().loop
    factory: Callable[[], asyncio.AbstractEventLoop]
    if choice == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
