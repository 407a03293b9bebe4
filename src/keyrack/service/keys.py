"""Organization and key management use cases: create, read, list, delete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from keyrack.domain.audit import KEY_CREATE, KEY_DELETE, RequestTrail
from keyrack.domain.errors import KeyNotFound, OrgExists, OrgNotFound
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat, new_key_id
from keyrack.domain.limits import Quota, RateLimit
from keyrack.domain.model import (
    ApiKey,
    CreatedKey,
    Org,
    Principal,
    check_future_expiry,
    check_key_id,
    check_org_id,
    normalize_name,
    utcnow,
)
from keyrack.domain.pagination import check_limit, key_cursor, parse_key_cursor
from keyrack.domain.permissions import check_grant, normalize_permissions
from keyrack.service import audit
from keyrack.service.events import KeyEvents, NoKeyEvents
from keyrack.service.idempotency import IdempotentRequest
from keyrack.store.uow import UnitOfWork


class _FromPolicy:
    """Marks a limit the request left out: the org policy's default applies."""


FROM_POLICY = _FromPolicy()


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
    expires_at: datetime | None = None,
    rate_limit: object = FROM_POLICY,
    quota: object = FROM_POLICY,
    trail: RequestTrail | None = None,
    idempotency: IdempotentRequest | None = None,
) -> CreatedKey:
    """Create a key; `caller` is None for the local operator (CLI), who may grant anything.
    The org policy holds under concurrent creates: the org row stays locked until commit."""
    now = utcnow()
    name = normalize_name(name)
    granted = normalize_permissions(permissions)
    if caller is not None:
        check_grant(caller.permissions, granted)
    expires_at = check_future_expiry(expires_at, now=now)
    own_rate_limit = None if rate_limit is FROM_POLICY else RateLimit.parse(rate_limit)
    own_quota = None if quota is FROM_POLICY else Quota.parse(quota)
    secret = key_format.generate()
    with uow:
        policy = uow.repo.lock_org_policy(org_id)
        if policy is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        policy.check_permissions(granted)
        policy.check_expiry(expires_at, now=now)
        policy.check_active_keys(uow.repo.count_live_keys(org_id=org_id, now=now))
        key = ApiKey(
            id=new_key_id(),
            org_id=org_id,
            name=name,
            permissions=granted,
            start=key_format.start_of(secret),
            created_at=now,
            expires_at=expires_at,
            rate_limit=policy.default_rate_limit if rate_limit is FROM_POLICY else own_rate_limit,
            quota=policy.default_quota if quota is FROM_POLICY else own_quota,
        )
        uow.repo.add_key(key, secret_hash=hasher.hash(secret))
        created = CreatedKey(key=key, secret=secret)
        audit.record(
            uow,
            org_id=org_id,
            action=KEY_CREATE,
            now=now,
            caller=caller,
            trail=trail,
            target=key.id,
            details={
                "name": key.name,
                "permissions": list(key.permissions),
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
        if idempotency is not None:
            idempotency.complete(uow, created)
        uow.commit()
    return created


def list_keys(*, uow: UnitOfWork, org_id: str) -> list[ApiKey]:
    with uow:
        if uow.repo.get_org(org_id) is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        return uow.repo.list_keys(org_id=org_id)


def list_keys_page(
    *, uow: UnitOfWork, org_id: str, limit: int = 100, cursor: str | None = None
) -> tuple[list[ApiKey], str | None]:
    """A page of keys in creation order and the cursor of the next page (None on the last).
    Keyset pagination: keys created or deleted between pages never shift the others."""
    check_limit(limit)
    after = parse_key_cursor(cursor) if cursor else None
    with uow:
        if uow.repo.get_org(org_id) is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        keys = uow.repo.list_keys_page(org_id=org_id, after=after, limit=limit + 1)
    if len(keys) <= limit:
        return keys, None
    keys = keys[:limit]
    return keys, key_cursor(keys[-1].created_at, keys[-1].id)


def get_key(*, uow: UnitOfWork, org_id: str, key_id: str) -> ApiKey:
    check_key_id(key_id)
    with uow:
        key = uow.repo.get_key(org_id=org_id, key_id=key_id)
    if key is None:
        raise KeyNotFound(f"no API key {key_id!r} in organization {org_id!r}")
    return key


def delete_key(
    *,
    uow: UnitOfWork,
    org_id: str,
    key_id: str,
    events: KeyEvents | None = None,
    caller: Principal | None = None,
    trail: RequestTrail | None = None,
) -> None:
    """Delete a key; it stops authenticating everywhere (see `KeyEvents`)."""
    events = events or NoKeyEvents()
    check_key_id(key_id)
    with uow:
        if not uow.repo.delete_key(org_id=org_id, key_id=key_id):
            raise KeyNotFound(f"no API key {key_id!r} in organization {org_id!r}")
        audit.record(
            uow,
            org_id=org_id,
            action=KEY_DELETE,
            now=utcnow(),
            caller=caller,
            trail=trail,
            target=key_id,
        )
        events.record(uow, [key_id])
        uow.commit()
    events.applied([key_id])
