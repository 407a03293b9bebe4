"""Lifecycle use cases against the fake unit of work: update, rotate, revoke, policy, bursts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyrack.domain.audit import AUTH_FAILED, KEY_CREATE, KEY_REVOKE, KEY_ROTATE, KEY_UPDATE
from keyrack.domain.errors import (
    InvalidInput,
    KeyNotFound,
    PermissionDenied,
    PolicyViolation,
    Unauthenticated,
)
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.domain.limits import RateLimit
from keyrack.domain.model import CreatedKey, Principal
from keyrack.domain.policy import OrgPolicy
from keyrack.service import key_changes
from keyrack.service import keys as service
from keyrack.service.auth import authenticate
from keyrack.service.auth_failures import AuthFailureLog
from tests.unit.fakes import FakeUnitOfWork

FORMAT = KeyFormat("kr")
HASHER = SecretHasher(b"k" * 32)
ADMIN = Principal(org_id="acme", key_id="key-admin", permissions=("read", "admin"))


class RecordingEvents:
    def __init__(self) -> None:
        self.log: list[tuple[str, list[str]]] = []

    def record(self, uow: object, key_ids: list[str]) -> None:
        self.log.append(("record", list(key_ids)))

    def applied(self, key_ids: list[str]) -> None:
        self.log.append(("applied", list(key_ids)))


@pytest.fixture
def uow() -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    service.create_org(uow=uow, org_id="acme")
    return uow


def create(uow: FakeUnitOfWork, **overrides: Any) -> CreatedKey:
    arguments: dict[str, Any] = {
        "uow": uow,
        "key_format": FORMAT,
        "hasher": HASHER,
        "org_id": "acme",
        "name": "k",
        "permissions": ["read"],
    }
    arguments.update(overrides)
    return service.create_key(**arguments)


def auth(uow: FakeUnitOfWork, secret: str, now: datetime | None = None) -> Principal:
    return authenticate(uow=uow, key_format=FORMAT, hasher=HASHER, secret=secret, now=now)


def test_create_applies_policy_defaults_unless_given_and_audits(uow: FakeUnitOfWork) -> None:
    uow.repo.policies["acme"] = OrgPolicy(default_rate_limit=RateLimit(5, 60))
    inherited = create(uow).key
    explicit_none = create(uow, rate_limit=None).key
    assert inherited.rate_limit == RateLimit(5, 60)
    assert explicit_none.rate_limit is None
    assert [e.action for e in uow.repo.audit] == [KEY_CREATE, KEY_CREATE]
    assert uow.repo.audit[0].target == inherited.id


def test_create_refuses_what_the_policy_forbids(uow: FakeUnitOfWork) -> None:
    uow.repo.policies["acme"] = OrgPolicy(max_active_keys=1, allowed_permissions=("read",))
    with pytest.raises(PolicyViolation, match="allow"):
        create(uow, permissions=["admin"])
    create(uow)
    with pytest.raises(PolicyViolation) as raised:
        create(uow)
    assert raised.value.field == "max_active_keys"
    assert len(uow.repo.keys) == 1


def test_update_changes_fields_and_announces_every_change(uow: FakeUnitOfWork) -> None:
    key = create(uow).key
    events = RecordingEvents()
    renamed = key_changes.update_key(
        uow=uow, org_id="acme", key_id=key.id, changes={"name": " new "}, events=events
    )
    assert renamed.name == "new"
    disabled = key_changes.update_key(
        uow=uow, org_id="acme", key_id=key.id, changes={"enabled": False}, events=events
    )
    assert disabled.enabled is False
    assert events.log == [("record", [key.id]), ("applied", [key.id])] * 2
    assert uow.repo.audit[-1].action == KEY_UPDATE
    assert uow.repo.audit[-1].details == {"changed": ["enabled"]}


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({}, InvalidInput),
        ({"id": "key-x"}, InvalidInput),
        ({"enabled": "no"}, InvalidInput),
        ({"permissions": ["write"]}, PermissionDenied),  # ADMIN holds read and admin only
        ({"expires_at": datetime(2000, 1, 1, tzinfo=UTC)}, InvalidInput),
        ({"rate_limit": {"limit": 0, "window_seconds": 1}}, InvalidInput),
    ],
)
def test_update_validates_like_create(
    uow: FakeUnitOfWork, changes: dict[str, object], error: type[Exception]
) -> None:
    key = create(uow).key
    with pytest.raises(error):
        key_changes.update_key(uow=uow, org_id="acme", key_id=key.id, changes=changes, caller=ADMIN)
    assert uow.repo.keys[key.id] == key


def test_update_of_another_orgs_key_is_not_found(uow: FakeUnitOfWork) -> None:
    service.create_org(uow=uow, org_id="globex")
    theirs = create(uow, org_id="globex").key
    with pytest.raises(KeyNotFound):
        key_changes.update_key(uow=uow, org_id="acme", key_id=theirs.id, changes={"name": "x"})


def test_rotation_grace_then_expiry_and_key_expiry_is_kept(uow: FakeUnitOfWork) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    created = create(uow, expires_at=expires)
    events = RecordingEvents()
    rotated = key_changes.rotate_key(
        uow=uow,
        key_format=FORMAT,
        hasher=HASHER,
        org_id="acme",
        key_id=created.key.id,
        grace_period_seconds=60,
        events=events,
    )
    assert rotated.key.id == created.key.id and rotated.secret != created.secret
    assert rotated.key.expires_at == expires
    assert events.log == [("record", [created.key.id]), ("applied", [created.key.id])]
    assert auth(uow, created.secret).key_id == created.key.id  # within the grace period
    assert auth(uow, rotated.secret).key_id == created.key.id
    later = datetime.now(UTC) + timedelta(seconds=61)
    with pytest.raises(Unauthenticated) as raised:
        auth(uow, created.secret, now=later)
    assert raised.value.code == "EXPIRED" and raised.value.key_id == created.key.id
    assert auth(uow, rotated.secret, now=later).key_id == created.key.id
    with pytest.raises(Unauthenticated):
        auth(uow, rotated.secret, now=expires)  # rotation never made it permanent
    assert uow.repo.audit[-1].action == KEY_ROTATE


def test_rotation_without_grace_cuts_the_old_secret_at_once(uow: FakeUnitOfWork) -> None:
    created = create(uow)
    key_changes.rotate_key(
        uow=uow, key_format=FORMAT, hasher=HASHER, org_id="acme", key_id=created.key.id
    )
    with pytest.raises(Unauthenticated):
        auth(uow, created.secret)


@pytest.mark.parametrize("grace", [-1, 604_801, True, "60"])
def test_rotation_grace_is_bounded(uow: FakeUnitOfWork, grace: object) -> None:
    created = create(uow)
    with pytest.raises(InvalidInput):
        key_changes.rotate_key(
            uow=uow,
            key_format=FORMAT,
            hasher=HASHER,
            org_id="acme",
            key_id=created.key.id,
            grace_period_seconds=grace,  # type: ignore[arg-type]
        )


def test_bulk_revoke_lists_or_all_but_the_caller(uow: FakeUnitOfWork) -> None:
    caller_key = create(uow).key
    first, second, third = (create(uow).key for _ in range(3))
    events = RecordingEvents()
    revoked = key_changes.revoke_keys(
        uow=uow, org_id="acme", key_ids=[first.id, "key-unknown1"], events=events
    )
    assert revoked == [first.id]
    assert events.log == [("record", [first.id]), ("applied", [first.id])]
    caller = Principal(org_id="acme", key_id=caller_key.id, permissions=("admin",))
    revoked = key_changes.revoke_keys(uow=uow, org_id="acme", all_except_caller=True, caller=caller)
    assert revoked == sorted([second.id, third.id])
    assert list(uow.repo.keys) == [caller_key.id]
    assert [e.target for e in uow.repo.audit if e.action == KEY_REVOKE] == [first.id, *revoked]
    for bad in (
        {},
        {"key_ids": []},
        {"key_ids": ["x"]},
        {"key_ids": [], "all_except_caller": True},
    ):
        with pytest.raises(InvalidInput):
            key_changes.revoke_keys(uow=uow, org_id="acme", **bad)  # type: ignore[arg-type]


def test_failed_authentications_are_written_once_per_burst(uow: FakeUnitOfWork) -> None:
    clock = [datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)]
    failures = AuthFailureLog(lambda: uow, clock=lambda: clock[0], max_buckets=2)
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
        failures.note(org_id="acme", key_id="key-a", reason="DISABLED", client_ip=ip)
    failures.note(org_id="acme", key_id="key-b", reason="EXPIRED")
    failures.note(org_id="acme", key_id="key-c", reason="EXPIRED")  # over max_buckets: dropped
    assert failures.flush() == 0  # the minute is not over yet
    clock[0] += timedelta(minutes=1)
    assert failures.flush() == 2
    events = {e.target: e for e in uow.repo.audit if e.action == AUTH_FAILED}
    assert set(events) == {"key-a", "key-b"}
    assert events["key-a"].details["count"] == 3
    assert events["key-a"].details["client_ips"] == ["10.0.0.1", "10.0.0.2"]
    assert failures.dropped == 1
    failures.note(org_id="acme", key_id="key-a", reason="DISABLED")
    failures.close()  # writes what is left, even mid-minute
    assert len([e for e in uow.repo.audit if e.action == AUTH_FAILED]) == 3
