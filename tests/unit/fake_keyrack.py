"""An in-memory keyrack server as an `httpx.MockTransport` handler, following the documented
shapes exactly (key object, Link pagination, rotate, revoke, audit, policy, verify), for the
endpoints not on this branch yet; the e2e tests cover the real server."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

CREATED_AT = "2023-11-18T12:00:00Z"
PROBLEM = "application/problem+json"


def problem(status: int, code: str, detail: str, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail, "code": code}
    return httpx.Response(status, json=body, headers={"content-type": PROBLEM, **headers})


@dataclass
class FakeKeyrack:
    admin_key: str = "kr_admin"
    org_id: str = "acme"
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets_by_key_id: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, Any] = field(
        default_factory=lambda: {
            "max_key_lifetime_seconds": None,
            "require_expiry": False,
            "allowed_permissions": ["read", "write", "admin"],
            "max_active_keys": None,
            "default_rate_limit": None,
            "default_quota": None,
        }
    )
    requests: list[httpx.Request] = field(default_factory=list)

    def add_key(self, name: str, permissions: list[str], **extra: Any) -> tuple[str, str]:
        key_id = "key-" + secrets.token_hex(8)
        secret = "kr_" + secrets.token_hex(19)
        self.keys[key_id] = {
            "id": key_id,
            "name": name,
            "created_at": CREATED_AT,
            "permissions": permissions,
            "start": secret[:7],
            "expires_at": None,
            "last_used_at": None,
            "enabled": True,
            "rate_limit": None,
            "quota": None,
            **extra,
        }
        self.secrets_by_key_id[key_id] = secret
        self.events.append(
            {
                "id": len(self.events) + 1,
                "occurred_at": CREATED_AT,
                "org_id": self.org_id,
                "actor_key_id": None,
                "action": "key.create",
                "target": key_id,
                "client_ip": "127.0.0.1",
                "request_id": "req-1",
                "details": {"name": name},
            }
        )
        return key_id, secret

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/verify":
            return self.verify(json.loads(request.content))
        if request.headers.get("authorization") != f"Bearer {self.admin_key}":
            return problem(401, "NOT_FOUND", "unknown API key")
        prefix = f"/orgs/{self.org_id}"
        if not path.startswith(prefix + "/"):
            return problem(404, "ORG_NOT_FOUND", "no such organization")
        rest = path[len(prefix) :]
        body = json.loads(request.content) if request.content else None
        if rest == "/api_keys" and request.method == "GET":
            return self.page(request, list(self.keys.values()), "api_keys")
        if rest == "/api_keys" and request.method == "POST":
            key_id, secret = self.add_key(body["name"], body["permissions"])
            for name in ("expires_at", "rate_limit", "quota"):
                self.keys[key_id][name] = body.get(name)
            return httpx.Response(200, json={**self.keys[key_id], "key": secret})
        if rest == "/api_keys/revoke":
            ids = body.get("key_ids") or list(self.keys)[1:]
            revoked = [key_id for key_id in ids if self.keys.pop(key_id, None)]
            return httpx.Response(200, json={"revoked": revoked})
        if rest == "/audit_events":
            return self.page(request, self.events, "audit_events")
        if rest == "/policy":
            if request.method == "PUT":
                self.policy = body
            return httpx.Response(200, json=self.policy)
        key_id, _, action = rest.removeprefix("/api_keys/").partition("/")
        if key_id not in self.keys:
            return problem(404, "KEY_NOT_FOUND", "no such key")
        return self.key_action(request.method, key_id, action, body)

    def key_action(self, method: str, key_id: str, action: str, body: Any) -> httpx.Response:
        key = self.keys[key_id]
        if action == "rotate":
            secret = "kr_" + secrets.token_hex(19)
            self.secrets_by_key_id[key_id] = secret
            key["start"] = secret[:7]
            return httpx.Response(200, json={**key, "key": secret})
        if method == "GET":
            return httpx.Response(200, json=key)
        if method == "PATCH":
            key.update(body)
            return httpx.Response(200, json=key)
        del self.keys[key_id]
        return httpx.Response(200, json={"message": "API key deleted successfully"})

    def page(self, request: httpx.Request, items: list[Any], collection: str) -> httpx.Response:
        limit = int(request.url.params.get("limit", "100"))
        start = int(request.url.params.get("cursor", "0"))
        headers = {}
        if start + limit < len(items):
            url = f"/orgs/{self.org_id}/{collection}?limit={limit}&cursor={start + limit}"
            headers["Link"] = f'<{url}>; rel="next"'
        return httpx.Response(200, json=items[start : start + limit], headers=headers)

    def verify(self, body: dict[str, Any]) -> httpx.Response:
        found = [k for k, s in self.secrets_by_key_id.items() if s == body["key"]]
        if not found or found[0] not in self.keys:
            return problem(401, "NOT_FOUND", "unknown API key")
        key = self.keys[found[0]]
        if not key["enabled"]:
            return problem(401, "DISABLED", "the key is disabled")
        if not set(body["permissions"]) <= set(key["permissions"]):
            return problem(403, "INSUFFICIENT_PERMISSIONS", "missing permission")
        if key["rate_limit"] and key["rate_limit"]["limit"] == 0:
            return problem(429, "RATE_LIMITED", "slow down", **{"Retry-After": "7"})
        verdict = {
            "valid": True,
            "code": "VALID",
            "org_id": self.org_id,
            "key_id": key["id"],
            "name": key["name"],
            "permissions": key["permissions"],
        }
        return httpx.Response(200, json=verdict)
