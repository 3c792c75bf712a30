"""A collection of your own: prompt templates that pick an LLM config as their model.

Run: ``.venv/bin/python examples/prompt_templates.py`` — starts a bridge on a temporary
data directory, creates an llm-config and a template using it through a real client,
then deletes the config: the template's ``model`` becomes null with an ``updated`` event.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

import bridge
from bridge.client import BridgeClient
from bridge.keystore import SecretBackend

# ---- the definition and its registration (the part an application writes) ----------------


class PromptTemplate(bridge.WireModel):
    """A reusable prompt: ``{name, template, model}`` on the wire."""

    name: bridge.DisplayName  # trimmed, 1-100 chars, no control or bidi characters
    template: Annotated[
        str,
        # JSON spends at most 12 bytes on a char (two \uXXXX): 20,000 always fit a 256 KiB frame.
        Field(
            max_length=20_000,
            description="Prompt text; {placeholders} allowed. At most 20,000 chars: fits one 256 KiB frame.",
        ),
    ]
    model: Annotated[str | None, Field(description="Id of the llm-config to run it with.")] = None


PROMPT_TEMPLATES = bridge.Collection(
    "prompt-template",
    PromptTemplate,
    unique=("name",),  # unique ignoring case, enforced by the database
    references={"model": bridge.Ref("llm-config", on_delete="set-null")},
    description="Prompt templates",
)


def build_registry() -> bridge.Registry:
    """A registry serving the prompt-template collection (bridge adds its own channels)."""
    registry = bridge.Registry()
    registry.add_collection(PROMPT_TEMPLATES)
    return registry


# ---- the demo ------------------------------------------------------------------------------

OPENAI_KEY = "sk-example-" + "0" * 32


async def main(data_dir: Path) -> dict[str, Any]:
    """Start the bridge in process, use the collection through a client, return what was seen."""
    running = await bridge.start_bridge(
        bridge.BridgeOptions(data_dir=data_dir, secrets=bridge.SecretOptions(backend=SecretBackend.FILE)),
        build_registry(),
    )
    try:
        async with BridgeClient(running.url, running.token, schema_hash=running.schema_hash()) as client:
            events: asyncio.Queue[Any] = asyncio.Queue()
            client.on("prompt-template:changed", events.put_nowait)
            config = await client.invoke(
                "llm-config:create",
                {"config": {"customName": "OpenAI", "provider": "openai", "apiKey": OPENAI_KEY}},
            )
            item = {"name": "Summarize", "template": "Summarize: {text}", "model": config["id"]}
            created = await client.invoke("prompt-template:create", {"item": item})
            await client.invoke("llm-config:delete", {"id": config["id"]})
            seen = [await asyncio.wait_for(events.get(), 10) for _ in range(2)]
            snapshot = await client.invoke("prompt-template:snapshot")
    finally:
        await running.close()
    return {"created": created, "events": seen, "snapshot": snapshot}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(main(Path(tmp)))
    print("created:", result["created"])
    print("events:", [(e["type"], e["revision"], e.get("item", {}).get("model")) for e in result["events"]])
    print("snapshot:", result["snapshot"])
