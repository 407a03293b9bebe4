"""Typed dependencies: handlers declare what they need (runtime, caller, parsed body) by type."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from pydantic import BaseModel, ValidationError

from keyrack.api.problems import HttpProblem
from keyrack.api.verify import key_from_headers
from keyrack.domain.errors import InvalidInput
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


def get_caller(request: Request, runtime: RuntimeDep) -> Principal:
    """Authentication comes first: a request without a valid key learns nothing else. It goes
    through the same cached Verifier as /verify, so a revoked key fails here just as fast."""
    return principal_of(runtime.verifier.verify(presented_key(request)))


CallerDep = Annotated[Principal, Depends(get_caller)]


def get_org_admin(org_id: OrgIdPath, caller: CallerDep) -> Principal:
    authorize(caller, org_id=org_id, needed=[ADMIN])
    return caller


OrgAdminDep = Annotated[Principal, Depends(get_org_admin)]


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def json_body(model: type[Model]) -> Callable[..., Awaitable[Model]]:
    """A dependency parsing the body into `model`, run only after the caller is authorized
    (unlike FastAPI's own body parsing, which would answer 400 before 401)."""

    async def parse(request: Request, _caller: OrgAdminDep) -> Model:
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
