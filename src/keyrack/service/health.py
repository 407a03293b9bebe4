"""Readiness: is the database reachable and its schema at the revision this code needs?"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from keyrack.store import migrate


@dataclass(frozen=True)
class Readiness:
    database: str  # "ok" or "unreachable"
    migrations: str  # "current", "outdated" or "unknown"
    detail: str

    @property
    def ready(self) -> bool:
        return self.database == "ok" and self.migrations == "current"


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
