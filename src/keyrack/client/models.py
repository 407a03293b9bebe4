"""Typed answers of every endpoint, as the SDK returns them (unknown fields are ignored)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer


def rfc3339(value: datetime) -> str:
    """The wire format of timestamps: `2023-11-18T12:00:00Z` (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]


class Model(BaseModel):
    # Ignoring unknown fields lets an older SDK read a newer server's additive answers.
    model_config = ConfigDict(extra="ignore", frozen=True)


class RateLimit(Model):
    limit: int
    window_seconds: int


class Quota(Model):
    limit: int
    period: Literal["day", "month"]


class ApiKey(Model):
    """A key as listed: never its secret, only the `start` to recognise it."""

    id: str
    name: str
    created_at: Timestamp
    permissions: list[str]
    start: str
    expires_at: Timestamp | None = None
    last_used_at: Timestamp | None = None
    enabled: bool = True
    rate_limit: RateLimit | None = None
    quota: Quota | None = None


class CreatedApiKey(ApiKey):
    """The answer of create and rotate: `key` is the secret, returned this once."""

    key: str = Field(repr=False)  # kept out of repr() so a logged object does not leak it


class RevokeResult(Model):
    revoked: list[str]


class AuditEvent(Model):
    id: int | str  # the server's sequence number; opaque to clients
    occurred_at: Timestamp
    org_id: str
    actor_key_id: str | None = None
    action: str
    target: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Policy(Model):
    """An organization's policy; `set_policy` replaces it whole (PUT)."""

    max_key_lifetime_seconds: int | None = None
    require_expiry: bool = False
    allowed_permissions: list[str] = Field(default_factory=lambda: ["read", "write", "admin"])
    max_active_keys: int | None = None
    default_rate_limit: RateLimit | None = None
    default_quota: Quota | None = None


class VerifyResult(Model):
    """The verdict on a key. `valid` is False for every refusal (the `code` says which:
    MISSING, MALFORMED, NOT_FOUND, EXPIRED, DISABLED, INSUFFICIENT_PERMISSIONS, RATE_LIMITED,
    USAGE_EXCEEDED); `retry_after` is set on RATE_LIMITED/USAGE_EXCEEDED when the server said."""

    valid: bool
    code: str
    org_id: str | None = None
    key_id: str | None = None
    name: str | None = None
    permissions: list[str] = Field(default_factory=list)
    detail: str | None = None
    status: int = 200
    retry_after: float | None = None
