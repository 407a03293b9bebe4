"""The audit log: recording inside each use case's transaction, and reading it back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyrack.domain.audit import ACTIONS, AuditEvent, RequestTrail
from keyrack.domain.errors import InvalidInput, OrgNotFound
from keyrack.domain.model import Principal
from keyrack.domain.pagination import check_limit, event_cursor, parse_event_cursor
from keyrack.store.uow import UnitOfWork


def record(
    uow: UnitOfWork,
    *,
    org_id: str,
    action: str,
    now: datetime,
    caller: Principal | None,
    trail: RequestTrail | None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event; the caller commits it together with the change it describes."""
    trail = trail or RequestTrail()
    uow.repo.add_audit_event(
        AuditEvent(
            org_id=org_id,
            occurred_at=now,
            action=action,
            actor_key_id=caller.key_id if caller else None,
            target=target,
            client_ip=trail.client_ip,
            request_id=trail.request_id,
            details=details or {},
        )
    )


def list_events(
    *,
    uow: UnitOfWork,
    org_id: str,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[AuditEvent], str | None]:
    """A page of events, newest first, and the cursor of the next page (None on the last)."""
    if action is not None and action not in ACTIONS:
        raise InvalidInput(f"unknown action; one of: {', '.join(ACTIONS)}", field="action")
    check_limit(limit)
    before_id = parse_event_cursor(cursor) if cursor else None
    with uow:
        if uow.repo.get_org(org_id) is None:
            raise OrgNotFound(f"organization {org_id!r} does not exist")
        events = uow.repo.list_audit_events(
            org_id=org_id,
            action=action,
            since=since,
            until=until,
            before_id=before_id,
            limit=limit + 1,
        )
    if len(events) <= limit:
        return events, None
    events = events[:limit]
    last_id = events[-1].id
    assert last_id is not None
    return events, event_cursor(last_id)
