"""Bodies of the lifecycle endpoints: update, rotate, bulk revoke, policy, audit events."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from keyrack.api.schemas import QuotaBody, RateLimitBody, Rfc3339, Timestamp
from keyrack.domain.audit import ACTIONS, AuditEvent
from keyrack.domain.policy import MAX_ACTIVE_KEYS, MAX_LIFETIME_SECONDS, OrgPolicy
from keyrack.service.key_changes import MAX_BULK_KEYS, MAX_GRACE_SECONDS


class KeyPatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "CI deploys", "enabled": False}],
            "description": "Any of these fields; omitted fields stay as they are.",
        },
    )

    name: StrictStr | None = Field(default=None, description="As on create")
    permissions: list[StrictStr] | None = Field(
        default=None, description="As on create: at most what the caller holds"
    )
    enabled: StrictBool | None = None
    expires_at: Rfc3339 | None = Field(default=None, description="In the future, or null: never")
    rate_limit: RateLimitBody | None = None
    quota: QuotaBody | None = None


class RotateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"grace_period_seconds": 3600}]}
    )

    grace_period_seconds: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the old secret keeps working (0 to 7 days; default 0: not at all)",
    )


class RevokeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"key_ids": ["key-7fJ2kq9XbLm3Np4Rs8Tv"]}, {"all_except_caller": True}]
        },
    )

    key_ids: list[StrictStr] | None = Field(
        default=None, max_length=MAX_BULK_KEYS, description="Keys to revoke (unknown ids skipped)"
    )
    all_except_caller: StrictBool | None = Field(
        default=None, description="true: revoke every key of the org except the calling one"
    )


class RevokedOut(BaseModel):
    revoked: list[str] = Field(examples=[["key-7fJ2kq9XbLm3Np4Rs8Tv"]])


class PolicyBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "max_key_lifetime_seconds": 7776000,
                    "require_expiry": True,
                    "allowed_permissions": ["read", "write"],
                    "max_active_keys": 50,
                    "default_rate_limit": {"limit": 100, "window_seconds": 60},
                    "default_quota": None,
                }
            ]
        },
    )

    max_key_lifetime_seconds: StrictInt | None = Field(
        default=None, ge=1, le=MAX_LIFETIME_SECONDS, description="null: no maximum"
    )
    require_expiry: StrictBool = False
    allowed_permissions: list[StrictStr] = Field(default=["read", "write", "admin"])
    max_active_keys: StrictInt | None = Field(
        default=None, ge=1, le=MAX_ACTIVE_KEYS, description="Unexpired keys; null: no maximum"
    )
    default_rate_limit: RateLimitBody | None = None
    default_quota: QuotaBody | None = None

    @classmethod
    def of(cls, policy: OrgPolicy) -> PolicyBody:
        return cls.model_validate(policy.as_dict())


class AuditEventOut(BaseModel):
    id: int = Field(examples=[42])
    occurred_at: Timestamp
    org_id: str = Field(examples=["acme"])
    actor_key_id: str | None = Field(examples=["key-7fJ2kq9XbLm3Np4Rs8Tv"])
    action: str = Field(description=f"One of: {', '.join(ACTIONS)}", examples=["key.create"])
    target: str | None = Field(examples=["key-9Lm3Np4Rs8Tv7fJ2kq9X"])
    client_ip: str | None = Field(examples=["203.0.113.7"])
    request_id: str | None = Field(examples=["9f1c2e0a"])
    details: dict[str, Any] = Field(examples=[{"name": "CI", "permissions": ["read"]}])

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        assert event.id is not None
        return cls(
            id=event.id,
            occurred_at=event.occurred_at,
            org_id=event.org_id,
            actor_key_id=event.actor_key_id,
            action=event.action,
            target=event.target,
            client_ip=event.client_ip,
            request_id=event.request_id,
            details=event.details,
        )
