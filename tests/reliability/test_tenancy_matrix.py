"""Tenancy and permission matrix: every operation of the live OpenAPI document, every caller.

Callers: no key, an admin key of another organization, keys of the target organization holding
each permission set, and its deleted, expired and disabled keys. Management operations answer
200 only to a live key of the same organization holding `admin`; the others get the documented
401/403/404 problem, and the target organization's keys, secrets, policy and audit log (less
the auth.failed entries that refusals add by design) are unchanged afterwards. An operation the
OpenAPI document lists but this matrix cannot classify fails the test, so none is forgotten.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from keyrack.api.app import create_app
from keyrack.domain.model import utcnow
from keyrack.domain.permissions import ALL_PERMISSIONS
from keyrack.runtime import Runtime
from keyrack.service import audit
from keyrack.service import keys as key_service
from keyrack.service import policy as policy_service
from tests.random_refs import random_org_id

ORG_SCOPED = "/orgs/{org_id}"
# Operations outside an organization, and what they answer whoever calls.
PUBLIC_STATUS = {("GET", "/healthz"): 200, ("GET", "/readyz"): 200, ("GET", "/metrics"): 200}
VERIFY = {("GET", "/verify"), ("POST", "/verify")}
PERMISSION_SETS = [
    combo for size in (1, 2, 3) for combo in itertools.combinations(ALL_PERMISSIONS, size)
]


@dataclass(frozen=True)
class Caller:
    label: str
    secret: str | None
    status: int  # what a management operation on the target org answers this caller
    code: str
    verify_code: str  # what /verify answers for this caller's key


@dataclass(frozen=True)
class Org:
    org_id: str
    target_key_id: str  # a key the operations act on
    target_secret: str


def new_key(runtime: Runtime, org_id: str, permissions: tuple[str, ...]) -> tuple[str, str]:
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="matrix",
        permissions=list(permissions),
    )
    return created.key.id, created.secret


def new_org(runtime: Runtime) -> Org:
    org_id = random_org_id("matrix")
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    key_id, secret = new_key(runtime, org_id, ("read",))
    return Org(org_id, key_id, secret)


def refused_callers(runtime: Runtime, org: Org) -> list[Caller]:
    """Every caller that must not manage `org`; their keys live in `org` unless said otherwise."""
    other = new_org(runtime)
    _, other_admin = new_key(runtime, other.org_id, ALL_PERMISSIONS)
    callers = [
        Caller("no key", None, 401, "MISSING", "MISSING"),
        Caller("admin of another org", other_admin, 404, "ORG_NOT_FOUND", "VALID"),
    ]
    for permissions in PERMISSION_SETS:
        if "admin" not in permissions:
            _, secret = new_key(runtime, org.org_id, permissions)
            callers.append(
                Caller("+".join(permissions), secret, 403, "INSUFFICIENT_PERMISSIONS", "VALID")
            )
    for state, code in (("deleted", "NOT_FOUND"), ("expired", "EXPIRED"), ("disabled", "DISABLED")):
        key_id, secret = new_key(runtime, org.org_id, ALL_PERMISSIONS)
        if state == "deleted":
            key_service.delete_key(uow=runtime.uow(write=True), org_id=org.org_id, key_id=key_id)
        else:
            with runtime.uow(write=True) as uow:
                key = uow.repo.get_key(org_id=org.org_id, key_id=key_id)
                assert key is not None
                # Written directly: the API refuses an expiry in the past, and waiting for one
                # to pass would cost seconds.
                past = utcnow() - timedelta(seconds=60)
                changed = replace(key, expires_at=past) if state == "expired" else key
                uow.repo.update_key(replace(changed, enabled=state != "disabled"))
                uow.commit()
            runtime.events.applied([key_id])
        callers.append(Caller(f"{state} admin", secret, 401, code, code))
    return callers


def snapshot(runtime: Runtime, org_id: str) -> dict[str, Any]:
    """What a refused call must not change (last_used_at moves when a key is used: left out)."""
    keys = key_service.list_keys(uow=runtime.uow(), org_id=org_id)
    events, _ = audit.list_events(
        uow=runtime.uow(),
        org_id=org_id,
        action=None,
        since=None,
        until=None,
        limit=1000,
        cursor=None,
    )
    return {
        "keys": [replace(key, last_used_at=None) for key in keys],
        "policy": policy_service.get_policy(uow=runtime.uow(), org_id=org_id),
        "audit": [event for event in events if event.action != "auth.failed"],
    }


def request_for(operation: dict[str, Any], path: str, org: Org) -> tuple[str, dict[str, Any]]:
    """The operation's URL on `org`'s target key, with its documented example body."""
    url = path.replace("{org_id}", org.org_id).replace("{key_id}", org.target_key_id)
    schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
    )
    body = dict(schema["examples"][0]) if schema.get("examples") else None
    if body is not None and "key_ids" in body:
        body["key_ids"] = [org.target_key_id]
    return url, {"json": body} if body is not None else {}


def headers_of(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=True) as client:
        yield client


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.get("/openapi.json").json()
    found = [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    unclassified = [
        (method, path)
        for method, path, _ in found
        if not path.startswith(ORG_SCOPED)
        and (method, path) not in PUBLIC_STATUS
        and (method, path) not in VERIFY
    ]
    assert not unclassified, f"classify these operations in the matrix: {unclassified}"
    return found


def test_refused_callers_get_the_documented_answer_and_change_nothing(
    runtime: Runtime, client: TestClient
) -> None:
    org = new_org(runtime)
    callers = refused_callers(runtime, org)
    before = snapshot(runtime, org.org_id)
    checked = 0
    for (method, path, operation), caller in itertools.product(operations(client), callers):
        url, extra = request_for(operation, path, org)
        if (method, path) in VERIFY:
            extra = {"json": {"key": caller.secret}} if method == "POST" else {}
        response = client.request(method, url, headers=headers_of(caller.secret), **extra)
        where = f"{method} {path} as {caller.label}: {response.text[:300]}"
        if path.startswith(ORG_SCOPED):
            assert response.status_code == caller.status, where
            assert response.headers["content-type"] == "application/problem+json", where
            assert response.json()["code"] == caller.code, where
        elif (method, path) in VERIFY:
            assert response.json()["code"] == caller.verify_code, where
        else:
            assert response.status_code == PUBLIC_STATUS[(method, path)], where
        checked += 1
    assert snapshot(runtime, org.org_id) == before
    assert runtime.verifier.verify(org.target_secret).valid  # not rotated, revoked or disabled
    print(f"FIGURE tenancy matrix: {checked} refused calls, target org unchanged")


@pytest.mark.parametrize("permissions", [p for p in PERMISSION_SETS if "admin" in p], ids="+".join)
def test_admin_keys_of_the_org_may_call_every_operation(
    runtime: Runtime, client: TestClient, permissions: tuple[str, ...]
) -> None:
    for method, path, operation in operations(client):
        if not path.startswith(ORG_SCOPED):
            continue
        org = new_org(runtime)  # each operation on a fresh org: they delete and revoke
        _, secret = new_key(runtime, org.org_id, permissions)
        url, extra = request_for(operation, path, org)
        if "permissions" in (extra.get("json") or {}) and method != "PUT":
            extra["json"]["permissions"] = list(permissions)  # grant only what the caller holds
        response = client.request(method, url, headers=headers_of(secret), **extra)
        assert response.status_code == 200, f"{method} {path}: {response.text[:300]}"
