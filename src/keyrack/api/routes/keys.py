"""The seed's three endpoints under /orgs/{org_id}/api_keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from keyrack.api.deps import KeyIdPath, OrgAdminDep, OrgIdPath, RuntimeDep, json_body
from keyrack.api.schemas import CreatedKeyOut, CreateKeyIn, KeyOut, MessageOut, problem_responses
from keyrack.service import keys as key_service

router = APIRouter(prefix="/orgs/{org_id}/api_keys", tags=["API keys"])

CreateBody = Annotated[CreateKeyIn, Depends(json_body(CreateKeyIn))]
# The body is parsed by a dependency (after authentication), so FastAPI does not document it:
# the schema is given inline. The link tells clients (and schemathesis' stateful tests) that a
# created key's id is what DELETE takes.
_CREATE_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": CreateKeyIn.model_json_schema()}},
    },
    "responses": {
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
    },
}


@router.get(
    "",
    summary="Retrieve API keys",
    response_model=list[KeyOut],
    responses=problem_responses(400, 401, 403, 404),
)
def list_api_keys(org_id: OrgIdPath, caller: OrgAdminDep, runtime: RuntimeDep) -> list[KeyOut]:
    """Fetch all API keys of the organization (needs `admin`). Secrets are never returned."""
    return [KeyOut.of(key) for key in key_service.list_keys(uow=runtime.uow(), org_id=org_id)]


@router.post(
    "",
    summary="Create a new API key",
    response_model=CreatedKeyOut,
    responses=problem_responses(400, 401, 403, 404, 413, 415),
    openapi_extra=_CREATE_BODY_DOC,
)
def create_api_key(
    org_id: OrgIdPath, caller: OrgAdminDep, body: CreateBody, runtime: RuntimeDep
) -> CreatedKeyOut:
    """Generate a key (needs `admin`; grant only permissions you hold). The response's `key`
    is the secret, shown this once."""
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name=body.name,
        permissions=body.permissions,
        caller=caller,
    )
    return CreatedKeyOut.of_created(created)


@router.delete(
    "/{key_id}",
    summary="Delete an API key",
    response_model=MessageOut,
    responses=problem_responses(400, 401, 403, 404),
)
def delete_api_key(
    org_id: OrgIdPath, key_id: KeyIdPath, caller: OrgAdminDep, runtime: RuntimeDep
) -> MessageOut:
    """Revoke and remove a key (needs `admin`); it stops authenticating before this answers."""
    key_service.delete_key(
        uow=runtime.uow(write=True), org_id=org_id, key_id=key_id, events=runtime.events
    )
    return MessageOut(message="API key deleted successfully")
