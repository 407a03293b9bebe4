"""Lifecycle use cases on real SQLite and PostgreSQL: pagination, idempotency, rotation,
policy under concurrency, audit log."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from keyrack.domain.audit import AUTH_FAILED, KEY_CREATE, KEY_ROTATE, POLICY_UPDATE, RequestTrail
from keyrack.domain.errors import (
    IdempotencyInFlight,
    IdempotencyKeyReused,
    PolicyViolation,
    Unauthenticated,
)
from keyrack.domain.model import CreatedKey, Principal, utcnow
from keyrack.runtime import Runtime
from keyrack.service import audit, idempotency, key_changes, policy
from keyrack.service import keys as service
from keyrack.service.auth import authenticate
from keyrack.service.auth_failures import AuthFailureLog
from keyrack.service.idempotency import IdempotentRequest
from keyrack.store.idempotency_queries import IdempotencyScope
from tests.random_refs import random_org_id, random_suffix


def new_org(runtime: Runtime) -> str:
    org_id = random_org_id()
    service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    return org_id


def create_key(runtime: Runtime, org_id: str, **extra: Any) -> CreatedKey:
    return service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name=extra.pop("name", "k"),
        permissions=extra.pop("permissions", ["read"]),
        **extra,
    )


def auth_code(runtime: Runtime, secret: str, **extra: Any) -> str:
    try:
        authenticate(
            uow=runtime.uow(),
            key_format=runtime.key_format,
            hasher=runtime.hasher,
            secret=secret,
            **extra,
        )
    except Unauthenticated as error:
        return error.code
    return "VALID"


def test_following_cursors_returns_every_key_once_under_churn(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    initial = [create_key(runtime, org_id).key.id for _ in range(23)]
    seen: list[str] = []
    deleted: set[str] = set()
    added: set[str] = set()
    cursor: str | None = None
    for page_number in range(50):  # bounded: 23 keys at 4 per page need far fewer
        page, cursor = service.list_keys_page(
            uow=runtime.uow(), org_id=org_id, limit=4, cursor=cursor
        )
        assert len(page) <= 4
        seen += [key.id for key in page]
        added.add(create_key(runtime, org_id).key.id)  # churn between pages
        unseen = [k for k in initial if k not in seen and k not in deleted]
        if page_number % 2 == 0 and unseen:
            victim = unseen[-1]
            service.delete_key(uow=runtime.uow(write=True), org_id=org_id, key_id=victim)
            deleted.add(victim)
        if cursor is None:
            break
    assert cursor is None
    assert len(seen) == len(set(seen)), "a key was returned twice"
    assert {k for k in initial if k not in deleted} <= set(seen)
    assert not deleted & set(seen)
    assert set(seen) <= set(initial) | added


def _claim(runtime: Runtime, org_id: str, caller: str, key: str, body: object) -> IdempotentRequest:
    return IdempotentRequest(
        scope=IdempotencyScope(org_id=org_id, caller_key_id=caller, idempotency_key=key),
        fingerprint=idempotency.request_fingerprint("POST", f"/orgs/{org_id}/api_keys", body),
        sealer=runtime.sealer,
        render=lambda created: {"id": created.key.id, "key": created.secret},
    )


def test_idempotent_create_replays_rejects_and_expires(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    first = _claim(runtime, org_id, "key-caller1", "idem-1", {"name": "a"})
    assert idempotency.claim(uow=runtime.uow(write=True), request=first) is None
    with pytest.raises(IdempotencyInFlight):
        idempotency.claim(uow=runtime.uow(write=True), request=first)
    other_body = _claim(runtime, org_id, "key-caller1", "idem-1", {"name": "b"})
    with pytest.raises(IdempotencyKeyReused):
        idempotency.claim(uow=runtime.uow(write=True), request=other_body)
    created = create_key(runtime, org_id, idempotency=first)
    replay = idempotency.claim(uow=runtime.uow(write=True), request=first)
    assert replay == {"id": created.key.id, "key": created.secret}
    assert len(service.list_keys(uow=runtime.uow(), org_id=org_id)) == 1
    other_caller = _claim(runtime, org_id, "key-caller2", "idem-1", {"name": "a"})
    assert idempotency.claim(uow=runtime.uow(write=True), request=other_caller) is None
    with runtime.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT response_body FROM idempotency_records WHERE org_id = :o"), {"o": org_id}
        ).all()
    assert created.secret not in repr(stored)
    later = utcnow() + timedelta(hours=24, seconds=1)
    assert idempotency.claim(uow=runtime.uow(write=True), request=first, now=later) is None


def test_an_abandoned_claim_is_taken_over(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    request = _claim(runtime, org_id, "key-caller1", "idem-" + random_suffix(), {})
    assert idempotency.claim(uow=runtime.uow(write=True), request=request) is None
    stale = utcnow() + timedelta(seconds=61)
    assert idempotency.claim(uow=runtime.uow(write=True), request=request, now=stale) is None


def test_key_and_stored_response_commit_together(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    request = replace(
        _claim(runtime, org_id, "key-caller1", "idem-x", {}),
        render=lambda created: 1 / 0,  # type: ignore[arg-type,return-value]
    )
    assert idempotency.claim(uow=runtime.uow(write=True), request=request) is None
    with pytest.raises(ZeroDivisionError):
        create_key(runtime, org_id, idempotency=request)
    assert service.list_keys(uow=runtime.uow(), org_id=org_id) == []


def test_rotation_grace_period_on_the_database(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    created = create_key(runtime, org_id)
    rotated = key_changes.rotate_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        key_id=created.key.id,
        grace_period_seconds=60,
    )
    assert auth_code(runtime, created.secret) == "VALID"
    after_grace = utcnow() + timedelta(seconds=61)
    assert auth_code(runtime, created.secret, now=after_grace) == "EXPIRED"
    assert auth_code(runtime, rotated.secret, now=after_grace) == "VALID"
    again = key_changes.rotate_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        key_id=created.key.id,
    )
    assert auth_code(runtime, rotated.secret) == "NOT_FOUND"
    assert auth_code(runtime, created.secret) == "NOT_FOUND"
    assert auth_code(runtime, again.secret) == "VALID"
    listed = service.get_key(uow=runtime.uow(), org_id=org_id, key_id=created.key.id)
    assert listed.start == runtime.key_format.start_of(again.secret)


def test_max_active_keys_holds_under_concurrent_creates(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    policy.set_policy(uow=runtime.uow(write=True), org_id=org_id, document={"max_active_keys": 5})
    outcomes: list[str] = []

    def worker() -> None:
        for _ in range(3):
            try:
                create_key(runtime, org_id)
                outcomes.append("created")
            except PolicyViolation:
                outcomes.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created"] * 5 + ["refused"] * 13
    assert len(service.list_keys(uow=runtime.uow(), org_id=org_id)) == 5


def test_audit_log_filters_pages_and_holds_no_secret(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    caller = Principal(org_id=org_id, key_id="key-actor", permissions=("read", "admin"))
    trail = RequestTrail(client_ip="192.0.2.1", request_id="req-1")
    before = utcnow()
    secrets = [create_key(runtime, org_id, caller=caller, trail=trail).secret for _ in range(3)]
    policy.set_policy(
        uow=runtime.uow(write=True), org_id=org_id, document={"require_expiry": False}
    )
    events, cursor = audit.list_events(uow=runtime.uow(), org_id=org_id, limit=2)
    assert [e.action for e in events] == [POLICY_UPDATE, KEY_CREATE]
    rest, end = audit.list_events(uow=runtime.uow(), org_id=org_id, limit=2, cursor=cursor)
    assert [e.action for e in rest] == [KEY_CREATE, KEY_CREATE] and end is None
    created = audit.list_events(uow=runtime.uow(), org_id=org_id, action=KEY_CREATE)[0]
    assert len(created) == 3
    assert {(e.actor_key_id, e.client_ip, e.request_id) for e in created} == {
        ("key-actor", "192.0.2.1", "req-1")
    }
    assert len(audit.list_events(uow=runtime.uow(), org_id=org_id, since=before)[0]) == 4
    assert audit.list_events(uow=runtime.uow(), org_id=org_id, until=before)[0] == []
    everything = repr(audit.list_events(uow=runtime.uow(), org_id=org_id)[0])
    for secret in secrets:
        assert secret not in everything
        assert runtime.hasher.hash(secret).hex() not in everything


def test_failed_authentication_bursts_reach_the_database(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    failures = AuthFailureLog(lambda: runtime.uow(write=True))
    for _ in range(4):
        failures.note(org_id=org_id, key_id="key-refused", reason="DISABLED", client_ip="::1")
    failures.close()
    events = audit.list_events(uow=runtime.uow(), org_id=org_id, action=AUTH_FAILED)[0]
    assert [(e.target, e.details["count"], e.details["reason"]) for e in events] == [
        ("key-refused", 4, "DISABLED")
    ]


def test_rotate_is_audited_and_revoke_all_spares_the_caller(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    mine = create_key(runtime, org_id, permissions=["admin"]).key
    others = [create_key(runtime, org_id).key.id for _ in range(3)]
    caller = Principal(org_id=org_id, key_id=mine.id, permissions=("admin",))
    key_changes.rotate_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        key_id=others[0],
        caller=caller,
    )
    assert audit.list_events(uow=runtime.uow(), org_id=org_id, action=KEY_ROTATE)[0]
    revoked = key_changes.revoke_keys(
        uow=runtime.uow(write=True), org_id=org_id, all_except_caller=True, caller=caller
    )
    assert revoked == sorted(others)
    assert [k.id for k in service.list_keys(uow=runtime.uow(), org_id=org_id)] == [mine.id]
