"""The README's key lifecycle examples run verbatim against a real server."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.e2e.server import start_server
from tests.e2e.test_readme import README, json_documents


def lifecycle_block() -> str:
    section = README.read_text().split("## Key lifecycle", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README has no key lifecycle examples"
    return match.group(1)


def test_readme_lifecycle_examples_run_verbatim(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="readme-lifecycle")
    try:
        script = "set -euo pipefail\n" + lifecycle_block()
        result = subprocess.run(
            ["bash", "-c", script],
            env={
                **os.environ,
                "KEYRACK_URL": server.url,
                "KEYRACK_API_KEY": server.bootstrap_key(),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        before, _, after = result.stdout.partition("HTTP/1.1 200 OK")
        headers, _, rest = after.partition("\n\n")  # curl -D - prints the page's headers
        created, fetched, patched, rotated = json_documents(before)
        assert created["expires_at"] == "2030-01-01T00:00:00Z"
        assert fetched["id"] == patched["id"] == rotated["id"] == created["id"]
        assert patched["enabled"] is False and rotated["key"] != created["key"]
        assert 'rel="next"' in headers
        page, policy, replaced, events, revoked = json_documents(rest)
        assert isinstance(page, list) and len(page) == 1
        assert policy["max_active_keys"] is None and replaced["max_active_keys"] == 100
        assert [event["action"] for event in events] == ["key.rotate"]
        assert revoked == {"revoked": [created["id"]]}
    finally:
        server.stop()
