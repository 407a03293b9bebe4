"""Bodies of the lifecycle endpoints: update, rotate, bulk revoke, policy, audit events."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from keyrack.api.schemas import (
    NAME_SCHEMA,
    PERMISSIONS_SCHEMA,
    QuotaBody,
    RateLimitBody,
    Rfc3339,
    Timestamp,
    WholeNumber,
    whole_number,
)
from keyrack.domain.audit import ACTIONS, AuditEvent
from keyrack.domain.model import KEY_ID_PATTERN
from keyrack.domain.policy import MAX_ACTIVE_KEYS, MAX_LIFETIME_SECONDS, OrgPolicy
from keyrack.service.key_changes import MAX_BULK_KEYS, MAX_GRACE_SECONDS


class KeyPatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "CI deploys", "enabled": False}],
            "description": "At least one of these fields; omitted fields stay as they are.",
            "minProperties": 1,
        },
    )

    # Omitted means unchanged, but null is no value for these three (the domain answers 400):
    # the schema says so instead of pydantic's nullable default.
    name: Annotated[
        StrictStr | None,
        WithJsonSchema({"type": "string", "description": "As on create", **NAME_SCHEMA}),
    ] = None
    permissions: Annotated[
        list[StrictStr] | None,
        WithJsonSchema(
            {
                "type": "array",
                "description": "As on create: at most what the caller holds",
                **PERMISSIONS_SCHEMA,
            }
        ),
    ] = None
    enabled: Annotated[StrictBool | None, WithJsonSchema({"type": "boolean"})] = None
    # "In the future" depends on the clock, which JSON Schema cannot state.
    expires_at: Rfc3339 | None = Field(
        default=None, description="Must be in the future (else 400), or null: never"
    )
    rate_limit: RateLimitBody | None = None
    quota: QuotaBody | None = None


class RotateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"grace_period_seconds": 3600}]}
    )

    grace_period_seconds: WholeNumber = Field(
        default=0,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the old secret keeps working (0 to 7 days; default 0: not at all)",
    )


class RevokeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"key_ids": ["key-7fJ2kq9XbLm3Np4Rs8Tv"]}, {"all_except_caller": True}],
            "description": "Exactly one of `key_ids` and `all_except_caller: true`.",
            "minProperties": 1,
            "maxProperties": 1,
        },
    )

    key_ids: Annotated[
        list[StrictStr] | None,
        WithJsonSchema(
            {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BULK_KEYS,
                "items": {"type": "string", "pattern": KEY_ID_PATTERN},
                "description": "Keys to revoke (ids the organization does not own are skipped)",
            }
        ),
    ] = None
    all_except_caller: Annotated[
        StrictBool | None,
        WithJsonSchema(
            {
                "const": True,
                "description": "Revoke every key of the organization except the calling one",
            }
        ),
    ] = None

    @model_validator(mode="after")
    def exactly_one(self) -> RevokeIn:
        if len(self.model_fields_set) != 1 or (
            self.key_ids is None and self.all_except_caller is not True
        ):
            raise ValueError("give either key_ids or all_except_caller: true")
        return self


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

    # The bounds come before the whole-number conversion: after it (or on the union), pydantic
    # would write them into the schema as unknown keywords instead of minimum/maximum.
    max_key_lifetime_seconds: (
        Annotated[StrictInt, Field(ge=1, le=MAX_LIFETIME_SECONDS), BeforeValidator(whole_number)]
        | None
    ) = Field(default=None, description="null: no maximum")
    require_expiry: StrictBool = False
    allowed_permissions: list[StrictStr] = Field(
        default=["read", "write", "admin"], json_schema_extra=PERMISSIONS_SCHEMA
    )
    max_active_keys: (
        Annotated[StrictInt, Field(ge=1, le=MAX_ACTIVE_KEYS), BeforeValidator(whole_number)] | None
    ) = Field(default=None, description="Unexpired keys; null: no maximum")
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
