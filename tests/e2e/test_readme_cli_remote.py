"""The README's CLI remote-mode block runs against a real server, as a reader would paste it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.server import KEY_PATTERN, Server, start_server

README = Path(__file__).resolve().parents[2] / "README.md"
VERIFY_LINE = re.compile(r"^keyrack verify .*\n", re.M)


def remote_mode_block() -> str:
    section = README.read_text().split("### Remote mode", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README has no remote-mode block"
    return match.group(1)


def serves_verify(server: Server) -> bool:
    """Whether this build has the /verify endpoint (it lands from its own branch): a bare GET
    without a key answers 401 MISSING there, and 404 where the route does not exist."""
    return httpx.get(server.url + "/verify", timeout=5).status_code != 404


def test_readme_remote_mode_block_runs(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="readme-remote")
    try:
        admin_key = server.bootstrap_key()
        script = remote_mode_block().replace(
            "export KEYRACK_API_KEY=kr_...", f"export KEYRACK_API_KEY={admin_key}"
        )
        # Its scratch files go to this test's directory, so parallel runs do not share them.
        script = script.replace("/tmp/", f"{tmp_path}/")
        assert VERIFY_LINE.search(script)
        if not serves_verify(server):
            script = VERIFY_LINE.sub("", script)
        env = {
            **os.environ,
            "KEYRACK_URL": server.url,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "COLUMNS": "200",
        }
        env.pop("KEYRACK_DATA_DIR", None)  # remote mode must not need a database
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr

        created = json.loads((tmp_path / "ci-key.json").read_text())
        rotated = [key for key in KEY_PATTERN.findall(result.stdout) if key != admin_key]
        assert len(rotated) == 1 and rotated[0] != created["key"]  # rotate printed one secret
        assert "key.create" in result.stdout and "7776000" in result.stdout
        with server.client(admin_key) as client:
            listed = client.get("/orgs/default/api_keys").json()
            policy = client.get("/orgs/default/policy").json()
        assert len(listed) == 1 and listed[0]["id"] != created["id"]  # revoked; spare deleted
        assert (policy["max_key_lifetime_seconds"], policy["require_expiry"]) == (7776000, True)
    finally:
        server.stop()
