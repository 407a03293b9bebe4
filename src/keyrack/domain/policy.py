"""An organization's key policy and the rules it imposes on new and changed keys."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keyrack.domain.errors import InvalidInput, PolicyViolation
from keyrack.domain.limits import Quota, RateLimit
from keyrack.domain.permissions import ALL_PERMISSIONS, normalize_permissions

MAX_LIFETIME_SECONDS = 10 * 366 * 86_400  # ten years: anything longer is "no limit"
MAX_ACTIVE_KEYS = 1_000_000
POLICY_FIELDS = {
    "max_key_lifetime_seconds",
    "require_expiry",
    "allowed_permissions",
    "max_active_keys",
    "default_rate_limit",
    "default_quota",
}


@dataclass(frozen=True)
class OrgPolicy:
    max_key_lifetime_seconds: int | None = None
    require_expiry: bool = False
    allowed_permissions: tuple[str, ...] = field(default=ALL_PERMISSIONS)
    max_active_keys: int | None = None
    default_rate_limit: RateLimit | None = None
    default_quota: Quota | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_key_lifetime_seconds": self.max_key_lifetime_seconds,
            "require_expiry": self.require_expiry,
            "allowed_permissions": list(self.allowed_permissions),
            "max_active_keys": self.max_active_keys,
            "default_rate_limit": self.default_rate_limit and self.default_rate_limit.to_json(),
            "default_quota": self.default_quota and self.default_quota.to_json(),
        }

    def check_expiry(self, expires_at: datetime | None, *, now: datetime) -> None:
        """A key's expiry must satisfy `require_expiry` and `max_key_lifetime_seconds`."""
        if expires_at is None:
            if self.require_expiry:
                raise PolicyViolation(
                    "the organization requires every key to have an expiry",
                    field="require_expiry",
                )
            if self.max_key_lifetime_seconds is not None:
                raise PolicyViolation(
                    "keys without expiry exceed the organization's maximum lifetime of "
                    f"{self.max_key_lifetime_seconds} seconds",
                    field="max_key_lifetime_seconds",
                )
            return
        limit = self.max_key_lifetime_seconds
        if limit is not None and expires_at > now + timedelta(seconds=limit):
            raise PolicyViolation(
                f"expires_at is beyond the organization's maximum key lifetime of {limit} seconds",
                field="max_key_lifetime_seconds",
            )

    def check_permissions(self, permissions: Iterable[str]) -> None:
        refused = [p for p in permissions if p not in self.allowed_permissions]
        if refused:
            raise PolicyViolation(
                f"the organization does not allow the permission(s): {', '.join(refused)}",
                field="allowed_permissions",
            )

    def check_active_keys(self, active_keys: int) -> None:
        """`active_keys` counts the org's keys before the new one is added."""
        if self.max_active_keys is not None and active_keys >= self.max_active_keys:
            raise PolicyViolation(
                f"the organization already has its maximum of {self.max_active_keys} active keys",
                field="max_active_keys",
            )


def _optional_int(data: Mapping[str, object], name: str, high: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidInput(f"must be null or an integer from 1 to {high}", field=name)
    return value


def parse_policy(data: Mapping[str, object]) -> OrgPolicy:
    """Validate a policy document; omitted fields take their defaults (no limit)."""
    unknown = sorted(set(data) - POLICY_FIELDS)
    if unknown:
        raise InvalidInput("unknown field", field=unknown[0])
    require_expiry = data.get("require_expiry", False)
    if not isinstance(require_expiry, bool):
        raise InvalidInput("must be true or false", field="require_expiry")
    allowed = data.get("allowed_permissions", list(ALL_PERMISSIONS))
    if not isinstance(allowed, list):
        raise InvalidInput("must be a list of permissions", field="allowed_permissions")
    return OrgPolicy(
        max_key_lifetime_seconds=_optional_int(
            data, "max_key_lifetime_seconds", MAX_LIFETIME_SECONDS
        ),
        require_expiry=require_expiry,
        allowed_permissions=normalize_permissions(allowed, field="allowed_permissions"),
        max_active_keys=_optional_int(data, "max_active_keys", MAX_ACTIVE_KEYS),
        default_rate_limit=RateLimit.parse(
            data.get("default_rate_limit"), field="default_rate_limit"
        ),
        default_quota=Quota.parse(data.get("default_quota"), field="default_quota"),
    )
