"""Audit log storage: rows are only ever inserted and read, never updated or deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from keyrack.domain.audit import AuditEvent
from keyrack.store.tables import audit_events


class AuditQueries:
    connection: Connection

    def add_audit_event(self, event: AuditEvent) -> None:
        self.connection.execute(
            insert(audit_events).values(
                org_id=event.org_id,
                occurred_at=event.occurred_at,
                actor_key_id=event.actor_key_id,
                action=event.action,
                target=event.target,
                client_ip=event.client_ip,
                request_id=event.request_id,
                details=event.details or None,
            )
        )

    def list_audit_events(
        self,
        *,
        org_id: str,
        action: str | None,
        since: datetime | None,
        until: datetime | None,
        before_id: int | None,
        limit: int,
    ) -> list[AuditEvent]:
        """Newest first; `since` is inclusive and `until` exclusive."""
        query = select(audit_events).where(audit_events.c.org_id == org_id)
        if action is not None:
            query = query.where(audit_events.c.action == action)
        if since is not None:
            query = query.where(audit_events.c.occurred_at >= since)
        if until is not None:
            query = query.where(audit_events.c.occurred_at < until)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        query = query.order_by(audit_events.c.id.desc()).limit(limit)
        return [_event_from_row(row) for row in self.connection.execute(query)]


def _event_from_row(row: Any) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        org_id=row.org_id,
        occurred_at=row.occurred_at,
        actor_key_id=row.actor_key_id,
        action=row.action,
        target=row.target,
        client_ip=row.client_ip,
        request_id=row.request_id,
        details=row.details or {},
    )
