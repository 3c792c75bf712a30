"""The public registry: the example application's own channel and topic, end to end."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.app_sidecar import load_example


async def test_custom_channel_and_topic_are_served_and_published(tmp_path: Path) -> None:
    example = load_example()
    seen = await example.main(tmp_path / "data")
    assert seen["echo"] == example.EchoResult(text="héllo", length=5)
    assert seen["tick"] == {"count": 1}
    assert example.APP_ECHO.name in seen["channels"]
    assert seen["channels"] == sorted(seen["channels"])
    methods = {m["name"] for m in seen["document"]["methods"]}
    assert {example.APP_ECHO.name, "llm-config:create", "bridge:hello"} <= methods
    assert example.APP_TICK.name in str(seen["document"])
