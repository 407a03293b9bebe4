"""The `Idempotency-Key` header on POST create and rotate: claim, run, replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from keyrack.api.schemas import CreatedKeyOut
from keyrack.domain.model import CreatedKey, Principal
from keyrack.runtime import Runtime
from keyrack.service import idempotency
from keyrack.service.idempotency import IdempotentRequest, check_idempotency_key
from keyrack.store.idempotency_queries import IdempotencyScope

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retries with the same key and body within 24 h return the first response",
        examples=["3f6c1d2e-create-ci-key"],
        # What check_idempotency_key enforces: 1-255 printable ASCII characters.
        json_schema_extra={"pattern": "^[\\x20-\\x7e]{1,255}$"},
    ),
]


def _render(created: CreatedKey) -> dict[str, object]:
    return CreatedKeyOut.of_created(created).model_dump(mode="json")


def run_idempotent(
    *,
    request: Request,
    runtime: Runtime,
    caller: Principal,
    org_id: str,
    header: str | None,
    body: BaseModel,
    action: Callable[[IdempotentRequest | None], CreatedKey],
) -> CreatedKeyOut | JSONResponse:
    """Run `action` once per idempotency key: a retry replays the stored first response."""
    if header is None:
        return CreatedKeyOut.of_created(action(None))
    claim = IdempotentRequest(
        scope=IdempotencyScope(
            org_id=org_id,
            caller_key_id=caller.key_id,
            idempotency_key=check_idempotency_key(header),
        ),
        fingerprint=idempotency.request_fingerprint(
            request.method, request.url.path, body.model_dump(mode="json", exclude_unset=True)
        ),
        sealer=runtime.sealer,
        render=_render,
    )
    replay = idempotency.claim(uow=runtime.uow(write=True), request=claim)
    if replay is not None:
        return JSONResponse(replay, headers={"Idempotent-Replayed": "true"})
    try:
        created = action(claim)
    except BaseException:
        idempotency.release(uow=runtime.uow(write=True), request=claim)
        raise
    return CreatedKeyOut.of_created(created)
