"""Authentication (who is calling) and authorization (may they act on this org)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from keyrack.domain.errors import OrgNotFound, Unauthenticated
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.domain.model import Principal, utcnow
from keyrack.domain.permissions import require
from keyrack.store.uow import UnitOfWork


def authenticate(
    *,
    uow: UnitOfWork,
    key_format: KeyFormat,
    hasher: SecretHasher,
    secret: str | None,
    now: datetime | None = None,
) -> Principal:
    if not secret:
        raise Unauthenticated("an API key is required", code="MISSING")
    key_format.check(secret)  # format and checksum: no lookup for a mistyped or forged key
    digest = hasher.hash(secret)
    with uow:
        found = uow.repo.find_by_secret_hash(digest)
    if found is None:
        raise Unauthenticated("the API key is not valid", code="NOT_FOUND")
    key, stored_hash, secret_expires_at = found
    if not hasher.matches(stored_hash, digest):
        raise Unauthenticated("the API key is not valid", code="NOT_FOUND")
    now = now or utcnow()
    known = {"org_id": key.org_id, "key_id": key.id}
    if secret_expires_at is not None and secret_expires_at <= now:
        raise Unauthenticated(
            "the API key was rotated and its grace period is over", code="EXPIRED", **known
        )
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthenticated("the API key has expired", code="EXPIRED", **known)
    if not key.enabled:
        raise Unauthenticated("the API key is disabled", code="DISABLED", **known)
    return Principal(org_id=key.org_id, key_id=key.id, permissions=key.permissions, name=key.name)


def authorize(caller: Principal, *, org_id: str, needed: Iterable[str]) -> None:
    """A key acts only inside its own org; another org looks just like one that does not exist."""
    if caller.org_id != org_id:
        raise OrgNotFound(f"organization {org_id!r} does not exist")
    require(caller.permissions, needed)
