"""The end-of-run secret scan finds a planted secret wherever it is, and nothing else."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.secrets_registry import SecretRegistry

# Built by hand, not by KeyFormat.generate: the session's own registry must not know them.
ISSUED = "kr_" + "A1b2C3d4" * 4 + "Zz9Yy8"
UNRELATED = "kr_" + "Q7w8E9r0" * 4 + "Tt1Uu2"


def test_scan_finds_planted_secrets_in_files_and_error_bodies(tmp_path: Path) -> None:
    registry = SecretRegistry()
    issued, unrelated = ISSUED, UNRELATED
    registry.record_response(
        httpx.Response(200, json={"key": issued}, request=httpx.Request("POST", "http://x/"))
    )
    assert registry.secrets == {issued}
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "server.log").write_text(f"oops {issued} leaked")
    (tmp_path / "clean.log").write_text(f"an unknown token {unrelated} is no issued secret")
    (tmp_path / "server.stdout").write_text(f"shown once on purpose: {issued}")
    assert registry.scan_files(tmp_path) == {str(tmp_path / "nested" / "server.log"): {issued}}
    registry.record_response(
        httpx.Response(400, text=f"bad {issued}", request=httpx.Request("GET", "http://x/"))
    )
    assert registry.scan_error_bodies() == {issued}
