"""Authentication (who is calling) and authorization (may they act on this org)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from keyrack.domain.errors import OrgNotFound, Unauthenticated
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.domain.model import Principal
from keyrack.domain.permissions import require
from keyrack.service.verify import Verifier, VerifyResult, sql_loader
from keyrack.store.uow import UnitOfWork


def authenticate(
    *,
    uow: UnitOfWork,
    key_format: KeyFormat,
    hasher: SecretHasher,
    secret: str | None,
    now: datetime | None = None,
) -> Principal:
    """Authenticate without a cache (one-off callers); servers use their runtime's Verifier."""
    verifier = Verifier(
        key_format=key_format,
        hasher=hasher,
        load=sql_loader(lambda: uow),
        clock=(lambda: now.timestamp()) if now is not None else time.time,
    )
    return principal_of(verifier.verify(secret))


def principal_of(result: VerifyResult) -> Principal:
    """The caller behind a verification, or `Unauthenticated` with the verification's code."""
    if result.key is None or not result.valid:
        # A refused key that exists (expired, disabled) names its org and id for the audit log.
        known = {"org_id": result.key.org_id, "key_id": result.key.key_id} if result.key else {}
        raise Unauthenticated(result.detail, code=result.code, **known)
    key = result.key
    return Principal(
        org_id=key.org_id, key_id=key.key_id, permissions=key.permissions, name=key.name
    )


def authorize(caller: Principal, *, org_id: str, needed: Iterable[str]) -> None:
    """A key acts only inside its own org; another org looks just like one that does not exist."""
    if caller.org_id != org_id:
        raise OrgNotFound(f"organization {org_id!r} does not exist")
    require(caller.permissions, needed)
