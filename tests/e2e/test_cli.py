"""The `keyrack` command as a user meets it: bootstrap, org and key commands, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from tests.e2e.server import keyrack_command, start_server


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        keyrack_command(*args), env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_round_trip_and_user_errors(tmp_path: Path) -> None:
    env = {**os.environ, "KEYRACK_DATA_DIR": str(tmp_path / "data")}
    assert run(env, "orgs", "create", "acme").returncode == 0
    duplicate = run(env, "orgs", "create", "acme")
    assert duplicate.returncode == 4
    assert duplicate.stderr.startswith("error: ") and "Traceback" not in duplicate.stderr
    assert len(duplicate.stderr.strip().splitlines()) == 1
    orgs = json.loads(run(env, "orgs", "list", "--json").stdout)
    assert [org["id"] for org in orgs] == ["acme"]

    created = run(
        env,
        "keys",
        "create",
        "acme",
        "--name",
        "ci",
        "--permission",
        "read",
        "--permission",
        "admin",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert set(body) == {"id", "name", "created_at", "permissions", "start", "last_used_at", "key"}
    assert body["permissions"] == ["read", "admin"]

    listed = json.loads(run(env, "keys", "list", "acme", "--json").stdout)
    assert [item["id"] for item in listed] == [body["id"]]
    assert body["key"] not in json.dumps(listed)

    for args, code in [
        (("keys", "create", "nope", "--name", "x", "--permission", "read"), 3),
        (("keys", "create", "acme", "--name", "x", "--permission", "root"), 2),
        (("keys", "create", "acme", "--name", "", "--permission", "read"), 2),
        (("keys", "delete", "acme", "key-doesnotexist"), 3),
        (("orgs", "create", "bad org!"), 2),
    ]:
        result = run(env, *args)
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.startswith("error: ")
        assert "Traceback" not in result.stderr

    deleted = run(env, "keys", "delete", "acme", body["id"])
    assert deleted.returncode == 0
    assert "API key deleted successfully" in deleted.stdout
    assert json.loads(run(env, "keys", "list", "acme", "--json").stdout) == []


def test_serve_bootstraps_once_and_the_printed_key_works(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="boot")
    try:
        key = server.bootstrap_key()
        assert "export KEYRACK_API_KEY=" in server.stdout()
        response = httpx.get(
            server.url + "/orgs/default/api_keys", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200
        assert [item["name"] for item in response.json()] == ["bootstrap admin"]
    finally:
        server.stop()
    again = start_server(tmp_path, name="boot", port=None)
    try:
        assert "kr_" not in again.stdout()  # not an empty database any more: nothing printed
    finally:
        again.stop()


def test_no_bootstrap_leaves_the_database_empty(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="prod", args=("--no-bootstrap",))
    try:
        assert "kr_" not in server.stdout()
        env = {**os.environ, "KEYRACK_DATA_DIR": str(server.data_dir)}
        assert json.loads(run(env, "orgs", "list", "--json").stdout) == []
    finally:
        server.stop()


def test_production_refuses_an_insecure_configuration(tmp_path: Path) -> None:
    env = {**os.environ, "KEYRACK_DATA_DIR": str(tmp_path / "d"), "KEYRACK_ENV": "production"}
    result = run(env, "orgs", "list")
    assert result.returncode == 2
    assert "KEYRACK_PEPPER" in result.stderr and "Traceback" not in result.stderr


def test_pepper_file_is_created_private(tmp_path: Path) -> None:
    env = {**os.environ, "KEYRACK_DATA_DIR": str(tmp_path / "d")}
    assert run(env, "orgs", "list").returncode == 0
    pepper = tmp_path / "d" / "pepper"
    assert pepper.stat().st_mode & 0o777 == 0o600
    assert len(pepper.read_text().strip()) >= 32
