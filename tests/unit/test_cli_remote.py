"""CLI remote mode on the documented API (a MockTransport fake): output, --json, exit codes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import keyrack
from keyrack.cli import app
from keyrack.cli_remote import common
from tests.unit.fake_keyrack import FakeKeyrack


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKeyrack:
    server = FakeKeyrack()

    def client(url: str, **options: Any) -> keyrack.Client:
        return keyrack.Client(url, transport=server.transport(), **options)

    monkeypatch.setattr(common, "Client", client)
    return server


def run(*args: str, key: str | None = "kr_admin", stdin: str | None = None) -> Any:
    env = {"KEYRACK_URL": "http://keyrack.test", "KEYRACK_API_KEY": key or ""}
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


def test_get_update_rotate_with_tables_and_json(fake: FakeKeyrack) -> None:
    key_id, _ = fake.add_key("svc", ["read", "write"])
    shown = run("keys", "get", "acme", key_id)
    assert shown.exit_code == 0 and key_id in shown.stdout and "read,write" in shown.stdout
    assert "│ yes" in shown.stdout  # enabled, said like in the list table

    updated = run(
        "keys", "update", "acme", key_id, "--disable", "--expires-at", "30d",
        "--rate-limit", "100/60", "--quota", "none", "--json",
    )  # fmt: skip
    assert updated.exit_code == 0, updated.output
    body = json.loads(updated.stdout)
    assert body["enabled"] is False and body["rate_limit"] == {"limit": 100, "window_seconds": 60}
    assert body["expires_at"].endswith("Z") and body["quota"] is None

    rotated = run("keys", "rotate", "acme", key_id, "--grace-period", "60")
    assert rotated.exit_code == 0
    assert rotated.stdout.strip() == fake.secrets_by_key_id[key_id]  # stdout: the secret alone
    assert json.loads(fake.requests[-1].content) == {"grace_period_seconds": 60}


def test_revoke_needs_ids_or_confirmation(fake: FakeKeyrack) -> None:
    ids = [fake.add_key(f"k{i}", ["read"])[0] for i in range(3)]
    assert run("keys", "revoke", "acme").exit_code == common.EXIT_INVALID
    one = run("keys", "revoke", "acme", ids[1], "--json")
    assert json.loads(one.stdout) == {"revoked": [ids[1]]}
    refused = run("keys", "revoke", "acme", "--all-except-caller", stdin="n\n")
    assert refused.exit_code != 0 and set(fake.keys) == {ids[0], ids[2]}
    done = run("keys", "revoke", "acme", "--all-except-caller", "--yes")
    assert done.exit_code == 0 and "revoked 1 key(s)" in done.stdout


def test_audit_list_stops_at_the_limit(fake: FakeKeyrack) -> None:
    for i in range(5):
        fake.add_key(f"k{i}", ["read"])
    listed = run("audit", "list", "acme", "--limit", "3", "--since", "7d", "--json")
    assert listed.exit_code == 0, listed.output
    assert [event["details"]["name"] for event in json.loads(listed.stdout)] == ["k0", "k1", "k2"]
    assert fake.requests[0].url.params["limit"] == "3"
    assert run("audit", "list", "acme").stdout.count("key.create") == 5


def test_policy_set_changes_only_what_is_named(fake: FakeKeyrack) -> None:
    changed = run(
        "policy", "set", "acme", "--max-active-keys", "10", "--require-expiry",
        "--default-quota", "5000/month", "--json",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert fake.policy["max_active_keys"] == 10 and fake.policy["require_expiry"] is True
    assert fake.policy["default_quota"] == {"limit": 5000, "period": "month"}
    assert fake.policy["allowed_permissions"] == ["read", "write", "admin"]
    cleared = run("policy", "set", "acme", "--max-active-keys", "none")
    assert cleared.exit_code == 0 and fake.policy["max_active_keys"] is None
    assert "require_expiry" in run("policy", "get", "acme").stdout
    assert run("policy", "set", "acme").exit_code == common.EXIT_INVALID
    bad = run("policy", "set", "acme", "--default-quota", "5/year")
    assert bad.exit_code == common.EXIT_INVALID and bad.stderr.startswith("error: ")


def test_verify_exit_codes(fake: FakeKeyrack) -> None:
    _, secret = fake.add_key("svc", ["read"])
    assert run("verify", secret, "--permission", "read").exit_code == 0
    assert run("verify", "-", stdin=secret + "\n").exit_code == 0
    assert run("verify", secret, "--permission", "admin").exit_code == common.EXIT_AUTH
    refused = run("verify", "kr_unknown", "--json")
    assert refused.exit_code == common.EXIT_AUTH
    assert json.loads(refused.stdout)["code"] == "NOT_FOUND"
    _, limited = fake.add_key("busy", ["read"], rate_limit={"limit": 0, "window_seconds": 1})
    assert run("verify", limited).exit_code == common.EXIT_RATE_LIMITED
    assert run("verify", key=None).exit_code == common.EXIT_INVALID


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [(400, 2), (401, 5), (403, 5), (404, 3), (409, 4), (429, 9), (500, 1), (503, 6)],
)
def test_server_errors_become_one_line_and_an_exit_code(
    monkeypatch: pytest.MonkeyPatch, status: int, exit_code: int
) -> None:
    def answer(_request: httpx.Request) -> httpx.Response:
        body = {"status": status, "code": "SOME_CODE", "detail": "what went\nwrong"}
        return httpx.Response(status, json=body, headers={"Retry-After": "3600"})

    def client(url: str, **options: Any) -> keyrack.Client:
        return keyrack.Client(url, transport=httpx.MockTransport(answer), **options)

    monkeypatch.setattr(common, "Client", client)
    result = run("keys", "get", "acme", "key-x")
    assert result.exit_code == exit_code
    assert result.stderr == f"error: what went wrong (SOME_CODE, HTTP {status})\n"


def test_remote_only_commands_say_they_need_a_server() -> None:
    result = CliRunner().invoke(app, ["keys", "get", "acme", "key-x"], env={"KEYRACK_URL": ""})
    assert result.exit_code == common.EXIT_INVALID
    assert "pass --url or set KEYRACK_URL" in result.stderr


def test_a_bad_url_is_invalid_configuration() -> None:
    result = CliRunner().invoke(
        app, ["keys", "list", "acme", "--url", "localhost:8000", "--key", "kr_x"]
    )
    assert result.exit_code == common.EXIT_INVALID
    assert result.stderr.startswith("error: ") and "http://" in result.stderr
