"""Typed dependencies: handlers declare what they need (runtime, caller, parsed body) by type."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from pydantic import BaseModel, ValidationError

from keyrack.api.client_address import client_address
from keyrack.api.problems import HttpProblem
from keyrack.api.verify_wire import key_from_headers
from keyrack.domain.audit import RequestTrail
from keyrack.domain.errors import InvalidInput, PermissionDenied, Unauthenticated
from keyrack.domain.model import KEY_ID_PATTERN, ORG_ID_PATTERN, Principal
from keyrack.domain.permissions import ADMIN
from keyrack.runtime import Runtime
from keyrack.service.auth import authorize, principal_of

Model = TypeVar("Model", bound=BaseModel)

OrgIdPath = Annotated[
    str,
    Path(pattern=ORG_ID_PATTERN, description="The organization's identifier", examples=["acme"]),
]
KeyIdPath = Annotated[
    str,
    Path(pattern=KEY_ID_PATTERN, description="The key's public identifier", examples=["key-456"]),
]


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer` or `X-API-Key`; a query-string key is never read."""
    return key_from_headers(request.scope["headers"])


def client_ip(request: Request) -> str | None:
    """The client's address as the audit log records it (the peer of this connection)."""
    return request.client.host if request.client else None


def request_id(request: Request) -> str | None:
    """The id the access-log layer assigned (`scope["state"]`), else the client's X-Request-ID."""
    assigned = request.scope.get("state", {}).get("request_id")
    return str(assigned) if assigned else request.headers.get("x-request-id")


def get_trail(request: Request) -> RequestTrail:
    return RequestTrail(client_ip=client_ip(request), request_id=request_id(request))


TrailDep = Annotated[RequestTrail, Depends(get_trail)]


def get_caller(request: Request, runtime: RuntimeDep) -> Principal:
    """Authentication comes first: a request without a valid key learns nothing else. It goes
    through the same cached Verifier as /verify, so a revoked key fails here just as fast.
    A refused key that exists is counted for the audit log (written later, in bursts). Then the
    usage controls, as on /verify: a blocked client address or a key over its rate limit or
    quota gets 429."""
    gate = runtime.usage_gate
    address = client_address(request.scope, runtime.usage_controls.trusted_proxies)
    secret = presented_key(request)
    refusal = gate.refusal_for(address) if gate.any_blocked else None
    if refusal is not None and address is not None:
        cached = runtime.verifier.verify_cached(secret)  # names a known key in the audit log
        key = cached.key if cached is not None else None
        raise gate.throttled(refusal, address=address, key=key, request_id=request_id(request))
    result = runtime.verifier.verify(secret)
    try:
        caller = principal_of(result)
    except Unauthenticated as error:
        if error.org_id and error.key_id:
            runtime.auth_failures.note(
                org_id=error.org_id,
                key_id=error.key_id,
                reason=error.code,
                client_ip=client_ip(request),
                request_id=request_id(request),
            )
        gate.failed_sync(
            code=error.code, address=address, key=result.key, request_id=request_id(request)
        )
        raise
    # For the access log (api/asgi.py:AccessLog), which reads them from scope["state"].
    request.state.org_id = caller.org_id
    request.state.key_id = caller.key_id
    assert result.key is not None
    gate.admit_sync(key=result.key, address=address, request_id=request_id(request))
    return caller


CallerDep = Annotated[Principal, Depends(get_caller)]


def get_org_admin(
    request: Request, org_id: OrgIdPath, caller: CallerDep, runtime: RuntimeDep
) -> Principal:
    try:
        authorize(caller, org_id=org_id, needed=[ADMIN])
    except PermissionDenied as error:
        runtime.auth_failures.note(
            org_id=caller.org_id,
            key_id=caller.key_id,
            reason=error.code,
            client_ip=client_ip(request),
            request_id=request_id(request),
        )
        raise
    return caller


OrgAdminDep = Annotated[Principal, Depends(get_org_admin)]


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def json_body(model: type[Model], *, optional: bool = False) -> Callable[..., Awaitable[Model]]:
    """A dependency parsing the body into `model`, run only after the caller is authorized
    (unlike FastAPI's own body parsing, which would answer 400 before 401). With `optional`,
    an empty body means `{}`."""

    async def parse(request: Request, _caller: OrgAdminDep) -> Model:
        if optional and not await request.body():
            return model.model_validate({})
        if not _is_json(request.headers.get("content-type", "")):
            raise HttpProblem(
                415, "UNSUPPORTED_MEDIA_TYPE", "the request body must be application/json"
            )
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(
                "the request body is not valid JSON", code="MALFORMED_JSON"
            ) from None
        if not isinstance(data, dict):
            raise InvalidInput("the request body must be a JSON object", code="INVALID_INPUT")
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise invalid_input(error) from None

    return parse


def body_doc(model: type[BaseModel], *, required: bool = True) -> dict[str, object]:
    """OpenAPI for a body parsed by `json_body` (FastAPI does not see it): the model's schema
    inline, its nested models referenced from components (they are response models too)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def invalid_input(error: ValidationError) -> InvalidInput:
    field_errors = []
    for item in error.errors(include_url=False, include_input=False):
        location = [str(part) for part in item["loc"] if part not in ("body", "path", "query")]
        field = ".".join(location) or "body"
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        field_errors.append({"field": field, "message": message})
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in field_errors)
    first = field_errors[0]["field"] if field_errors else None
    return InvalidInput(summary or "invalid input", field=first, errors=field_errors)
