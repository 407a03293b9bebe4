"""Audit records: who did what to which key, from where; never a secret or a hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

KEY_CREATE = "key.create"
KEY_UPDATE = "key.update"
KEY_ROTATE = "key.rotate"
KEY_DELETE = "key.delete"
KEY_REVOKE = "key.revoke"
POLICY_UPDATE = "policy.update"
AUTH_FAILED = "auth.failed"
ACTIONS = (KEY_CREATE, KEY_UPDATE, KEY_ROTATE, KEY_DELETE, KEY_REVOKE, POLICY_UPDATE, AUTH_FAILED)


@dataclass(frozen=True)
class RequestTrail:
    """Where a management request came from, for the audit log."""

    client_ip: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    org_id: str
    occurred_at: datetime
    action: str
    actor_key_id: str | None = None
    target: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
