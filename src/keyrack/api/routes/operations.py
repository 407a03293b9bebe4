"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from functools import cache

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from keyrack import metrics
from keyrack.api.deps import RuntimeDep
from keyrack.api.errors import problem_response
from keyrack.api.problems import problem_body
from keyrack.api.schemas import problem_responses
from keyrack.runtime import Runtime
from keyrack.service.health import Readiness, check_readiness, with_redis
from keyrack.store import migrate

router = APIRouter(tags=["Operations"])

READINESS_TIMEOUT_SECONDS = 2.0


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])


class ReadinessChecks(BaseModel):
    database: str = Field(examples=["ok"], description="ok or unreachable")
    migrations: str = Field(examples=["current"], description="current, outdated or unknown")
    revocation_feed: str = Field(
        examples=["connected"],
        description="connected, or disconnected: the verify cache is bypassed (degraded)",
    )
    redis: str | None = Field(
        default=None, examples=["ok"], description="ok or unreachable; absent without Redis"
    )


class ReadyOut(BaseModel):
    status: str = Field(
        examples=["ready"],
        description="ready, or degraded (still serving: revocation feed down, or Redis unreachable"
        " with limits failing open)",
    )
    checks: ReadinessChecks


@cache
def _head_revision() -> str | None:
    # The migrations shipped with this code cannot change while it runs: read them once.
    return migrate.head_revision()


# Probes and metrics are scraped without a key (bind them to a private interface or filter them
# at the proxy in production); the OpenAPI document says so with an empty security list.
PUBLIC: dict[str, object] = {"security": []}


@router.get(
    "/healthz",
    summary="Liveness: the process is up",
    response_model=HealthOut,
    openapi_extra=PUBLIC,
)
async def healthz() -> HealthOut:
    """Answers without touching the database: restart the process only if this fails."""
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: database, migrations, revocation feed, and Redis if configured",
    response_model=ReadyOut,
    response_model_exclude_none=True,
    responses=problem_responses(503),
    openapi_extra=PUBLIC,
)
async def readyz(runtime: RuntimeDep) -> ReadyOut | Response:
    """200 when the database answers within 2 seconds at the schema revision this code needs;
    503 problem+json (with `checks`) otherwise, so a load balancer stops sending traffic.

    A disconnected revocation feed (PostgreSQL LISTEN, or SQLite's change feed) is 200 with
    status `degraded`, not 503: verification then bypasses the cache and reads the database, so
    answers stay correct, only slower. A 503 would let one LISTEN problem shared by every instance
    (a pooler that drops LISTEN, a restarted database) take the whole fleet out of rotation.

    With Redis configured, `checks.redis` says whether it answers: unreachable is 503 in
    failure mode closed, and 200 with status "degraded" in failure mode open."""
    database, redis = await asyncio.gather(
        _database_readiness(runtime), runtime.usage_controls.store.health()
    )
    readiness = with_redis(database, redis=redis, failure_mode=runtime.settings.limits_failure_mode)
    feed = "connected" if runtime.revocation_feed_connected else "disconnected"
    checks = {**readiness.checks, "revocation_feed": feed}
    if not readiness.ready:
        body = problem_body(503, "SERVICE_UNAVAILABLE", readiness.detail, checks=checks)
        return problem_response(503, body, {"Retry-After": "5"})
    status = readiness.status if feed == "connected" else "degraded"
    return ReadyOut(status=status, checks=ReadinessChecks(**checks))


async def _database_readiness(runtime: Runtime) -> Readiness:
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(
                check_readiness, engine=runtime.engine, head_revision=_head_revision()
            ),
            timeout=READINESS_TIMEOUT_SECONDS,
        )
    except TimeoutError:
        return Readiness(
            database="unreachable",
            migrations="unknown",
            detail=f"the database did not answer within {READINESS_TIMEOUT_SECONDS:g}s",
        )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Text exposition format"}},
    openapi_extra=PUBLIC,
)
async def metrics_endpoint() -> Response:
    """Every `keyrack_*` series (see keyrack/metrics.py); labels hold no secret or key id."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
