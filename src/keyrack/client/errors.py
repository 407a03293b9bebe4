"""The SDK's exceptions: one base, one class per kind of problem reported by the server or network.

Deliberately separate from `keyrack.domain.errors` (the server's hierarchy): a client may run
without the server's code paths, and `keyrack.KeyrackClientError` can never be confused with
`keyrack.domain.errors.KeyrackError`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class KeyrackClientError(Exception):
    """Base of every failure the SDK raises."""


class ConnectionFailed(KeyrackClientError):
    """The server could not be reached or did not answer (refused, DNS, timeout, reset)."""


class InvalidResponse(KeyrackClientError):
    """The server answered with something that is not the documented shape."""


class ApiError(KeyrackClientError):
    """The server answered with an RFC 9457 problem; `code` is its stable machine code."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        detail: str,
        title: str = "",
        errors: list[dict[str, str]] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.errors = errors or []
        self.headers = headers or httpx.Headers()


class BadRequest(ApiError):
    """400 and the other 4xx answers about the request itself (413, 415, 422, ...)."""


class Unauthorized(ApiError):
    """401: the API key is missing, malformed, unknown, revoked, expired or disabled."""


class Forbidden(ApiError):
    """403: the key lacks the needed permission."""


class NotFound(ApiError):
    """404: unknown organization or key (another organization's look the same)."""


class Conflict(ApiError):
    """409: conflicts with the current state."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` is the server's advice in seconds, if it gave one."""

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers)


class ServerError(ApiError):
    """5xx: the server (or a proxy in front of it) failed; 503 means retry later."""


ERROR_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000" dates parse as naive; HTTP dates are always UTC
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def problem_fields(response: httpx.Response) -> dict[str, Any]:
    """The problem's fields, or placeholders when a proxy answered with HTML or nothing."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = body.get("code")
    detail = body.get("detail")
    errors = body.get("errors")
    return {
        "code": code if isinstance(code, str) else f"HTTP_{response.status_code}",
        "detail": detail if isinstance(detail, str) else (response.reason_phrase or "error"),
        "title": body.get("title") if isinstance(body.get("title"), str) else "",
        "errors": errors if isinstance(errors, list) else None,
    }


def error_for(response: httpx.Response) -> ApiError:
    status = response.status_code
    error_type = ERROR_BY_STATUS.get(status)
    if error_type is None:
        error_type = ServerError if status >= 500 else BadRequest
    return error_type(status=status, headers=response.headers, **problem_fields(response))
