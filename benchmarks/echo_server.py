"""The transport floors: raw ``websockets`` echo servers, compression off.

- ``--impl asyncio`` (default): websockets' own asyncio server (``serve`` + ``async for``).
- ``--impl sansio``: websockets' public sans-I/O ``ServerProtocol`` inside a plain
  ``asyncio.Protocol`` — the layer bridge's server is built on, with nothing else: what
  bridge's transport can at best reach. Echoes of one ``data_received`` leave in one write.

Usage: ``python benchmarks/echo_server.py --loop asyncio|uvloop [--impl asyncio|sansio]``
→ prints ``{"event": "ready", "url": ...}`` and echoes every message until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import cast

from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import SEND_EOF
from websockets.server import ServerProtocol

MAX_SIZE = 256 * 1024


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class SansIoEcho(asyncio.Protocol):
    """Echo on the sans-I/O layer: receive_data → events_received → send_text → one write."""

    def __init__(self) -> None:
        """A fresh protocol per connection."""
        self.ws = ServerProtocol(max_size=MAX_SIZE)
        self.transport = cast("asyncio.Transport", None)
        self.parts: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        """Accept the handshake, echo every text message, write once."""
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                ws.send_response(ws.accept(event))
            elif isinstance(event, Frame):
                if event.opcode is Opcode.TEXT and event.fin:
                    ws.send_text(event.data)
                elif event.opcode in {Opcode.TEXT, Opcode.CONT}:
                    self.parts.append(bytes(event.data))
                    if event.fin:
                        ws.send_text(b"".join(self.parts))
                        self.parts = []
        self.flush()

    def eof_received(self) -> None:
        """Let the protocol finish."""
        self.ws.receive_eof()
        self.flush()

    def flush(self) -> None:
        """Write what the protocol queued; close after its end-of-stream marker."""
        chunks = self.ws.data_to_send()
        if not chunks or self.transport.is_closing():
            return
        if SEND_EOF in chunks:
            self.transport.write(b"".join(chunks))
            self.transport.close()
        else:
            self.transport.write(b"".join(chunks))


def ready(port: int) -> None:
    sys.stdout.write(json.dumps({"event": "ready", "url": f"ws://127.0.0.1:{port}"}) + "\n")
    sys.stdout.flush()


async def main(impl: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if impl == "sansio":
        server = await loop.create_server(SansIoEcho, "127.0.0.1", 0)
        ready(server.sockets[0].getsockname()[1])
        await stop.wait()
        server.close()
        return
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=MAX_SIZE) as served:
        ready(served.sockets[0].getsockname()[1])
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--impl", choices=["asyncio", "sansio"], default="asyncio")
    args = parser.parse_args()
    choice = args.loop
    factory: Callable[[], asyncio.AbstractEventLoop]
    if choice == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(args.impl))
