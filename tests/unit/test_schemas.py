"""The committed schemas/ must be what the code generates (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path

from bridge import schemas

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_match_the_code() -> None:
    for name, content in schemas.generated_files().items():
        assert (ROOT / "schemas" / name).read_bytes() == content, f"schemas/{name} is stale: run make schemas"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert schemas.write_schemas(tmp_path) == 0
    assert schemas.write_schemas(tmp_path, check=True) == 0
    (tmp_path / schemas.OPENRPC_FILE).write_text("{}\n")
    assert schemas.write_schemas(tmp_path, check=True) == 1
