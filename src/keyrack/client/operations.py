"""Every endpoint as a `Call`: path, query, body and parser, built once for both clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Final
from urllib.parse import quote

import httpx

from keyrack.client.core import Call, Page, model, nothing, page_of
from keyrack.client.errors import problem_fields, retry_after_seconds
from keyrack.client.models import (
    ApiKey,
    AuditEvent,
    CreatedApiKey,
    Policy,
    Quota,
    RateLimit,
    RevokeResult,
    VerifyResult,
    rfc3339,
)


class Unset(Enum):
    """Marks an `update_key` field left as it is (None means "clear it")."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET

RateLimitArg = RateLimit | Mapping[str, Any]
QuotaArg = Quota | Mapping[str, Any]


def _segment(value: str) -> str:
    # Ids are path segments: a slash or `..` in user input must not change the route.
    return quote(value, safe="")


def keys_path(org_id: str, key_id: str | None = None) -> str:
    base = f"/orgs/{_segment(org_id)}/api_keys"
    return base if key_id is None else f"{base}/{_segment(key_id)}"


def _limits(value: RateLimitArg | QuotaArg | None) -> Any:
    if value is None or isinstance(value, Mapping):
        return None if value is None else dict(value)
    return value.model_dump(mode="json")


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def list_keys(org_id: str, *, page_size: int | None = None) -> Call[Page[ApiKey]]:
    params = [("limit", str(page_size))] if page_size is not None else []
    return Call("GET", keys_path(org_id), page_of(ApiKey), params=params)


def get_key(org_id: str, key_id: str) -> Call[ApiKey]:
    return Call("GET", keys_path(org_id, key_id), model(ApiKey))


def create_key(
    org_id: str,
    *,
    name: str,
    permissions: Iterable[str],
    expires_at: datetime | None = None,
    rate_limit: RateLimitArg | None = None,
    quota: QuotaArg | None = None,
    idempotency_key: str | None = None,
) -> Call[CreatedApiKey]:
    body: dict[str, Any] = {"name": name, "permissions": list(permissions)}
    if expires_at is not None:
        body["expires_at"] = rfc3339(expires_at)
    if rate_limit is not None:
        body["rate_limit"] = _limits(rate_limit)
    if quota is not None:
        body["quota"] = _limits(quota)
    return Call(
        "POST",
        keys_path(org_id),
        model(CreatedApiKey),
        json=body,
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def update_key(
    org_id: str,
    key_id: str,
    *,
    name: str | Unset = UNSET,
    permissions: Iterable[str] | Unset = UNSET,
    enabled: bool | Unset = UNSET,
    expires_at: datetime | Unset | None = UNSET,
    rate_limit: RateLimitArg | Unset | None = UNSET,
    quota: QuotaArg | Unset | None = UNSET,
) -> Call[ApiKey]:
    body: dict[str, Any] = {}
    if not isinstance(name, Unset):
        body["name"] = name
    if not isinstance(permissions, Unset):
        body["permissions"] = list(permissions)
    if not isinstance(enabled, Unset):
        body["enabled"] = enabled
    if not isinstance(expires_at, Unset):
        body["expires_at"] = None if expires_at is None else rfc3339(expires_at)
    if not isinstance(rate_limit, Unset):
        body["rate_limit"] = _limits(rate_limit)
    if not isinstance(quota, Unset):
        body["quota"] = _limits(quota)
    if not body:
        raise ValueError("update_key needs at least one field to change")
    # PATCH is not idempotent by HTTP's rules: replayed only when it surely was not sent.
    return Call("PATCH", keys_path(org_id, key_id), model(ApiKey), json=body)


def rotate_key(
    org_id: str,
    key_id: str,
    *,
    grace_period_seconds: int = 0,
    idempotency_key: str | None = None,
) -> Call[CreatedApiKey]:
    return Call(
        "POST",
        keys_path(org_id, key_id) + "/rotate",
        model(CreatedApiKey),
        json={"grace_period_seconds": grace_period_seconds},
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def delete_key(org_id: str, key_id: str) -> Call[None]:
    return Call("DELETE", keys_path(org_id, key_id), nothing)


def revoke_keys(
    org_id: str, *, key_ids: Iterable[str] | None = None, all_except_caller: bool = False
) -> Call[RevokeResult]:
    if (key_ids is None) == (not all_except_caller):
        raise ValueError("revoke_keys takes either key_ids or all_except_caller=True")
    body: dict[str, Any] = (
        {"all_except_caller": True} if all_except_caller else {"key_ids": list(key_ids or [])}
    )
    return Call("POST", keys_path(org_id) + "/revoke", model(RevokeResult), json=body)


def list_audit_events(
    org_id: str,
    *,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int | None = None,
) -> Call[Page[AuditEvent]]:
    params: list[tuple[str, str]] = []
    if action is not None:
        params.append(("action", action))
    if since is not None:
        params.append(("since", rfc3339(since)))
    if until is not None:
        params.append(("until", rfc3339(until)))
    if page_size is not None:
        params.append(("limit", str(page_size)))
    return Call("GET", f"/orgs/{_segment(org_id)}/audit_events", page_of(AuditEvent), params=params)


def get_policy(org_id: str) -> Call[Policy]:
    return Call("GET", f"/orgs/{_segment(org_id)}/policy", model(Policy))


def set_policy(org_id: str, policy: Policy) -> Call[Policy]:
    return Call(
        "PUT",
        f"/orgs/{_segment(org_id)}/policy",
        model(Policy),
        json=policy.model_dump(mode="json"),
    )


# A refusal of /verify is its answer about the key, not a failure of the call.
VERDICT_STATUSES: Final = frozenset({401, 403, 429})


def _verdict(response: httpx.Response) -> VerifyResult:
    if response.is_success:
        return VerifyResult.model_validate_json(response.content)
    fields = problem_fields(response)
    return VerifyResult(
        valid=False,
        code=fields["code"],
        detail=fields["detail"],
        status=response.status_code,
        retry_after=retry_after_seconds(response.headers),
    )


def verify(key: str, *, permissions: Iterable[str] = ()) -> Call[VerifyResult]:
    # POST keeps the key out of URLs and access logs; it changes nothing, so replaying is safe.
    # A 429 here is the key's own rate limit: retrying would only spend more of it.
    return Call(
        "POST",
        "/verify",
        _verdict,
        json={"key": key, "permissions": list(permissions)},
        authenticated=False,
        verdicts=VERDICT_STATUSES,
        replay_safe=True,
    )
