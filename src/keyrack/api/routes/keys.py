"""The key endpoints under /orgs/{org_id}/api_keys: the seed's three, plus reading one key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
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
from keyrack.api.paging import LINK_HEADER_DOC, PageCursor, PageLimit, next_link
from keyrack.api.problems import HttpProblem
from keyrack.api.schemas import CreatedKeyOut, CreateKeyIn, KeyOut, MessageOut, problem_responses
from keyrack.domain.model import CreatedKey
from keyrack.domain.pagination import DEFAULT_PAGE
from keyrack.service import keys as key_service
from keyrack.service.idempotency import IdempotentRequest

router = APIRouter(prefix="/orgs/{org_id}/api_keys", tags=["API keys"])

CreateBody = Annotated[CreateKeyIn, Depends(json_body(CreateKeyIn))]
# The link tells clients (and schemathesis' stateful tests) that a created key's id is what
# DELETE takes.
_CREATE_LINKS = {
    "200": {
        "links": {
            "DeleteApiKey": {
                "operationRef": "#/paths/~1orgs~1{org_id}~1api_keys~1{key_id}/delete",
                "parameters": {
                    "org_id": "$request.path.org_id",
                    "key_id": "$response.body#/id",
                },
            }
        }
    }
}


@router.get(
    "",
    summary="Retrieve API keys",
    response_model=list[KeyOut],
    responses={200: {"headers": LINK_HEADER_DOC}, **problem_responses(400, 401, 403, 404)},
)
def list_api_keys(
    org_id: OrgIdPath,
    caller: OrgAdminDep,
    runtime: RuntimeDep,
    response: Response,
    limit: PageLimit = DEFAULT_PAGE,
    cursor: PageCursor = None,
) -> list[KeyOut]:
    """Fetch the organization's API keys in creation order (needs `admin`), a bare array; the
    next page is in the `Link` header. Secrets are never returned."""
    keys, next_cursor = key_service.list_keys_page(
        uow=runtime.uow(), org_id=org_id, limit=limit, cursor=cursor
    )
    response.headers.update(next_link(f"/orgs/{org_id}/api_keys", limit, next_cursor))
    return [KeyOut.of(key) for key in keys]


@router.post(
    "",
    summary="Create a new API key",
    response_model=CreatedKeyOut,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra={**body_doc(CreateKeyIn), "responses": _CREATE_LINKS},
)
def create_api_key(
    request: Request,
    org_id: OrgIdPath,
    caller: OrgAdminDep,
    body: CreateBody,
    runtime: RuntimeDep,
    trail: TrailDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> CreatedKeyOut | JSONResponse:
    """Generate a key (needs `admin`; grant only permissions you hold; the org policy applies).
    The response's `key` is the secret, shown this once. With `Idempotency-Key`, a retry
    returns the first response and creates nothing."""
    given = body.model_fields_set

    def create(claim: IdempotentRequest | None) -> CreatedKey:
        return key_service.create_key(
            uow=runtime.uow(write=True),
            key_format=runtime.key_format,
            hasher=runtime.hasher,
            org_id=org_id,
            name=body.name,
            permissions=body.permissions,
            caller=caller,
            expires_at=body.expires_at,
            rate_limit=(
                body.rate_limit and body.rate_limit.model_dump()
                if "rate_limit" in given
                else key_service.FROM_POLICY
            ),
            quota=(
                body.quota and body.quota.model_dump()
                if "quota" in given
                else key_service.FROM_POLICY
            ),
            trail=trail,
            idempotency=claim,
        )

    return run_idempotent(
        request=request,
        runtime=runtime,
        caller=caller,
        org_id=org_id,
        header=idempotency_key,
        body=body,
        action=create,
    )


# Listed before the /{key_id} routes, which would otherwise take "revoke" for a key id and answer
# 400 to GET/PATCH/DELETE .../api_keys/revoke: the path exists, only POST is allowed on it.
@router.api_route(
    "/revoke",
    methods=["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    include_in_schema=False,
)
def revoke_wrong_method(request: Request) -> None:
    raise HttpProblem(
        405,
        "METHOD_NOT_ALLOWED",
        f"{request.method} is not allowed here; allowed: POST",
        headers={"Allow": "POST"},
    )


@router.get(
    "/{key_id}",
    summary="Retrieve one API key",
    response_model=KeyOut,
    responses=problem_responses(400, 401, 403, 404),
)
def get_api_key(
    org_id: OrgIdPath, key_id: KeyIdPath, caller: OrgAdminDep, runtime: RuntimeDep
) -> KeyOut:
    """One key of the organization (needs `admin`); never its secret."""
    return KeyOut.of(key_service.get_key(uow=runtime.uow(), org_id=org_id, key_id=key_id))


@router.delete(
    "/{key_id}",
    summary="Delete an API key",
    response_model=MessageOut,
    responses=problem_responses(400, 401, 403, 404),
)
def delete_api_key(
    org_id: OrgIdPath, key_id: KeyIdPath, caller: OrgAdminDep, runtime: RuntimeDep, trail: TrailDep
) -> MessageOut:
    """Revoke and remove a key (needs `admin`); it stops authenticating before this answers."""
    key_service.delete_key(
        uow=runtime.uow(write=True),
        org_id=org_id,
        key_id=key_id,
        events=runtime.events,
        caller=caller,
        trail=trail,
    )
    return MessageOut(message="API key deleted successfully")
