"""``bridge/openrpc.json`` (package data read by ``rpc.discover``) is the committed, generated document."""

from __future__ import annotations

from pathlib import Path

from bridge import schemas

ROOT = Path(__file__).resolve().parents[2]


def test_the_packaged_document_is_the_generated_one() -> None:
    packaged = (ROOT / "bridge" / "openrpc.json").read_bytes()
    assert packaged == schemas.canonical_bytes(schemas.builtin_document()), "run 'make schemas'"
    assert packaged == (ROOT / "schemas" / "openrpc.json").read_bytes()
