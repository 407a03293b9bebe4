"""Readiness: is the database reachable at the schema revision this code needs, and Redis?"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from keyrack.store import migrate


@dataclass(frozen=True)
class Readiness:
    database: str  # "ok" or "unreachable"
    migrations: str  # "current", "outdated" or "unknown"
    detail: str
    redis: str | None = None  # None without Redis, else "ok" or "unreachable"
    redis_required: bool = False  # failure mode closed: no Redis, no limited request served

    @property
    def ready(self) -> bool:
        database_ready = self.database == "ok" and self.migrations == "current"
        return database_ready and not (self.redis == "unreachable" and self.redis_required)

    @property
    def status(self) -> str:
        """ "ready", or "degraded" while limits are admitted unchecked (failure mode open)."""
        return "degraded" if self.redis == "unreachable" else "ready"

    @property
    def checks(self) -> dict[str, str]:
        checks = {"database": self.database, "migrations": self.migrations}
        return checks if self.redis is None else {**checks, "redis": self.redis}


def check_readiness(*, engine: Engine, head_revision: str | None) -> Readiness:
    """One round trip: reading the schema revision proves the database answers, too."""
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError as error:
        return Readiness(
            database="unreachable",
            migrations="unknown",
            detail=f"the database is unreachable ({type(error).__name__})",
        )
    if current != head_revision:
        return Readiness(
            database="ok",
            migrations="outdated",
            detail=f"the schema is at {current or 'nothing'}, this keyrack needs {head_revision}; "
            "run `keyrack migrate`",
        )
    return Readiness(database="ok", migrations="current", detail="ready")


def with_redis(
    readiness: Readiness, *, redis: str | None, failure_mode: Literal["open", "closed"]
) -> Readiness:
    """Redis down is not-ready in failure mode closed (limited keys would get 503 anyway, so a
    load balancer should prefer another instance) and degraded-but-ready in open mode."""
    degraded = redis == "unreachable"
    detail = readiness.detail
    if degraded and readiness.detail == "ready":
        detail = (
            "Redis is unreachable: usage limits fail closed (503)"
            if failure_mode == "closed"
            else "Redis is unreachable: usage limits are admitted unchecked"
        )
    return replace(readiness, redis=redis, redis_required=failure_mode == "closed", detail=detail)
