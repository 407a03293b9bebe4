"""`Client.verify`, `AsyncClient.verify` and `keyrack verify --url` against the real /verify."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from dataclasses import dataclass

import pytest

import keyrack
from keyrack.domain.keyformat import KeyFormat
from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin, new_org_admin
from tests.e2e.server import Server, keyrack_command

pytestmark = pytest.mark.e2e


@dataclass
class Keys:
    """One secret per verdict, from one org."""

    org_id: str
    key_id: str
    valid: str
    revoked: str
    unknown: str
    disabled: str
    expired: str


def create(admin: OrgAdmin, name: str, permissions: list[str]) -> dict:  # type: ignore[type-arg]
    response = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys", json={"name": name, "permissions": permissions}
    )
    assert response.status_code == 200, response.text
    ISSUED_SECRETS.append(response.json()["key"])
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def keys(server: Server) -> Keys:
    admin = new_org_admin(server)
    path = f"/orgs/{admin.org_id}/api_keys"
    valid = create(admin, "svc", ["read", "write"])
    revoked = create(admin, "gone", ["read"])
    assert admin.client.delete(f"{path}/{revoked['id']}").status_code == 200
    disabled = create(admin, "off", ["read"])
    assert admin.client.patch(f"{path}/{disabled['id']}", json={"enabled": False}).is_success
    rotating = create(admin, "rotating", ["read"])
    rotated = admin.client.post(f"{path}/{rotating['id']}/rotate", json={"grace_period_seconds": 1})
    assert rotated.status_code == 200
    ISSUED_SECRETS.append(rotated.json()["key"])
    time.sleep(1.2)  # the old secret's grace runs out: EXPIRED
    admin.client.close()
    return Keys(
        org_id=admin.org_id,
        key_id=valid["id"],
        valid=valid["key"],
        revoked=revoked["key"],
        unknown=KeyFormat("kr").generate(),  # well formed, never issued
        disabled=disabled["key"],
        expired=rotating["key"],
    )


# (which secret, permissions asked, expected status, code)
REFUSALS = [
    ("valid", ["admin"], 403, "INSUFFICIENT_PERMISSIONS"),
    ("revoked", [], 401, "NOT_FOUND"),
    ("disabled", [], 401, "DISABLED"),
    ("expired", [], 401, "EXPIRED"),
    ("unknown", [], 401, "NOT_FOUND"),
    ("malformed", [], 401, "MALFORMED"),
    ("missing", [], 401, "MISSING"),
]


NOT_KEYS = {"malformed": "kr_not-a-key", "missing": ""}


def secret_for(keys: Keys, which: str) -> str:
    return NOT_KEYS[which] if which in NOT_KEYS else str(getattr(keys, which))


def test_sync_client_verdicts(server: Server, keys: Keys) -> None:
    with keyrack.Client(server.url) as client:  # /verify needs no admin key
        verdict = client.verify(keys.valid, permissions=["read"])
        assert verdict.valid and verdict.code == "VALID" and verdict.status == 200
        assert (verdict.org_id, verdict.key_id, verdict.name) == (keys.org_id, keys.key_id, "svc")
        assert verdict.permissions == ["read", "write"]
        for which, permissions, status, code in REFUSALS:
            refused = client.verify(secret_for(keys, which), permissions=permissions)
            assert (refused.valid, refused.status, refused.code) == (False, status, code), which
            assert refused.detail and refused.key_id is None
        assert "admin" in client.verify(keys.valid, permissions=["admin"]).detail  # type: ignore[operator]


def test_async_client_verdicts(server: Server, keys: Keys) -> None:
    async def check() -> None:
        async with keyrack.AsyncClient(server.url) as client:
            verdict = await client.verify(keys.valid, permissions=["read", "write"])
            assert verdict.valid and verdict.key_id == keys.key_id
            for which, permissions, status, code in REFUSALS:
                refused = await client.verify(secret_for(keys, which), permissions=permissions)
                assert (refused.valid, refused.status, refused.code) == (False, status, code)

    asyncio.run(check())


def cli_verify(server: Server, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYRACK_URL": server.url}
    env.pop("KEYRACK_API_KEY", None)
    env.pop("KEYRACK_DATA_DIR", None)  # remote mode touches no database
    return subprocess.run(
        keyrack_command("verify", *args),
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_verify_exit_codes_and_json(server: Server, keys: Keys) -> None:
    valid = cli_verify(server, keys.valid, "--permission", "read")
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith(f"valid: {keys.key_id} (svc) in {keys.org_id}")
    as_json = json.loads(cli_verify(server, "-", "--json", stdin=keys.valid + "\n").stdout)
    assert as_json["valid"] is True and as_json["key_id"] == keys.key_id
    for which, permissions, _status, code in REFUSALS[:5]:
        args = [secret_for(keys, which), *(f"--permission={p}" for p in permissions)]
        refused = cli_verify(server, *args)
        assert refused.returncode == 5, (which, refused.stderr)
        assert refused.stdout.startswith(f"invalid: {code}: "), refused.stdout
        assert "Traceback" not in refused.stderr
        assert secret_for(keys, which) not in refused.stdout + refused.stderr
    forbidden = json.loads(cli_verify(server, keys.valid, "--permission", "admin", "--json").stdout)
    assert (forbidden["valid"], forbidden["status"]) == (False, 403)
    assert forbidden["code"] == "INSUFFICIENT_PERMISSIONS"
