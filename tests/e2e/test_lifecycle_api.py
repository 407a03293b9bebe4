"""Key lifecycle over HTTP against a real server: read, update, expiry, rotation, pagination,
idempotency, bulk revoke."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin, new_org_admin
from tests.e2e.server import Server
from tests.e2e.test_api_contract import KEY_FIELDS, assert_problem


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(admin: OrgAdmin, **body: object) -> dict:  # type: ignore[type-arg]
    response = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys", json={"name": "k", "permissions": ["read"], **body}
    )
    assert response.status_code == 200, response.text
    ISSUED_SECRETS.append(response.json()["key"])
    return response.json()  # type: ignore[no-any-return]


def test_get_and_patch_a_key(server: Server, admin: OrgAdmin) -> None:
    expires = rfc3339(datetime.now(UTC) + timedelta(days=30))
    created = create(
        admin,
        permissions=["read", "admin"],
        expires_at=expires,
        rate_limit={"limit": 100, "window_seconds": 60},
        quota={"limit": 10000, "period": "month"},
    )
    path = f"/orgs/{admin.org_id}/api_keys/{created['id']}"
    fetched = admin.client.get(path).json()
    assert fetched == {field: created[field] for field in KEY_FIELDS}
    assert fetched["expires_at"] == expires and fetched["enabled"] is True
    assert fetched["last_used_at"] is None
    assert created["key"] not in admin.client.get(path).text

    patched = admin.client.patch(path, json={"name": "renamed", "quota": None})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["quota"]) == ("renamed", None)
    assert patched.json()["rate_limit"] == {"limit": 100, "window_seconds": 60}

    own = server.client(created["key"])
    assert own.get(f"/orgs/{admin.org_id}/api_keys").status_code == 200
    assert admin.client.patch(path, json={"enabled": False}).json()["enabled"] is False
    assert_problem(own.get(f"/orgs/{admin.org_id}/api_keys"), 401, "DISABLED")
    admin.client.patch(path, json={"enabled": True})
    assert own.get(f"/orgs/{admin.org_id}/api_keys").status_code == 200
    admin.client.patch(path, json={"permissions": ["read"]})
    assert_problem(own.get(f"/orgs/{admin.org_id}/api_keys"), 403, "INSUFFICIENT_PERMISSIONS")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"name": None}, "name"),
        ({"enabled": "false"}, "enabled"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "next week"}, "expires_at"),
        ({"rate_limit": {"limit": 0, "window_seconds": 60}}, "rate_limit.limit"),
        ({"quota": {"limit": 5, "period": "year"}}, "quota.period"),
        ({"start": "kr_mine"}, "start"),
    ],
)
def test_patch_input_errors_name_the_field(admin: OrgAdmin, body: dict, field: str) -> None:  # type: ignore[type-arg]
    key = create(admin)
    response = admin.client.patch(f"/orgs/{admin.org_id}/api_keys/{key['id']}", json=body)
    problem = assert_problem(response, 400)
    assert field in [error["field"] for error in problem["errors"]]


def test_reads_and_changes_stay_inside_the_org(server: Server, admin: OrgAdmin) -> None:
    other = new_org_admin(server)
    theirs = create(other)
    for method in ("GET", "PATCH", "DELETE"):
        response = admin.client.request(
            method, f"/orgs/{admin.org_id}/api_keys/{theirs['id']}", json={"name": "x"}
        )
        assert_problem(response, 404, "KEY_NOT_FOUND")
    rotate = admin.client.post(f"/orgs/{admin.org_id}/api_keys/{theirs['id']}/rotate")
    assert_problem(rotate, 404)
    limited = new_org_admin(server, permissions=("read", "admin"))
    key = create(limited)
    response = limited.client.patch(
        f"/orgs/{limited.org_id}/api_keys/{key['id']}", json={"permissions": ["write"]}
    )
    assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")


def test_expiry_and_rotation_grace_run_out(server: Server, admin: OrgAdmin) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    past = admin.client.post(
        path, json={"name": "x", "permissions": ["read"], "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert "expires_at" in assert_problem(past, 400)["detail"]
    soon = datetime.now(UTC) + timedelta(seconds=3)
    expiring = create(admin, permissions=["read", "admin"], expires_at=rfc3339(soon))
    rotating = create(admin, permissions=["read", "admin"])
    rotated = admin.client.post(
        f"{path}/{rotating['id']}/rotate", json={"grace_period_seconds": 2}
    ).json()
    ISSUED_SECRETS.append(rotated["key"])
    assert rotated["id"] == rotating["id"] and rotated["key"] != rotating["key"]
    rotated_expiring = admin.client.post(f"{path}/{expiring['id']}/rotate").json()
    ISSUED_SECRETS.append(rotated_expiring["key"])
    assert rotated_expiring["expires_at"] == expiring["expires_at"]  # never made permanent
    assert_problem(server.client(expiring["key"]).get(path), 401, "NOT_FOUND")  # no grace
    for secret in (rotating["key"], rotated["key"], rotated_expiring["key"]):
        assert server.client(secret).get(path).status_code == 200
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.2)
    assert_problem(server.client(rotating["key"]).get(path), 401, "EXPIRED")
    assert_problem(server.client(rotated_expiring["key"]).get(path), 401, "EXPIRED")
    assert server.client(rotated["key"]).get(path).status_code == 200
    for grace in (-1, 604_801, "60"):
        response = admin.client.post(
            f"{path}/{rotating['id']}/rotate", json={"grace_period_seconds": grace}
        )
        assert "grace_period_seconds" in assert_problem(response, 400)["detail"]


def next_url(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    assert link.endswith('>; rel="next"') and link.startswith("</orgs/")
    return link[1 : link.index(">")]


def test_following_links_returns_every_key_once_under_churn(admin: OrgAdmin) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    initial = [admin_key["id"] for admin_key in admin.client.get(path).json()]
    initial += [create(admin)["id"] for _ in range(9)]
    seen: list[str] = []
    deleted: list[str] = []
    url: str | None = f"{path}?limit=3"
    for _ in range(20):  # bounded: 10 keys at 3 per page
        if url is None:
            break
        response = admin.client.get(url)
        assert response.status_code == 200
        assert len(response.json()) <= 3
        seen += [item["id"] for item in response.json()]
        create(admin)
        unseen = [k for k in initial[1:] if k not in seen and k not in deleted]
        if unseen:
            admin.client.delete(f"{path}/{unseen[-1]}")
            deleted.append(unseen[-1])
        url = next_url(response)
    assert url is None
    assert len(seen) == len(set(seen))
    assert {k for k in initial if k not in deleted} <= set(seen)
    assert not set(deleted) & set(seen)
    for query in ("limit=0", "limit=1001", "limit=x", "cursor=nonsense"):
        assert_problem(admin.client.get(f"{path}?{query}"), 400)
    assert next_url(admin.client.get(f"{path}?limit=1000")) is None


def test_idempotent_create_and_rotate(server: Server, admin: OrgAdmin) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    body = {"name": "once", "permissions": ["read"]}
    first = admin.client.post(path, json=body, headers={"Idempotency-Key": "create-1"})
    again = admin.client.post(path, json=body, headers={"Idempotency-Key": "create-1"})
    ISSUED_SECRETS.append(first.json()["key"])
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert [k["name"] for k in admin.client.get(path).json()].count("once") == 1
    changed = admin.client.post(
        path, json={**body, "name": "twice"}, headers={"Idempotency-Key": "create-1"}
    )
    assert_problem(changed, 422, "IDEMPOTENCY_KEY_REUSED")
    too_long = admin.client.post(path, json=body, headers={"Idempotency-Key": "x" * 256})
    assert "Idempotency-Key" in assert_problem(too_long, 400)["detail"]

    second_admin = server.client(create(admin, permissions=["read", "write", "admin"])["key"])
    other = second_admin.post(path, json=body, headers={"Idempotency-Key": "create-1"})
    ISSUED_SECRETS.append(other.json()["key"])
    assert other.status_code == 200 and other.json()["id"] != first.json()["id"]  # per caller

    rotate = f"{path}/{first.json()['id']}/rotate"
    rotated = admin.client.post(rotate, headers={"Idempotency-Key": "rotate-1"})
    replayed = admin.client.post(rotate, headers={"Idempotency-Key": "rotate-1"})
    ISSUED_SECRETS.append(rotated.json()["key"])
    assert rotated.status_code == 200 and replayed.json() == rotated.json()
    assert server.client(rotated.json()["key"]).get(path).status_code == 403  # valid, not admin
    failed = admin.client.post(
        path, json={"name": "", "permissions": ["read"]}, headers={"Idempotency-Key": "fix-me"}
    )
    assert_problem(failed, 400)
    fixed = admin.client.post(
        path, json={"name": "ok", "permissions": ["read"]}, headers={"Idempotency-Key": "fix-me"}
    )
    ISSUED_SECRETS.append(fixed.json()["key"])
    assert fixed.status_code == 200  # a failed request leaves no claim behind


def test_bulk_revoke(server: Server, admin: OrgAdmin) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    keys = [create(admin) for _ in range(4)]
    response = admin.client.post(
        f"{path}/revoke", json={"key_ids": [keys[0]["id"], keys[1]["id"], "key-unknown"]}
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["revoked"]) == sorted([keys[0]["id"], keys[1]["id"]])
    assert_problem(server.client(keys[0]["key"]).get(path), 401, "NOT_FOUND")
    for bad in (
        {},
        {"key_ids": []},
        {"key_ids": ["nope"]},
        {"key_ids": [keys[2]["id"]], "all_except_caller": True},
        {"all_except_caller": False},
    ):
        assert_problem(admin.client.post(f"{path}/revoke", json=bad), 400)
    rest = admin.client.post(f"{path}/revoke", json={"all_except_caller": True}).json()
    assert sorted(rest["revoked"]) == sorted([keys[2]["id"], keys[3]["id"]])
    assert len(admin.client.get(path).json()) == 1  # only the caller's key is left
