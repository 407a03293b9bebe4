"""Organization and key management use cases."""

from __future__ import annotations

from collections.abc import Sequence

from keyrack.domain.errors import KeyNotFound, OrgExists, OrgNotFound
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat, new_key_id
from keyrack.domain.model import (
    ApiKey,
    CreatedKey,
    Org,
    Principal,
    check_key_id,
    check_org_id,
    normalize_name,
    utcnow,
)
from keyrack.domain.permissions import check_grant, normalize_permissions
from keyrack.service.events import KeyEvents, NoKeyEvents
from keyrack.store.uow import UnitOfWork


def create_org(*, uow: UnitOfWork, org_id: str) -> Org:
    org = Org(id=check_org_id(org_id), created_at=utcnow())
    with uow:
        if uow.repo.get_org(org.id) is not None:
            raise OrgExists(f"organization {org.id!r} already exists")
        uow.repo.add_org(org)
        uow.commit()
    return org


def list_orgs(*, uow: UnitOfWork) -> list[Org]:
    with uow:
        return uow.repo.list_orgs()


def create_key(
    *,
    uow: UnitOfWork,
    key_format: KeyFormat,
    hasher: SecretHasher,
    org_id: str,
    name: str,
    permissions: Sequence[object],
    caller: Principal | None = None,
) -> CreatedKey:
    """Create a key; `caller` is None for the local operator (CLI), who may grant anything."""
    name = normalize_name(name)
    granted = normalize_permissions(permissions)
    if caller is not None:
        check_grant(caller.permissions, granted)
    secret = key_format.generate()
    key = ApiKey(
        id=new_key_id(),
        org_id=org_id,
        name=name,
        permissions=granted,
        start=key_format.start_of(secret),
        created_at=utcnow(),
    )
    with uow:
        if uow.repo.get_org(org_id) is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        uow.repo.add_key(key, secret_hash=hasher.hash(secret))
        uow.commit()
    return CreatedKey(key=key, secret=secret)


def list_keys(*, uow: UnitOfWork, org_id: str) -> list[ApiKey]:
    with uow:
        if uow.repo.get_org(org_id) is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        return uow.repo.list_keys(org_id=org_id)


def delete_key(
    *, uow: UnitOfWork, org_id: str, key_id: str, events: KeyEvents | None = None
) -> None:
    """Delete a key; it stops authenticating everywhere (see `KeyEvents`)."""
    events = events or NoKeyEvents()
    check_key_id(key_id)
    with uow:
        if not uow.repo.delete_key(org_id=org_id, key_id=key_id):
            raise KeyNotFound(f"no API key {key_id!r} in organization {org_id!r}")
        events.record(uow, [key_id])
        uow.commit()
    events.applied([key_id])
