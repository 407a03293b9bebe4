"""Request and response bodies; shapes follow the seed page exactly, additions are additive."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from keyrack.domain import limits
from keyrack.domain.model import ApiKey, CreatedKey
from keyrack.domain.permissions import ALL_PERMISSIONS

# No control characters, and at least one character that is not white space.
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


def format_timestamp(value: datetime) -> str:
    """RFC 3339 UTC with `Z`, second precision: `2023-11-18T12:00:00Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2023-11-18T12:00:00Z"}),
]


_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def parse_rfc3339(value: object) -> datetime:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 time such as 2030-01-01T00:00:00Z")
    return datetime.fromisoformat(value.upper()).astimezone(UTC)


Rfc3339 = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2030-01-01T00:00:00Z"}),
]


def whole_number(value: object) -> object:
    """JSON Schema's `integer` includes `3.0`, so the API does too; `true` or `"3"` stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema defines it: any number whose fraction is zero.
WholeNumber = Annotated[StrictInt, BeforeValidator(whole_number)]

# The rules on names and permissions, stated in OpenAPI so that generated clients and schemathesis
# know them; the domain enforces them (normalize_name, normalize_permissions).
NAME_SCHEMA: dict[str, Any] = {"minLength": 1, "maxLength": 128, "pattern": NAME_PATTERN}
PERMISSIONS_SCHEMA: dict[str, Any] = {
    "minItems": 1,
    "uniqueItems": True,
    "items": {"type": "string", "enum": list(ALL_PERMISSIONS)},
}


class RateLimitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: WholeNumber = Field(ge=1, le=limits.RATE_LIMIT_MAX, examples=[100])
    window_seconds: WholeNumber = Field(ge=1, le=limits.RATE_WINDOW_MAX_SECONDS, examples=[60])


class QuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: WholeNumber = Field(ge=1, le=limits.QUOTA_LIMIT_MAX, examples=[10000])
    period: Literal["day", "month"]


class KeyOut(BaseModel):
    id: str = Field(examples=["key-7fJ2kq9XbLm3Np4Rs8Tv"])
    name: str = Field(examples=["My API Key"])
    created_at: Timestamp
    permissions: list[str] = Field(examples=[["read", "write"]])
    start: str = Field(
        description="The first characters of the secret, to recognise a key; never enough to use",
        examples=["kr_Ab3x"],
    )
    expires_at: Timestamp | None = Field(description="When the key stops working; null: never")
    last_used_at: Timestamp | None = Field(description="Last successful use; null when unknown")
    enabled: bool = Field(description="A disabled key gets 401 DISABLED until enabled again")
    rate_limit: RateLimitBody | None
    quota: QuotaBody | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            created_at=key.created_at,
            permissions=list(key.permissions),
            start=key.start,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
            enabled=key.enabled,
            rate_limit=key.rate_limit and RateLimitBody(**key.rate_limit.to_json()),
            quota=key.quota and QuotaBody(**key.quota.to_json()),
        )


class CreatedKeyOut(KeyOut):
    key: str = Field(
        description="The full secret. Returned only in this response, never again.",
        examples=["kr_3mVq8ZkT1pXw7RbN2cLs9dHf4GjY6aUe0x1Yz2"],
    )

    @classmethod
    def of_created(cls, created: CreatedKey) -> CreatedKeyOut:
        return cls(**KeyOut.of(created.key).model_dump(), key=created.secret)


class CreateKeyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "New API Key", "permissions": ["read", "write"]}]},
    )

    # The json_schema_extra constraints document in OpenAPI what the domain enforces (so that
    # generated clients and schemathesis know the rules); validation itself stays in the domain.
    name: StrictStr = Field(
        description="1-128 characters, not only spaces, no control characters; trimmed",
        json_schema_extra=NAME_SCHEMA,
    )
    permissions: list[StrictStr] = Field(
        description="Non-empty, unique, each of read, write, admin; at most what the caller holds",
        json_schema_extra=PERMISSIONS_SCHEMA,
    )
    # "In the future" depends on the clock, which JSON Schema cannot state.
    expires_at: Rfc3339 | None = Field(
        default=None, description="Must be in the future (else 400); omit or null: never"
    )
    rate_limit: RateLimitBody | None = Field(
        default=None,
        description="Omit to copy the org policy's default_rate_limit; null: none of its own"
        " (the policy's default, if any, then applies)",
    )
    quota: QuotaBody | None = Field(
        default=None,
        description="Omit to copy the org policy's default_quota; null: none of its own"
        " (the policy's default, if any, then applies)",
    )


class MessageOut(BaseModel):
    message: str = Field(examples=["API key deleted successfully"])


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable machine `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an operation can answer."""
    return {
        status: {
            "model": Problem,
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
            "description": _ERROR_DESCRIPTIONS[status],
        }
        for status in statuses
    }


_ERROR_DESCRIPTIONS = {
    400: "Invalid input: malformed JSON, a field outside its rules, or an unknown field",
    401: "Missing, malformed, unknown, revoked, expired or disabled API key",
    403: "The key lacks the permission this operation needs",
    404: "Unknown organization or key (another organization's resources look the same)",
    409: "Conflict with the current state",
    413: "Body larger than 64 KiB",
    415: "Body is not application/json",
    422: "Idempotency-Key reused with a different request body",
    429: "Rate limited",
    503: "A dependency (database) is unavailable; retry after the Retry-After delay",
}
