"""Use cases against the fake unit of work: no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from keyrack.domain.errors import (
    InvalidInput,
    KeyNotFound,
    OrgExists,
    OrgNotFound,
    PermissionDenied,
    Unauthenticated,
)
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.domain.model import Principal
from keyrack.service import keys as service
from keyrack.service.auth import authenticate, authorize
from tests.unit.fakes import FakeUnitOfWork

FORMAT = KeyFormat("kr")
HASHER = SecretHasher(b"k" * 32)


@pytest.fixture
def uow() -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    service.create_org(uow=uow, org_id="acme")
    return uow


def create(uow: FakeUnitOfWork, **overrides: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "uow": uow,
        "key_format": FORMAT,
        "hasher": HASHER,
        "org_id": "acme",
        "name": "k",
        "permissions": ["read"],
    }
    arguments.update(overrides)
    return service.create_key(**arguments)  # type: ignore[arg-type]


def test_create_stores_only_the_hash_and_commits_once(uow: FakeUnitOfWork) -> None:
    before = uow.committed
    created = create(uow, name="  My Key ", permissions=["write", "read"])
    assert uow.committed == before + 1
    assert created.key.name == "My Key"
    assert created.key.permissions == ("read", "write")
    assert list(uow.repo.secrets) == [HASHER.hash(created.secret)]
    assert created.secret not in repr(uow.repo.keys)


def test_create_in_unknown_org_fails(uow: FakeUnitOfWork) -> None:
    with pytest.raises(OrgNotFound):
        create(uow, org_id="nope")


def test_duplicate_org_is_a_conflict(uow: FakeUnitOfWork) -> None:
    with pytest.raises(OrgExists):
        service.create_org(uow=uow, org_id="acme")


def test_invalid_input_never_reaches_storage(uow: FakeUnitOfWork) -> None:
    with pytest.raises(InvalidInput):
        create(uow, name="")
    with pytest.raises(InvalidInput):
        create(uow, permissions=["superuser"])
    assert uow.repo.keys == {}


def test_caller_cannot_grant_more_than_it_holds(uow: FakeUnitOfWork) -> None:
    caller = Principal(org_id="acme", key_id="key-x", permissions=("read", "admin"))
    with pytest.raises(PermissionDenied):
        create(uow, permissions=["write"], caller=caller)
    assert create(uow, permissions=["read", "admin"], caller=caller).key.permissions == (
        "read",
        "admin",
    )


def test_authenticate_resolves_the_key(uow: FakeUnitOfWork) -> None:
    created = create(uow, permissions=["read", "admin"])
    principal = authenticate(uow=uow, key_format=FORMAT, hasher=HASHER, secret=created.secret)
    assert principal == Principal(
        org_id="acme", key_id=created.key.id, permissions=("read", "admin"), name="k"
    )


@pytest.mark.parametrize(
    ("secret", "code"),
    [(None, "MISSING"), ("", "MISSING"), ("kr_bad", "MALFORMED"), ("Bearer", "MALFORMED")],
)
def test_authenticate_rejects_unusable_keys(
    uow: FakeUnitOfWork, secret: str | None, code: str
) -> None:
    with pytest.raises(Unauthenticated) as raised:
        authenticate(uow=uow, key_format=FORMAT, hasher=HASHER, secret=secret)
    assert raised.value.code == code


def test_unknown_well_formed_key_is_not_found(uow: FakeUnitOfWork) -> None:
    with pytest.raises(Unauthenticated) as raised:
        authenticate(uow=uow, key_format=FORMAT, hasher=HASHER, secret=FORMAT.generate())
    assert raised.value.code == "NOT_FOUND"


def test_deleted_key_stops_authenticating_and_hook_runs(uow: FakeUnitOfWork) -> None:
    created = create(uow)

    class Events:
        def __init__(self) -> None:
            self.log: list[tuple[str, list[str]]] = []

        def record(self, uow: object, key_ids: list[str]) -> None:
            self.log.append(("record", list(key_ids)))

        def applied(self, key_ids: list[str]) -> None:
            self.log.append(("applied", list(key_ids)))

    events = Events()
    service.delete_key(uow=uow, org_id="acme", key_id=created.key.id, events=events)
    assert events.log == [("record", [created.key.id]), ("applied", [created.key.id])]
    with pytest.raises(Unauthenticated):
        authenticate(uow=uow, key_format=FORMAT, hasher=HASHER, secret=created.secret)
    with pytest.raises(KeyNotFound):
        service.delete_key(uow=uow, org_id="acme", key_id=created.key.id)


def test_expired_and_disabled_keys_are_refused(uow: FakeUnitOfWork) -> None:
    created = create(uow)
    past = datetime.now(UTC) - timedelta(seconds=1)
    uow.repo.keys[created.key.id] = replace(created.key, expires_at=past)
    with pytest.raises(Unauthenticated) as raised:
        authenticate(uow=uow, key_format=FORMAT, hasher=HASHER, secret=created.secret)
    assert raised.value.code == "EXPIRED"
    uow.repo.keys[created.key.id] = replace(created.key, enabled=False)
    with pytest.raises(Unauthenticated) as raised:
        authenticate(uow=uow, key_format=FORMAT, hasher=HASHER, secret=created.secret)
    assert raised.value.code == "DISABLED"


def test_authorize_hides_other_orgs_and_checks_permissions() -> None:
    caller = Principal(org_id="acme", key_id="key-x", permissions=("read",))
    with pytest.raises(OrgNotFound):
        authorize(caller, org_id="globex", needed=["read"])
    with pytest.raises(PermissionDenied):
        authorize(caller, org_id="acme", needed=["admin"])
    authorize(caller, org_id="acme", needed=["read"])
