"""The Python SDK: `Client` and `AsyncClient` for a keyrack server, typed models and errors."""

from keyrack.client.aio import AsyncClient
from keyrack.client.core import RetryPolicy
from keyrack.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidResponse,
    KeyrackClientError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from keyrack.client.models import (
    ApiKey,
    AuditEvent,
    CreatedApiKey,
    Policy,
    Quota,
    RateLimit,
    RevokeResult,
    VerifyResult,
)
from keyrack.client.operations import UNSET
from keyrack.client.sync import Client

__all__ = [
    "UNSET",
    "ApiError",
    "ApiKey",
    "AsyncClient",
    "AuditEvent",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "CreatedApiKey",
    "Forbidden",
    "InvalidResponse",
    "KeyrackClientError",
    "NotFound",
    "Policy",
    "Quota",
    "RateLimit",
    "RateLimited",
    "RetryPolicy",
    "RevokeResult",
    "ServerError",
    "Unauthorized",
    "VerifyResult",
]
