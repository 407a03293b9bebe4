"""keyrack: API keys for organizations (server, CLI, and the `keyrack.Client` SDK)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from keyrack.client import *  # noqa: F403
    from keyrack.service.verify import Verifier as Verifier

# PEP 562: `keyrack.Client` and friends load the SDK on first use, so importing the server
# (which imports `keyrack`) never pays for it.
# Kept as a literal rather than read from keyrack.client.__all__: reading that would import the
# SDK whenever `from keyrack import <submodule>` asks this module first (tests/unit/test_exports.py
# keeps the two lists equal).
_SDK_NAMES = frozenset(
    {
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
    }
)


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from keyrack import client

        return getattr(client, name)
    if name == "Verifier":  # the in-process verifier, without SQLAlchemy on `import keyrack`
        from keyrack.service.verify import Verifier

        return Verifier
    raise AttributeError(f"module 'keyrack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SDK_NAMES, "Verifier"])
