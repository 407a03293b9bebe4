"""Changing keys: update, rotate, bulk revoke (each announces auth changes via KeyEvents)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from keyrack.api.deps import (
    KeyIdPath,
    OrgAdminDep,
    OrgIdPath,
    RuntimeDep,
    TrailDep,
    body_doc,
    json_body,
)
from keyrack.api.idempotent import IdempotencyKeyHeader, run_idempotent
from keyrack.api.lifecycle_schemas import KeyPatchIn, RevokedOut, RevokeIn, RotateIn
from keyrack.api.schemas import CreatedKeyOut, KeyOut, problem_responses
from keyrack.domain.model import CreatedKey
from keyrack.service import key_changes
from keyrack.service.idempotency import IdempotentRequest

router = APIRouter(prefix="/orgs/{org_id}/api_keys", tags=["API keys"])


@router.patch(
    "/{key_id}",
    summary="Update an API key",
    response_model=KeyOut,
    responses=problem_responses(400, 401, 403, 404, 413, 415),
    openapi_extra=body_doc(KeyPatchIn),
)
def update_api_key(
    org_id: OrgIdPath,
    key_id: KeyIdPath,
    caller: OrgAdminDep,
    body: Annotated[KeyPatchIn, Depends(json_body(KeyPatchIn))],
    runtime: RuntimeDep,
    trail: TrailDep,
) -> KeyOut:
    """Change `name`, `permissions` (at most what you hold), `enabled`, `expires_at`,
    `rate_limit` or `quota` (needs `admin`). Changes to what a key may do apply before this
    answers."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for limit in ("rate_limit", "quota"):
        if changes.get(limit) is not None:
            changes[limit] = changes[limit].model_dump()
    updated = key_changes.update_key(
        uow=runtime.uow(write=True),
        org_id=org_id,
        key_id=key_id,
        changes=changes,
        caller=caller,
        trail=trail,
        events=runtime.events,
    )
    return KeyOut.of(updated)


@router.post(
    "/{key_id}/rotate",
    summary="Rotate an API key's secret",
    response_model=CreatedKeyOut,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra=body_doc(RotateIn, required=False),
)
def rotate_api_key(
    request: Request,
    org_id: OrgIdPath,
    key_id: KeyIdPath,
    caller: OrgAdminDep,
    body: Annotated[RotateIn, Depends(json_body(RotateIn, optional=True))],
    runtime: RuntimeDep,
    trail: TrailDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> CreatedKeyOut | JSONResponse:
    """A new secret for the same key id (needs `admin`), shown this once; the old secret keeps
    working for `grace_period_seconds`, then gets 401. The key's expiry is unchanged."""

    def rotate(claim: IdempotentRequest | None) -> CreatedKey:
        return key_changes.rotate_key(
            uow=runtime.uow(write=True),
            key_format=runtime.key_format,
            hasher=runtime.hasher,
            org_id=org_id,
            key_id=key_id,
            grace_period_seconds=body.grace_period_seconds,
            caller=caller,
            trail=trail,
            events=runtime.events,
            idempotency=claim,
        )

    return run_idempotent(
        request=request,
        runtime=runtime,
        caller=caller,
        org_id=org_id,
        header=idempotency_key,
        body=body,
        action=rotate,
    )


@router.post(
    "/revoke",
    summary="Revoke API keys in bulk",
    response_model=RevokedOut,
    responses=problem_responses(400, 401, 403, 404, 413, 415),
    openapi_extra=body_doc(RevokeIn),
)
def revoke_api_keys(
    org_id: OrgIdPath,
    caller: OrgAdminDep,
    body: Annotated[RevokeIn, Depends(json_body(RevokeIn))],
    runtime: RuntimeDep,
    trail: TrailDep,
) -> RevokedOut:
    """Delete the listed keys, or every key except the calling one, in one transaction
    (needs `admin`); returns the ids revoked. They stop authenticating before this answers."""
    revoked = key_changes.revoke_keys(
        uow=runtime.uow(write=True),
        org_id=org_id,
        key_ids=body.key_ids,
        all_except_caller=body.all_except_caller is True,
        caller=caller,
        trail=trail,
        events=runtime.events,
    )
    return RevokedOut(revoked=revoked)
