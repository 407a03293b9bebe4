"""Use cases that change or revoke existing keys: update, rotate, bulk revoke.

Each announces the keys whose authentication changed through `KeyEvents` (inside the
transaction, then after commit) so that no process keeps honouring a stale key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from keyrack.domain.audit import KEY_REVOKE, KEY_ROTATE, KEY_UPDATE, RequestTrail
from keyrack.domain.errors import InvalidInput, KeyNotFound, OrgNotFound
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.domain.limits import Quota, RateLimit
from keyrack.domain.model import (
    ApiKey,
    CreatedKey,
    Principal,
    check_future_expiry,
    check_key_id,
    normalize_name,
    utcnow,
)
from keyrack.domain.permissions import check_grant, normalize_permissions
from keyrack.service import audit
from keyrack.service.events import KeyEvents, NoKeyEvents
from keyrack.service.idempotency import IdempotentRequest
from keyrack.store.uow import UnitOfWork

MAX_GRACE_SECONDS = 7 * 86_400
MAX_BULK_KEYS = 1000
UPDATABLE = ("name", "permissions", "enabled", "expires_at", "rate_limit", "quota")


def _changed_key(key: ApiKey, changes: Mapping[str, object], caller: Principal | None) -> ApiKey:
    """The key with `changes` applied, each validated as on create."""
    updated = key
    if "name" in changes:
        value = changes["name"]
        if not isinstance(value, str):
            raise InvalidInput("must be a string", field="name")
        updated = replace(updated, name=normalize_name(value))
    if "permissions" in changes:
        value = changes["permissions"]
        if not isinstance(value, list | tuple):
            raise InvalidInput("must be a list of permissions", field="permissions")
        granted = normalize_permissions(value)
        if caller is not None:
            check_grant(caller.permissions, granted)
        updated = replace(updated, permissions=granted)
    if "enabled" in changes:
        if not isinstance(changes["enabled"], bool):
            raise InvalidInput("must be true or false", field="enabled")
        updated = replace(updated, enabled=changes["enabled"])
    if "expires_at" in changes:
        value = changes["expires_at"]
        if value is not None and not isinstance(value, datetime):
            raise InvalidInput("must be an RFC 3339 time or null", field="expires_at")
        updated = replace(updated, expires_at=check_future_expiry(value, now=utcnow()))
    if "rate_limit" in changes:
        updated = replace(updated, rate_limit=RateLimit.parse(changes["rate_limit"]))
    if "quota" in changes:
        updated = replace(updated, quota=Quota.parse(changes["quota"]))
    return updated


def update_key(
    *,
    uow: UnitOfWork,
    org_id: str,
    key_id: str,
    changes: Mapping[str, object],
    caller: Principal | None = None,
    trail: RequestTrail | None = None,
    events: KeyEvents | None = None,
) -> ApiKey:
    events = events or NoKeyEvents()
    check_key_id(key_id)
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise InvalidInput("unknown field", field=unknown[0])
    if not changes:
        raise InvalidInput(f"give at least one of: {', '.join(UPDATABLE)}", field="body")
    now = utcnow()
    with uow:
        policy = uow.repo.lock_org_policy(org_id)
        key = uow.repo.get_key(org_id=org_id, key_id=key_id) if policy else None
        if policy is None or key is None:
            raise KeyNotFound(f"no API key {key_id!r} in organization {org_id!r}")
        updated = _changed_key(key, changes, caller)
        if "permissions" in changes:
            policy.check_permissions(updated.permissions)
        if "expires_at" in changes:
            policy.check_expiry(updated.expires_at, now=now)
            if key.expires_at is not None and key.expires_at <= now:  # revives an expired key
                policy.check_active_keys(uow.repo.count_live_keys(org_id=org_id, now=now))
        uow.repo.update_key(updated)
        audit.record(
            uow,
            org_id=org_id,
            action=KEY_UPDATE,
            now=now,
            caller=caller,
            trail=trail,
            target=key_id,
            details={"changed": sorted(changes)},
        )
        # Every field is announced, not only permissions/enabled/expires_at: verify answers
        # with the name and enforces the limits, so a cached copy of any of them goes stale.
        events.record(uow, [key_id])
        uow.commit()
    events.applied([key_id])
    return updated


def rotate_key(
    *,
    uow: UnitOfWork,
    key_format: KeyFormat,
    hasher: SecretHasher,
    org_id: str,
    key_id: str,
    grace_period_seconds: int = 0,
    caller: Principal | None = None,
    trail: RequestTrail | None = None,
    events: KeyEvents | None = None,
    idempotency: IdempotentRequest | None = None,
) -> CreatedKey:
    """A new secret for the same key; the old ones work until the grace period ends. The key's
    own expiry is untouched, so rotation never turns an expiring key into a permanent one."""
    events = events or NoKeyEvents()
    check_key_id(key_id)
    if (
        isinstance(grace_period_seconds, bool)
        or not isinstance(grace_period_seconds, int)
        or not 0 <= grace_period_seconds <= MAX_GRACE_SECONDS
    ):
        raise InvalidInput(
            f"must be an integer from 0 to {MAX_GRACE_SECONDS}", field="grace_period_seconds"
        )
    now = utcnow()
    secret = key_format.generate()
    with uow:
        key = uow.repo.get_key(org_id=org_id, key_id=key_id)
        if key is None:
            raise KeyNotFound(f"no API key {key_id!r} in organization {org_id!r}")
        old_until = now + timedelta(seconds=grace_period_seconds)
        uow.repo.replace_secret(
            key_id=key_id, secret_hash=hasher.hash(secret), now=now, old_until=old_until
        )
        rotated = CreatedKey(key=replace(key, start=key_format.start_of(secret)), secret=secret)
        uow.repo.update_start(key_id=key_id, start=rotated.key.start)
        details: dict[str, Any] = {"grace_period_seconds": grace_period_seconds}
        audit.record(
            uow,
            org_id=org_id,
            action=KEY_ROTATE,
            now=now,
            caller=caller,
            trail=trail,
            target=key_id,
            details=details,
        )
        if idempotency is not None:
            idempotency.complete(uow, rotated)
        events.record(uow, [key_id])
        uow.commit()
    events.applied([key_id])
    return rotated


def revoke_keys(
    *,
    uow: UnitOfWork,
    org_id: str,
    key_ids: Sequence[str] | None = None,
    all_except_caller: bool = False,
    caller: Principal | None = None,
    trail: RequestTrail | None = None,
    events: KeyEvents | None = None,
) -> list[str]:
    """Delete the listed keys (ids the org does not own are skipped), or every key but the
    caller's, in one transaction; returns the ids revoked."""
    events = events or NoKeyEvents()
    if (key_ids is None) == (not all_except_caller):
        raise InvalidInput("give either key_ids or all_except_caller: true", field="key_ids")
    if key_ids is not None:
        if not 1 <= len(key_ids) <= MAX_BULK_KEYS:
            raise InvalidInput(f"must list 1 to {MAX_BULK_KEYS} key ids", field="key_ids")
        for key_id in key_ids:
            check_key_id(key_id)
    now = utcnow()
    with uow:
        if uow.repo.get_org(org_id) is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        if key_ids is None:
            spared = caller.key_id if caller else None
            key_ids = [k for k in uow.repo.list_key_ids(org_id=org_id) if k != spared]
        revoked = uow.repo.delete_keys(org_id=org_id, key_ids=sorted(set(key_ids)))
        for key_id in revoked:
            audit.record(
                uow,
                org_id=org_id,
                action=KEY_REVOKE,
                now=now,
                caller=caller,
                trail=trail,
                target=key_id,
            )
        if revoked:
            events.record(uow, revoked)
        uow.commit()
    if revoked:
        events.applied(revoked)
    return revoked
