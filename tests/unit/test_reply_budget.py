"""The reply byte budget (DESIGN §6): 4013 past it, and batch elements past it never run."""

from __future__ import annotations

import orjson
import pytest

from bridge import api
from bridge.models import EmptyParams
from bridge.rpc.dispatch import Dispatcher
from bridge.rpc.settings import InvalidSettingError, TransportOptions

BIG = 10_000
"""Bytes of one ``test:big`` result (a string)."""
BUDGET = 35_000
"""Room for three ``test:big`` answers, not four."""

BIG_SPEC: api.ChannelSpec[EmptyParams, str] = api.ChannelSpec(
    "test:big", EmptyParams, str, "A 10,000-character string."
)


def counting_dispatcher(budget: int) -> tuple[Dispatcher, list[int]]:
    """A dispatcher serving ``test:big`` within ``budget`` bytes, and the list of its calls."""
    calls: list[int] = []
    registry = api.Registry()

    async def big(_: EmptyParams) -> str:
        calls.append(1)
        return "x" * BIG

    registry.add(BIG_SPEC, big, inline=True)
    return Dispatcher(registry, max_reply_bytes=budget), calls


def batch(count: int) -> str:
    return orjson.dumps([{"jsonrpc": "2.0", "method": "test:big", "id": i} for i in range(count)]).decode()


async def test_batch_elements_past_the_budget_get_4013_and_are_never_run() -> None:
    dispatcher, calls = counting_dispatcher(BUDGET)
    reply = await dispatcher.handle_frame(batch(100))
    assert reply is not None
    answers = orjson.loads(reply)
    assert [a["id"] for a in answers] == list(range(100))
    assert all("result" in a for a in answers[:3])
    too_large = answers[3:]
    assert {a["error"]["code"] for a in too_large} == {4013}
    assert {a["error"]["data"]["code"] for a in too_large} == {"RESPONSE_TOO_LARGE"}
    assert {a["error"]["data"]["context"]["limit"] for a in too_large} == {BUDGET}
    # The fourth element ran (its answer passed the budget); the 96 after it never did.
    assert len(calls) == 4
    # The frame holds the answers that fit plus one short error per element after them.
    assert len(reply) < BUDGET + 100 * 200


async def test_a_single_result_past_the_budget_gets_4013() -> None:
    dispatcher, _ = counting_dispatcher(BIG // 2)
    reply = await dispatcher.handle_frame('{"jsonrpc": "2.0", "method": "test:big", "id": "a"}')
    assert reply is not None
    answer = orjson.loads(reply)
    assert answer["id"] == "a"
    assert answer["error"]["code"] == 4013
    assert answer["error"]["data"] == {
        "code": "RESPONSE_TOO_LARGE",
        "name": "ResponseTooLargeError",
        "context": {"limit": BIG // 2},
    }


async def test_notifications_past_the_budget_still_run_and_are_not_answered() -> None:
    dispatcher, calls = counting_dispatcher(BUDGET)
    frame = [*orjson.loads(batch(5)), {"jsonrpc": "2.0", "method": "test:big"}]
    reply = await dispatcher.handle_frame(orjson.dumps(frame).decode())
    assert reply is not None
    assert len(orjson.loads(reply)) == 5
    assert len(calls) == 5  # four requests (the fourth passed the budget) and the notification


def test_the_reply_budget_has_a_range_check() -> None:
    assert TransportOptions().max_reply_bytes == 4 * 1024 * 1024
    with pytest.raises(InvalidSettingError, match="max_reply_bytes"):
        TransportOptions(max_reply_bytes=10)
    with pytest.raises(InvalidSettingError, match="max_handshake_bytes"):
        TransportOptions(max_handshake_bytes=10)
    with pytest.raises(InvalidSettingError, match="max_handshakes_per_peer"):
        TransportOptions(max_handshakes_per_peer=0)
