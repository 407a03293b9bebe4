"""The README's Python SDK example runs verbatim against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.server import start_server

README = Path(__file__).resolve().parents[2] / "README.md"


def sdk_example() -> str:
    section = README.read_text().split("## Python SDK", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README has no Python SDK example"
    return match.group(1)


def test_readme_sdk_example_runs(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="readme-sdk")
    try:
        env = {**os.environ, "KEYRACK_URL": server.url, "KEYRACK_API_KEY": server.bootstrap_key()}
        result = subprocess.run(
            [sys.executable, "-c", sdk_example()],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("store this secret now: kr_")
        assert any("billing worker" in line for line in lines)
        assert re.search(r"^404 KEY_NOT_FOUND ", lines[-1])
    finally:
        server.stop()
