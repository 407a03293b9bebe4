"""An organization's key policy: read and replace."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from keyrack.api.deps import OrgAdminDep, OrgIdPath, RuntimeDep, TrailDep, body_doc, json_body
from keyrack.api.lifecycle_schemas import PolicyBody
from keyrack.api.schemas import problem_responses
from keyrack.service import policy as policy_service

router = APIRouter(prefix="/orgs/{org_id}/policy", tags=["Organization policy"])


@router.get(
    "",
    summary="Retrieve the key policy",
    response_model=PolicyBody,
    responses=problem_responses(400, 401, 403, 404),
)
def get_policy(org_id: OrgIdPath, caller: OrgAdminDep, runtime: RuntimeDep) -> PolicyBody:
    """The rules new and changed keys must follow (needs `admin`)."""
    return PolicyBody.of(policy_service.get_policy(uow=runtime.uow(), org_id=org_id))


@router.put(
    "",
    summary="Replace the key policy",
    response_model=PolicyBody,
    responses=problem_responses(400, 401, 403, 404, 413, 415),
    openapi_extra=body_doc(PolicyBody),
)
def put_policy(
    org_id: OrgIdPath,
    caller: OrgAdminDep,
    body: Annotated[PolicyBody, Depends(json_body(PolicyBody))],
    runtime: RuntimeDep,
    trail: TrailDep,
) -> PolicyBody:
    """Replace the policy (needs `admin`; omitted fields mean no limit). Its rules apply to keys
    created or changed from now on (creates that break them get 400 naming the rule); its
    default limits at once to every key without a limit of its own."""
    policy = policy_service.set_policy(
        uow=runtime.uow(write=True),
        org_id=org_id,
        document=body.model_dump(mode="json"),
        caller=caller,
        trail=trail,
        events=runtime.events,
    )
    return PolicyBody.of(policy)
