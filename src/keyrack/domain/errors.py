"""The one error hierarchy: services raise these, the API maps them to HTTP in one table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyrack.domain.limits import Decision


class KeyrackError(Exception):
    """Base of every expected failure; `code` is the stable machine code clients switch on."""

    code = "ERROR"
    title = "Error"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(KeyrackError):
    code = "INVALID_INPUT"
    title = "Invalid input"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail, code=code, field=field)
        self.errors = errors or ([{"field": field, "message": detail}] if field else [])


class PolicyViolation(InvalidInput):
    code = "POLICY_VIOLATION"
    title = "Organization policy violated"


class Unauthenticated(KeyrackError):
    """No usable key: missing, malformed, unknown, expired or disabled (`code` says which)."""

    code = "UNAUTHENTICATED"
    title = "Unauthorized"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        org_id: str | None = None,
        key_id: str | None = None,
    ) -> None:
        super().__init__(detail, code=code)
        # Set when the refused key exists (expired, disabled, rotated out): for the audit log.
        self.org_id = org_id
        self.key_id = key_id


class PermissionDenied(KeyrackError):
    code = "INSUFFICIENT_PERMISSIONS"
    title = "Forbidden"


class NotFound(KeyrackError):
    code = "NOT_FOUND"
    title = "Not found"


class OrgNotFound(NotFound):
    code = "ORG_NOT_FOUND"


class KeyNotFound(NotFound):
    code = "KEY_NOT_FOUND"


class Conflict(KeyrackError):
    code = "CONFLICT"
    title = "Conflict"


class OrgExists(Conflict):
    code = "ORG_EXISTS"


class IdempotencyInFlight(Conflict):
    code = "IDEMPOTENCY_IN_FLIGHT"


class IdempotencyKeyReused(KeyrackError):
    """The same Idempotency-Key came with a different request (HTTP 422, as in the IETF draft)."""

    code = "IDEMPOTENCY_KEY_REUSED"
    title = "Idempotency key reused"


class ServiceUnavailable(KeyrackError):
    """A dependency (database, Redis) is down; the client should retry later."""

    code = "SERVICE_UNAVAILABLE"
    title = "Service unavailable"


class LimitExceeded(KeyrackError):
    """A usage limit refused the request; `decisions` carry what the RateLimit headers report."""

    code = "LIMIT_EXCEEDED"
    title = "Too many requests"

    def __init__(self, detail: str, *, decisions: Sequence[Decision] = ()) -> None:
        super().__init__(detail)
        self.decisions = tuple(decisions)


class RateLimited(LimitExceeded):
    """Too many requests in the rate window (or too many failed authentications)."""

    code = "RATE_LIMITED"


class UsageExceeded(LimitExceeded):
    """The key's quota for the current day or month is used up."""

    code = "USAGE_EXCEEDED"
