"""RFC 9457 problem+json responses, and the one table mapping domain errors to HTTP statuses."""

from __future__ import annotations

import json
from typing import Any

from keyrack.domain import errors
from keyrack.domain.limits import limit_headers

PROBLEM_JSON = "application/problem+json"

# The one place where a domain error becomes an HTTP status (most specific class first).
STATUS_BY_ERROR: tuple[tuple[type[errors.KeyrackError], int], ...] = (
    (errors.InvalidInput, 400),
    (errors.Unauthenticated, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.IdempotencyKeyReused, 422),
    (errors.LimitExceeded, 429),
    (errors.ServiceUnavailable, 503),
)

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpProblem(Exception):
    """An HTTP-level failure raised in the api layer (body too large, wrong media type...)."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def status_for(error: errors.KeyrackError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def problem_body(
    status: int, code: str, detail: str, *, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:keyrack:problem:{code.lower().replace('_', '-')}",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({name: value for name, value in extra.items() if value is not None})
    return body


def from_error(error: errors.KeyrackError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers for a domain error."""
    status = status_for(error)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(error, errors.InvalidInput) and error.errors:
        extra["errors"] = error.errors
    if status == 401:
        # RFC 6750: a missing key gets a bare challenge, a bad one says invalid_token.
        headers["WWW-Authenticate"] = (
            'Bearer realm="keyrack"'
            if error.code == "MISSING"
            else 'Bearer realm="keyrack", error="invalid_token"'
        )
    if status == 503:
        headers["Retry-After"] = "1"
    if isinstance(error, errors.LimitExceeded):
        headers.update(limit_headers(error.decisions))
    detail = error.detail
    if error.field and not detail.startswith(error.field):
        detail = f"{error.field}: {detail}"
    return status, problem_body(status, error.code, detail, **extra), headers


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
