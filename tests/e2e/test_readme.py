"""The README's walkthrough runs verbatim against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.e2e.server import start_server

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    section = text.split("## Walkthrough", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README has no walkthrough block"
    return match.group(1)


def json_documents(text: str) -> list[object]:
    """The JSON values curl printed back to back."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        value, position = decoder.raw_decode(text, position)
        documents.append(value)
    return documents


def test_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="readme")
    try:
        script = walkthrough().replace(
            "export KEYRACK_API_KEY=kr_...", f"export KEYRACK_API_KEY={server.bootstrap_key()}"
        )
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**os.environ, "KEYRACK_URL": server.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        listed, created, deleted = json_documents(result.stdout)
        assert isinstance(listed, list)
        assert created["name"] == "New API Key"
        assert deleted == {"message": "API key deleted successfully"}
    finally:
        server.stop()
