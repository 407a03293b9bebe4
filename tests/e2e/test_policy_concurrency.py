"""The org's maximum of active keys holds under parallel creates against a real multi-worker
server, on PostgreSQL (row lock on the org) and on SQLite (BEGIN IMMEDIATE)."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import new_org_admin
from tests.e2e.server import keyrack_command, start_server

MAX_ACTIVE = 6  # the admin key counts too
ATTEMPTS = 24


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_max_active_keys_holds_under_parallel_requests(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env: dict[str, str] = {}
    if database == "postgres":
        env["KEYRACK_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        migrated = subprocess.run(
            keyrack_command("migrate"),
            env={**os.environ, "KEYRACK_DATA_DIR": str(tmp_path / "limits-data"), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrated.returncode == 0, migrated.stderr
    server = start_server(
        tmp_path, env=env, name="limits", args=("--no-bootstrap", "--workers", "2")
    )
    try:
        admin = new_org_admin(server)
        path = f"/orgs/{admin.org_id}/api_keys"
        policy = admin.client.put(
            f"/orgs/{admin.org_id}/policy", json={"max_active_keys": MAX_ACTIVE}
        )
        assert policy.status_code == 200, policy.text

        def attempt(index: int) -> httpx.Response:
            with server.client(admin.key) as client:
                return client.post(path, json={"name": f"p{index}", "permissions": ["read"]})

        with ThreadPoolExecutor(max_workers=12) as pool:
            responses = list(pool.map(attempt, range(ATTEMPTS)))
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] * (MAX_ACTIVE - 1) + [400] * (ATTEMPTS - MAX_ACTIVE + 1)
        refused = [r.json() for r in responses if r.status_code == 400]
        assert {problem["code"] for problem in refused} == {"POLICY_VIOLATION"}
        assert all("max_active_keys" in problem["detail"] for problem in refused)
        assert len(admin.client.get(path).json()) == MAX_ACTIVE
    finally:
        server.stop()
