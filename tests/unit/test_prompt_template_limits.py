"""The example's longest template fits one request frame, however a client encodes it."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import bridge
from tests.helpers.templates import load_example


def test_the_longest_template_fits_the_message_limit_in_any_json_encoding() -> None:
    model = load_example().PromptTemplate
    longest = model.model_fields["template"].metadata[0].max_length
    limit = bridge.TransportOptions().max_message_bytes
    # Worst case per char: an astral char escaped as two \\uXXXX (12 bytes; raw UTF-8 is 4).
    for text in ("\U0001f600" * longest, "\x01" * longest, "中" * longest):
        model(name="n", template=text)
        item = {"name": "n" * 100, "template": text, "model": "0" * 36}
        frame = {
            "jsonrpc": "2.0",
            "id": 2**53 - 1,
            "method": "prompt-template:create",
            "params": {"item": item},
        }
        for encoded in (json.dumps(frame).encode(), json.dumps(frame, ensure_ascii=False).encode()):
            assert len(encoded) < limit
    with pytest.raises(ValidationError):
        model(name="n", template="x" * (longest + 1))
