"""Schemathesis hooks (via SCHEMATHESIS_HOOKS): a fresh admin key per case, future expiry.

The fuzzer may delete any key it can list, the one it authenticates with included, which would
turn the rest of the run into 401s; minting a key per case in the server's own database (same
KEYRACK_* settings) keeps every case authenticated without weakening the API.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import schemathesis

from keyrack.api.schemas import parse_rfc3339
from keyrack.domain.policy import OrgPolicy
from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings

ORG_VARIABLE = "KEYRACK_ST_ORG_ID"
# Where the minted secrets are listed, one a line, for the test run's secrets scan.
SECRETS_FILE_VARIABLE = "KEYRACK_ST_SECRETS_FILE"


@cache
def runtime() -> Runtime:
    return build_runtime(Settings())


@schemathesis.auth(refresh_interval=None)
class FreshAdminKey:
    def get(self, case: Any, context: Any) -> str:
        org_id = os.environ[ORG_VARIABLE]
        # The fuzzer may have PUT a policy that forbids admin keys or caps active keys; each case
        # starts from the default policy so that minting its key is always allowed.
        with runtime().uow(write=True) as uow:
            uow.repo.set_policy(org_id, OrgPolicy())
            uow.commit()
        created = key_service.create_key(
            uow=runtime().uow(write=True),
            key_format=runtime().key_format,
            hasher=runtime().hasher,
            org_id=org_id,
            name="schemathesis",
            permissions=["read", "write", "admin"],
        )
        with open(os.environ[SECRETS_FILE_VARIABLE], "a") as issued:
            issued.write(created.secret + "\n")
        return created.secret

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


MAX_CURSOR_LENGTH = 512  # keyrack/api/paging.py: PageCursor
# Operations whose body carries `expires_at`, which the API requires to be in the future.
EXPIRY_OPERATIONS = {
    ("POST", "/orgs/{org_id}/api_keys"),
    ("PATCH", "/orgs/{org_id}/api_keys/{key_id}"),
}


def future_expiry(value: str, *, now: datetime) -> str:
    """`value` moved 400-year steps forward until after next year: the Gregorian calendar
    repeats every 400 years, so the day, the time and the UTC offset all stay valid."""
    year = int(value[:4])
    target = now.year + 2
    if year >= target:
        return value
    return f"{year + 400 * -(-(target - year) // 400):04d}{value[4:]}"


# Paginated operations: their `cursor` is opaque, valid only as a Link header gave it.
CURSOR_OPERATIONS = {
    ("GET", "/orgs/{org_id}/api_keys"),
    ("GET", "/orgs/{org_id}/audit_events"),
}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Two rules JSON Schema cannot state, documented in the operations in words, and kept the
    narrowest way: only values the schema calls valid are touched, so a negative case stays
    negative; everything else is sent as generated, and all checks stay on.
    - `expires_at` must be in the future (it depends on the clock): a past one is moved forward.
    - a `cursor` must be one the server issued (tests/e2e check that others get 400): a
      generated one is dropped, so the request asks for the first page."""
    operation = (case.operation.method.upper(), case.operation.path)
    query = case.query
    if operation in CURSOR_OPERATIONS and isinstance(query, dict):
        cursor = query.get("cursor")
        if isinstance(cursor, str) and len(cursor) <= MAX_CURSOR_LENGTH:
            case.query = {name: value for name, value in query.items() if name != "cursor"}
    body = case.body
    if operation not in EXPIRY_OPERATIONS or not isinstance(body, dict):
        return
    value = body.get("expires_at")
    if isinstance(value, str) and _is_past_time(value):
        case.body = {**body, "expires_at": future_expiry(value, now=datetime.now(UTC))}


def _is_past_time(value: str) -> bool:
    try:
        return parse_rfc3339(value) <= datetime.now(UTC)
    except (ValueError, OverflowError):
        return False
