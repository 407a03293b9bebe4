"""Reading and replacing an organization's key policy."""

from __future__ import annotations

from collections.abc import Mapping

from keyrack.domain.audit import POLICY_UPDATE, RequestTrail
from keyrack.domain.errors import OrgNotFound
from keyrack.domain.model import Principal, utcnow
from keyrack.domain.policy import OrgPolicy, parse_policy
from keyrack.service import audit
from keyrack.store.uow import UnitOfWork


def get_policy(*, uow: UnitOfWork, org_id: str) -> OrgPolicy:
    with uow:
        policy = uow.repo.get_policy(org_id)
    if policy is None:
        raise OrgNotFound(f"organization {org_id!r} does not exist")
    return policy


def set_policy(
    *,
    uow: UnitOfWork,
    org_id: str,
    document: Mapping[str, object],
    caller: Principal | None = None,
    trail: RequestTrail | None = None,
) -> OrgPolicy:
    """Replace the policy; it applies to keys created or changed from now on."""
    policy = parse_policy(document)
    with uow:
        if uow.repo.lock_org_policy(org_id) is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        uow.repo.set_policy(org_id, policy)
        audit.record(
            uow,
            org_id=org_id,
            action=POLICY_UPDATE,
            now=utcnow(),
            caller=caller,
            trail=trail,
            target=org_id,
            details={"policy": policy.as_dict()},
        )
        uow.commit()
    return policy
