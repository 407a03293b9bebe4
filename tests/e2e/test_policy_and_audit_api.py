"""Org policy and audit log over HTTP, the failed-authentication bursts, and OpenAPI coverage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from keyrack.service import audit
from tests.e2e.conftest import OrgAdmin, new_org_admin, server_runtime
from tests.e2e.server import Server, start_server
from tests.e2e.test_api_contract import assert_problem
from tests.e2e.test_lifecycle_api import create, next_url, rfc3339

DEFAULT_POLICY = {
    "max_key_lifetime_seconds": None,
    "require_expiry": False,
    "allowed_permissions": ["read", "write", "admin"],
    "max_active_keys": None,
    "default_rate_limit": None,
    "default_quota": None,
}


def test_policy_rules_apply_to_creates_and_updates(admin: OrgAdmin) -> None:
    policy_path = f"/orgs/{admin.org_id}/policy"
    keys_path = f"/orgs/{admin.org_id}/api_keys"
    assert admin.client.get(policy_path).json() == DEFAULT_POLICY
    policy = {
        "max_key_lifetime_seconds": 86400,
        "require_expiry": True,
        "allowed_permissions": ["read", "admin"],
        "max_active_keys": 3,
        "default_rate_limit": {"limit": 10, "window_seconds": 1},
        "default_quota": {"limit": 500, "period": "day"},
    }
    response = admin.client.put(policy_path, json=policy)
    assert response.status_code == 200, response.text
    assert response.json() == policy == admin.client.get(policy_path).json()

    in_a_day = rfc3339(datetime.now(UTC) + timedelta(hours=23))
    for body, rule in [
        ({"name": "x", "permissions": ["read"]}, "require_expiry"),
        ({"name": "x", "permissions": ["write"], "expires_at": in_a_day}, "allowed_permissions"),
        (
            {
                "name": "x",
                "permissions": ["read"],
                "expires_at": rfc3339(datetime.now(UTC) + timedelta(days=2)),
            },
            "max_key_lifetime_seconds",
        ),
    ]:
        problem = assert_problem(admin.client.post(keys_path, json=body), 400, "POLICY_VIOLATION")
        assert rule in problem["detail"]
    created = create(admin, expires_at=in_a_day)
    assert created["rate_limit"] == policy["default_rate_limit"]
    assert created["quota"] == policy["default_quota"]
    assert create(admin, expires_at=in_a_day, rate_limit=None)["rate_limit"] is None
    full = admin.client.post(
        keys_path, json={"name": "x", "permissions": ["read"], "expires_at": in_a_day}
    )
    assert "max_active_keys" in assert_problem(full, 400, "POLICY_VIOLATION")["detail"]
    patched = admin.client.patch(f"{keys_path}/{created['id']}", json={"expires_at": None})
    assert "require_expiry" in assert_problem(patched, 400)["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_active_keys": 0}, "max_active_keys"),
        ({"max_key_lifetime_seconds": "1d"}, "max_key_lifetime_seconds"),
        ({"allowed_permissions": ["root"]}, "allowed_permissions"),
        ({"default_rate_limit": {"limit": 1}}, "default_rate_limit.window_seconds"),
        ({"default_quota": {"limit": 1, "period": "hour"}}, "default_quota.period"),
        ({"extra": True}, "extra"),
    ],
)
def test_invalid_policy_is_400_naming_the_field(admin: OrgAdmin, body: dict, field: str) -> None:  # type: ignore[type-arg]
    problem = assert_problem(admin.client.put(f"/orgs/{admin.org_id}/policy", json=body), 400)
    assert field in [error["field"] for error in problem["errors"]]


def test_audit_log_records_who_did_what_from_where(server: Server, admin: OrgAdmin) -> None:
    path = f"/orgs/{admin.org_id}/audit_events"
    keys_path = f"/orgs/{admin.org_id}/api_keys"
    before = rfc3339(datetime.now(UTC) - timedelta(seconds=1))
    key = create(admin)
    admin.client.patch(f"{keys_path}/{key['id']}", json={"name": "n"})
    admin.client.post(f"{keys_path}/{key['id']}/rotate", headers={"X-Request-ID": "req-42"})
    admin.client.put(f"/orgs/{admin.org_id}/policy", json={})
    admin.client.delete(f"{keys_path}/{key['id']}")
    events = admin.client.get(path).json()
    assert [e["action"] for e in events] == [
        "key.delete",
        "policy.update",
        "key.rotate",
        "key.update",
        "key.create",
        "key.create",  # the admin key itself, created by the local operator
    ]
    assert events[-1]["actor_key_id"] is None
    rotate = events[2]
    assert rotate["target"] == key["id"] and rotate["request_id"] == "req-42"
    assert rotate["client_ip"] == "127.0.0.1" and rotate["org_id"] == admin.org_id
    assert set(rotate) == {
        "id",
        "occurred_at",
        "org_id",
        "actor_key_id",
        "action",
        "target",
        "client_ip",
        "request_id",
        "details",
    }
    assert [e["action"] for e in admin.client.get(f"{path}?action=key.update").json()] == [
        "key.update"
    ]
    since = events[4]["occurred_at"]
    recent = admin.client.get(path, params={"since": since}).json()
    assert {e["id"] for e in events[:5]} <= {e["id"] for e in recent}
    assert all(e["occurred_at"] >= since for e in recent)
    older = admin.client.get(path, params={"until": since}).json()
    assert all(e["occurred_at"] < since for e in older)
    assert admin.client.get(path, params={"until": before}).json() == []
    page = admin.client.get(path, params={"limit": 2, "action": "key.create"})
    assert next_url(page) is None
    page = admin.client.get(path, params={"limit": 2})
    following = admin.client.get(next_url(page) or "")
    assert [e["id"] for e in following.json()] == [e["id"] for e in events[2:4]]
    assert key["key"] not in admin.client.get(path).text
    for query in ("action=key.explode", "since=yesterday", "limit=0", "cursor=zz"):
        assert_problem(admin.client.get(f"{path}?{query}"), 400)
    reader = server.client(create(admin, permissions=["read"])["key"])
    assert_problem(reader.get(path), 403)
    assert_problem(new_org_admin(server).client.get(path), 404)


def test_failed_authentications_are_audited_in_bursts(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="bursts")
    try:
        admin = new_org_admin(server)
        keys_path = f"/orgs/{admin.org_id}/api_keys"
        disabled = create(admin, permissions=["read", "admin"])
        reader = create(admin, permissions=["read"])
        admin.client.patch(f"{keys_path}/{disabled['id']}", json={"enabled": False})
        for _ in range(5):
            assert server.client(disabled["key"]).get(keys_path).status_code == 401
        for _ in range(3):
            assert server.client(reader["key"]).get(keys_path).status_code == 403
        httpx.get(server.url + keys_path, headers={"X-API-Key": "kr_" + "0" * 38})  # no org
        runtime = server_runtime(server)
    finally:
        server.stop()  # shutting down writes what is still pending
    events = audit.list_events(uow=runtime.uow(), org_id=admin.org_id, action="auth.failed")[0]
    summary = {(e.target, e.details["reason"], e.details["count"]) for e in events}
    assert summary == {
        (disabled["id"], "DISABLED", 5),
        (reader["id"], "INSUFFICIENT_PERMISSIONS", 3),
    }
    assert all(e.client_ip == "127.0.0.1" for e in events)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_documents_every_lifecycle_endpoint(server: Server) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/orgs/{org_id}/api_keys": {"get", "post"},
        "/orgs/{org_id}/api_keys/{key_id}": {"get", "patch", "delete"},
        "/orgs/{org_id}/api_keys/{key_id}/rotate": {"post"},
        "/orgs/{org_id}/api_keys/revoke": {"post"},
        "/orgs/{org_id}/audit_events": {"get"},
        "/orgs/{org_id}/policy": {"get", "put"},
    }
    components = schema["components"]["schemas"]
    for path, methods in expected.items():
        assert set(paths[path]) >= methods, path
        for method in methods:
            operation = paths[path][method]
            assert operation.get("summary") and operation.get("description"), (path, method)
            for status in ("200", "400", "401", "403", "404"):
                assert status in operation["responses"], (path, method, status)
            problem = operation["responses"]["401"]["content"]
            assert "application/problem+json" in problem
            if "requestBody" in operation:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert body.get("examples"), (path, method)
                for ref in _refs(body):
                    assert ref.rsplit("/", 1)[1] in components, ref
    create_op = paths["/orgs/{org_id}/api_keys"]["post"]
    assert {"409", "422"} <= set(create_op["responses"])
    assert "Idempotency-Key" in [p["name"] for p in create_op["parameters"]]
    assert "Link" in paths["/orgs/{org_id}/api_keys"]["get"]["responses"]["200"]["headers"]
