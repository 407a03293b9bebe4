"""Reading and replacing an organization's key policy."""

from __future__ import annotations

from collections.abc import Mapping

from keyrack.domain.audit import POLICY_UPDATE, RequestTrail
from keyrack.domain.errors import OrgNotFound
from keyrack.domain.model import Principal, utcnow
from keyrack.domain.policy import OrgPolicy, parse_policy
from keyrack.service import audit
from keyrack.service.events import KeyEvents, NoKeyEvents
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
    events: KeyEvents | None = None,
) -> OrgPolicy:
    """Replace the policy; its rules apply to keys created or changed from now on, its default
    limits at once to every key without its own (so a change of them announces all the org's
    keys: verification caches hold each key's effective limits)."""
    events = events or NoKeyEvents()
    policy = parse_policy(document)
    changed: list[str] = []
    with uow:
        previous = uow.repo.lock_org_policy(org_id)
        if previous is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        uow.repo.set_policy(org_id, policy)
        if (previous.default_rate_limit, previous.default_quota) != (
            policy.default_rate_limit,
            policy.default_quota,
        ):
            changed = uow.repo.list_key_ids(org_id=org_id)
            events.record(uow, changed)
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
    if changed:
        events.applied(changed)
    return policy
