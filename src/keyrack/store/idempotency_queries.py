"""Idempotency records: a claimed request, then its sealed response, scoped by org and caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from keyrack.store.tables import idempotency_records as records

IN_FLIGHT = "in_flight"
COMPLETED = "completed"


@dataclass(frozen=True)
class IdempotencyRecord:
    request_hash: str
    status: str
    response_status: int | None
    sealed_body: str | None
    created_at: datetime


@dataclass(frozen=True)
class IdempotencyScope:
    org_id: str
    caller_key_id: str
    idempotency_key: str


class IdempotencyQueries:
    connection: Connection

    def _where(self, scope: IdempotencyScope) -> ColumnElement[bool]:
        return (
            (records.c.org_id == scope.org_id)
            & (records.c.caller_key_id == scope.caller_key_id)
            & (records.c.idempotency_key == scope.idempotency_key)
        )

    def purge_idempotency(self, *, org_id: str, now: datetime) -> None:
        self.connection.execute(
            delete(records).where(records.c.org_id == org_id, records.c.expires_at <= now)
        )

    def get_idempotency(self, scope: IdempotencyScope) -> IdempotencyRecord | None:
        row = self.connection.execute(select(records).where(self._where(scope))).first()
        if row is None:
            return None
        return IdempotencyRecord(
            request_hash=row.request_hash,
            status=row.status,
            response_status=row.response_status,
            sealed_body=row.response_body,
            created_at=row.created_at,
        )

    def claim_idempotency(
        self, scope: IdempotencyScope, *, request_hash: str, now: datetime, expires_at: datetime
    ) -> bool:
        """False when a concurrent request claimed the same key first."""
        try:
            self.connection.execute(
                insert(records).values(
                    org_id=scope.org_id,
                    caller_key_id=scope.caller_key_id,
                    idempotency_key=scope.idempotency_key,
                    request_hash=request_hash,
                    status=IN_FLIGHT,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        except IntegrityError:
            return False
        return True

    def complete_idempotency(
        self, scope: IdempotencyScope, *, response_status: int, sealed_body: str
    ) -> None:
        self.connection.execute(
            update(records)
            .where(self._where(scope))
            .values(status=COMPLETED, response_status=response_status, response_body=sealed_body)
        )

    def release_idempotency(self, scope: IdempotencyScope) -> None:
        self.connection.execute(delete(records).where(self._where(scope)))
