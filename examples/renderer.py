"""A renderer in Python: manage LLM configs through a running ``bridge serve``.

It reads the server's connection file, opens two connections (a "settings window" that
writes and a "status bar" that only listens), creates a few configs with fake keys of a
valid shape, lists them, updates one, deletes one, and prints every ``llm-config:changed``
notification the listening connection receives.

Usage::

    python examples/renderer.py --connection-file DATA_DIR/connection.json
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import string
import sys
from pathlib import Path
from typing import Any

from bridge.client import BridgeClient, read_connection_file
from bridge.errors import ValidationError


def fake_key(prefix: str, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """Return a random key of a provider's shape (never a real key)."""
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length - len(prefix)))


async def run(connection_file: Path) -> int:
    """Drive the server once; returns 0 when every step behaved as documented."""
    info = read_connection_file(connection_file)
    run_id = secrets.token_hex(3)
    seen: list[dict[str, Any]] = []
    done = asyncio.Event()
    expected_events = 5  # 3 creates, 1 update, 1 delete

    def on_changed(event: dict[str, Any]) -> None:
        seen.append(event)
        name = event.get("config", {}).get("customName", "")
        print(f"  [status bar] {event['type']:<8} revision={event['revision']:<4} {event['id']} {name}")
        if len(seen) == expected_events:
            done.set()

    async with (
        BridgeClient(info.url, info.token, unix_socket=info.socket) as window,
        BridgeClient(info.url, info.token, unix_socket=info.socket) as status_bar,
    ):
        status_bar.on("llm-config:changed", on_changed)
        hello = await window.hello()
        print(f"connected to bridge {hello.server_version} (protocol {hello.protocol_version})")

        print("creating three configs:")
        openai = await window.create_config(
            {"customName": f"OpenAI {run_id}", "provider": "openai", "apiKey": fake_key("sk-", 51)}
        )
        claude = await window.create_config(
            {
                "customName": f"Claude {run_id}",
                "provider": "anthropic",
                "apiKey": fake_key("sk-ant-", 60),
            }
        )
        local = await window.create_config(
            {
                "customName": f"Local Llama {run_id}",
                "provider": "custom",
                "apiKey": fake_key("local-", 24),
                "baseUrl": "http://localhost:11434/v1",
                "useAuthHeader": False,
            }
        )
        for view in (openai, claude, local):
            print(f"  created {view.custom_name!r} key={view.api_key_preview} v{view.version}")

        try:
            await window.create_config({"customName": "Broken", "provider": "google", "apiKey": "short"})
        except ValidationError as exc:
            print("a key of the wrong shape is refused:", [(e.field, e.code) for e in exc.errors])

        print("listing:")
        for view in await window.list_configs():
            print(f"  {view.custom_name:<24} {view.provider:<10} {view.api_key_preview}")

        renamed = await window.update_config(claude.id, {"customName": f"Claude (work) {run_id}"})
        print(f"updated {renamed.custom_name!r} to version {renamed.version}")
        deleted = await window.delete_config(openai.id)
        print(f"deleted {openai.custom_name!r}: {deleted}")

        await asyncio.wait_for(done.wait(), timeout=10)
        revisions = [event["revision"] for event in seen]
        if revisions != sorted(set(revisions)):
            print("notifications arrived out of order:", revisions, file=sys.stderr)
            return 1
        print(f"the status bar received {len(seen)} notifications, revisions {revisions}")
        # Leave the store as we found it, apart from the two configs kept for inspection.
    return 0


def main() -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connection-file", type=Path, required=True)
    args = parser.parse_args()
    return asyncio.run(run(args.connection_file))


if __name__ == "__main__":
    sys.exit(main())
