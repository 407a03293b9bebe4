"""`keyrack --url ...` against a real server process: the same commands, through the SDK."""

from __future__ import annotations

import json
import os
import subprocess

from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin
from tests.e2e.server import Server, free_port, keyrack_command


def remote(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    # No data dir on purpose: remote mode must not touch a database.
    env = {**os.environ, "KEYRACK_URL": url, "KEYRACK_API_KEY": key, "COLUMNS": "200"}
    env.pop("KEYRACK_DATA_DIR", None)
    return subprocess.run(
        keyrack_command(*args), env=env, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_keys_create_list_delete_remotely(server: Server, admin: OrgAdmin) -> None:
    created = remote(
        server.url, admin.key, "keys", "create", admin.org_id, "--name", "remote",
        "--permission", "read", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    ISSUED_SECRETS.append(body["key"])
    assert {"id", "name", "created_at", "permissions", "start", "key"} <= set(body)

    table = remote(server.url, admin.key, "keys", "list", admin.org_id)
    assert table.returncode == 0 and body["id"] in table.stdout and "remote" in table.stdout
    assert body["key"] not in table.stdout
    listed = json.loads(
        remote(server.url, admin.key, "keys", "list", admin.org_id, "--json").stdout
    )
    assert body["id"] in {item["id"] for item in listed}

    deleted = remote(server.url, admin.key, "keys", "delete", admin.org_id, body["id"], "--json")
    assert deleted.returncode == 0
    assert json.loads(deleted.stdout) == {"message": "API key deleted successfully"}
    again = remote(server.url, admin.key, "keys", "delete", admin.org_id, body["id"])
    assert_one_line_error(again, 3)
    assert "KEY_NOT_FOUND" in again.stderr


def test_remote_mistakes_are_one_line_with_their_exit_code(server: Server, admin: OrgAdmin) -> None:
    invalid = remote(
        server.url, admin.key, "keys", "create", admin.org_id, "--name", "x", "--permission", "root"
    )
    assert_one_line_error(invalid, 2)
    unauthorized = remote(server.url, "kr_" + "B" * 38, "keys", "list", admin.org_id)
    assert_one_line_error(unauthorized, 5)
    assert "kr_" + "B" * 38 not in unauthorized.stderr
    no_key = remote(server.url, "", "keys", "list", admin.org_id)
    assert_one_line_error(no_key, 2)
    refused = remote(f"http://127.0.0.1:{free_port()}", admin.key, "keys", "list", admin.org_id)
    assert_one_line_error(refused, 8)
    assert "cannot reach the keyrack server" in refused.stderr
