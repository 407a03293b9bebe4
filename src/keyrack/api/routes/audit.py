"""The audit log of an organization: read-only, newest first, paginated."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response

from keyrack.api.deps import OrgAdminDep, OrgIdPath, RuntimeDep
from keyrack.api.lifecycle_schemas import AuditEventOut
from keyrack.api.paging import LINK_HEADER_DOC, PageCursor, PageLimit, next_link
from keyrack.api.schemas import parse_rfc3339, problem_responses
from keyrack.domain.audit import ACTIONS
from keyrack.domain.errors import InvalidInput
from keyrack.domain.pagination import DEFAULT_PAGE
from keyrack.service import audit

router = APIRouter(prefix="/orgs/{org_id}/audit_events", tags=["Audit log"])
TimeQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="RFC 3339",
        examples=["2030-01-01T00:00:00Z"],
        json_schema_extra={"format": "date-time"},
    ),
]


def _time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as error:
        raise InvalidInput(str(error), field=field) from None


@router.get(
    "",
    summary="Retrieve audit events",
    response_model=list[AuditEventOut],
    responses={200: {"headers": LINK_HEADER_DOC}, **problem_responses(400, 401, 403, 404)},
)
def list_audit_events(
    org_id: OrgIdPath,
    caller: OrgAdminDep,
    runtime: RuntimeDep,
    response: Response,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            description=f"One of: {', '.join(ACTIONS)}",
            json_schema_extra={"enum": list(ACTIONS)},
        ),
    ] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    limit: PageLimit = DEFAULT_PAGE,
    cursor: PageCursor = None,
) -> list[AuditEventOut]:
    """Every create, update, rotate, delete, revoke, policy change and burst of failed
    authentications (needs `admin`), newest first; `since` inclusive, `until` exclusive.
    Never contains a secret or its hash."""
    events, next_cursor = audit.list_events(
        uow=runtime.uow(),
        org_id=org_id,
        action=action,
        since=_time(since, "since"),
        until=_time(until, "until"),
        limit=limit,
        cursor=cursor,
    )
    query = urlencode(
        [
            (name, value)
            for name, value in (("action", action), ("since", since), ("until", until))
            if value
        ]
    )
    link = next_link(f"/orgs/{org_id}/audit_events", limit, next_cursor)
    if link and query:
        link["Link"] = link["Link"].replace("?", f"?{query}&", 1)
    response.headers.update(link)
    return [AuditEventOut.of(event) for event in events]
