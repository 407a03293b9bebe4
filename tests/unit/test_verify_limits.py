"""Usage controls on the raw-ASGI /verify endpoint, over fakes and the in-process limit store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from keyrack.api.client_address import parse_networks
from keyrack.api.verify import VerifyEndpoint
from keyrack.service import keys as service
from keyrack.service import policy as policy_service
from keyrack.service.auth_failures import AuthFailureLog
from keyrack.service.key_cache import CachedKeyEvents
from keyrack.service.limits import AuthFailureThrottle, UsageLimiter
from keyrack.service.usage_gate import THROTTLED, UsageGate
from keyrack.store.limits_memory import InProcessLimitStore
from tests.unit.test_verifier import FORMAT, HASHER, Harness
from tests.unit.test_verify_endpoint import fallback

PROXY = "10.0.0.1"


class Limited:
    """A /verify endpoint over a fake store, with a usage gate on an in-process limit store
    whose every call is counted."""

    def __init__(
        self, *, harness: Harness | None = None, store: InProcessLimitStore | None = None
    ) -> None:
        self.harness = harness or Harness()
        self.store = store or InProcessLimitStore()
        self.store_calls = 0
        original = self.store.acquire

        def counting_acquire(**kwargs: Any) -> Any:
            self.store_calls += 1
            return original(**kwargs)

        self.store.acquire = counting_acquire  # type: ignore[method-assign]
        original_then = self.store.acquire_then

        def counting_acquire_then(then: Any, **kwargs: Any) -> None:
            self.store_calls += 1
            original_then(then, **kwargs)

        self.store.acquire_then = counting_acquire_then  # type: ignore[method-assign]
        throttle = AuthFailureThrottle(self.store, limit=3, window_seconds=60)
        self.decisions: list[str] = []
        self.audit = AuthFailureLog(lambda: self.harness.uow)
        self.gate = UsageGate(
            limiter=UsageLimiter(self.store, auth_throttle=throttle),
            throttle=throttle,
            audit=self.audit,
            on_decision=self.decisions.append,
        )
        self.app = VerifyEndpoint(
            fallback,
            self.harness.verifier,
            max_body_bytes=1024,
            gate=self.gate,
            trusted_proxies=parse_networks([PROXY]),
        )

    def create(self, **limits: object) -> tuple[str, str]:
        created = service.create_key(
            uow=self.harness.uow,
            key_format=FORMAT,
            hasher=HASHER,
            org_id="acme",
            name="k",
            permissions=["read"],
            **limits,
        )
        return created.secret, created.key.id

    def get(self, secret: str | None, *, client: str = "192.0.2.1", **headers: str) -> Any:
        if secret is not None:
            headers["X-API-Key"] = secret

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(client, 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return await http.get("/verify", headers=headers)

        return asyncio.run(go())


@pytest.fixture
def limited() -> Limited:
    return Limited()


def test_rate_limited_key_gets_429_with_headers_after_its_limit(limited: Limited) -> None:
    secret, _ = limited.create(rate_limit={"limit": 2, "window_seconds": 60}, quota=None)
    first, second, third = (limited.get(secret) for _ in range(3))
    assert first.status_code == second.status_code == 200
    assert first.headers["ratelimit-policy"] == '"rate";q=2;w=60'
    assert first.headers["ratelimit"].startswith('"rate";r=1;t=')
    assert second.headers["ratelimit"].startswith('"rate";r=0;t=')
    assert "retry-after" not in second.headers
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["code"] == "RATE_LIMITED" and third.json()["valid"] is False
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert third.headers["ratelimit"].startswith('"rate";r=0;t=')
    assert limited.decisions == ["allowed", "allowed", "rate_limited"]


def test_used_up_quota_gets_usage_exceeded_and_successes_report_what_is_left(
    limited: Limited,
) -> None:
    secret, _ = limited.create(quota={"limit": 1, "period": "day"}, rate_limit=None)
    ok = limited.get(secret)
    assert ok.status_code == 200
    assert ok.headers["ratelimit-policy"] == '"quota";q=1;w=86400'
    assert ok.headers["ratelimit"].startswith('"quota";r=0;t=')
    refused = limited.get(secret)
    assert refused.status_code == 429 and refused.json()["code"] == "USAGE_EXCEEDED"
    assert int(refused.headers["retry-after"]) <= 86_400


def test_key_without_limits_never_reaches_the_store(limited: Limited) -> None:
    secret, _ = limited.create()
    for _ in range(5):
        response = limited.get(secret)
        assert response.status_code == 200
        assert "ratelimit" not in response.headers
    assert limited.store_calls == 0


def test_failed_authentications_block_the_address_and_only_that_address(
    limited: Limited,
) -> None:
    secret, key_id = limited.create()
    unknown = FORMAT.generate()
    assert [limited.get(unknown, client="192.0.2.7").status_code for _ in range(3)] == [401] * 3
    blocked = limited.get(unknown, client="192.0.2.7")
    assert blocked.status_code == 429 and blocked.json()["code"] == "RATE_LIMITED"
    assert blocked.headers["ratelimit-policy"] == '"auth-failures";q=3;w=60'
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    # A valid key from the blocked address is refused too; from elsewhere it works.
    assert limited.get(secret, client="192.0.2.8").status_code == 200
    assert limited.get(secret, client="192.0.2.7").status_code == 429
    # The refused valid key is attributable: one auth.failed event, reason THROTTLED.
    limited.audit.flush(everything=True)
    events = [e for e in limited.harness.uow.repo.audit if e.action == "auth.failed"]
    assert [(e.target, e.details["reason"], e.client_ip) for e in events] == [
        (key_id, THROTTLED, "192.0.2.7")
    ]


def test_missing_keys_are_not_counted_as_failures(limited: Limited) -> None:
    for _ in range(5):
        assert limited.get(None, client="192.0.2.9").status_code == 401
    assert limited.store_calls == 0


def test_forwarded_address_counts_only_behind_a_trusted_proxy(limited: Limited) -> None:
    secret, _ = limited.create()
    unknown = FORMAT.generate()
    behind_proxy = {"client": PROXY, "X-Forwarded-For": "198.51.100.4"}
    for _ in range(3):
        assert limited.get(unknown, **behind_proxy).status_code == 401
    assert limited.get(secret, **behind_proxy).status_code == 429
    other_user = {"client": PROXY, "X-Forwarded-For": "198.51.100.5"}
    assert limited.get(secret, **other_user).status_code == 200
    # An untrusted peer's X-Forwarded-For is ignored: it is judged by its own address.
    spoofed = {"client": "192.0.2.50", "X-Forwarded-For": "198.51.100.4"}
    assert limited.get(secret, **spoofed).status_code == 200


def test_an_address_blocked_through_another_instance() -> None:
    """Two instances sharing one store (as two servers share Redis): an instance that never
    saw the address fail lets its valid keys through (no store call for them); the address's
    next guess there is refused by the store, and from then on its keys are too."""
    first = Limited()
    second = Limited(harness=first.harness, store=first.store)
    limited_secret, _ = first.create(rate_limit={"limit": 100, "window_seconds": 60}, quota=None)
    plain_secret, _ = first.create()
    unknown = FORMAT.generate()
    for _ in range(3):
        assert first.get(unknown, client="192.0.2.70").status_code == 401
    assert first.get(plain_secret, client="192.0.2.70").status_code == 429
    assert not second.gate.any_watched
    assert second.get(plain_secret, client="192.0.2.70").status_code == 200
    assert second.get(unknown, client="192.0.2.70").status_code == 429
    assert second.get(plain_secret, client="192.0.2.70").status_code == 429
    assert second.get(limited_secret, client="192.0.2.70").status_code == 429
    assert second.get(limited_secret, client="192.0.2.71").status_code == 200


def test_a_valid_key_from_a_suspect_address_is_checked_against_the_store() -> None:
    """The address failed on both instances, the block was reached on the other one: the
    valid key (no limits) from that address is refused here too; from elsewhere it passes."""
    first = Limited()
    second = Limited(harness=first.harness, store=first.store)
    secret, _ = first.create()
    unknown = FORMAT.generate()
    assert second.get(unknown, client="192.0.2.80").status_code == 401
    for _ in range(2):
        assert first.get(unknown, client="192.0.2.80").status_code == 401
    assert not second.gate.any_blocked
    calls = second.store_calls
    assert second.get(secret, client="192.0.2.81").status_code == 200
    assert second.get(secret, client="192.0.2.80").status_code == 429
    assert second.gate.any_blocked
    assert second.store_calls == calls  # peeks only (acquire is what is counted)


def test_policy_default_limits_reach_cached_keys() -> None:
    limited = Limited()
    secret, key_id = limited.create(rate_limit=None, quota=None)
    assert limited.get(secret).status_code == 200
    assert limited.harness.cache.holds(key_id)  # cached without limits
    policy_service.set_policy(
        uow=limited.harness.uow,
        org_id="acme",
        document={"default_rate_limit": {"limit": 1, "window_seconds": 60}},
        events=CachedKeyEvents(limited.harness.cache),
    )
    assert limited.get(secret).status_code == 200
    assert limited.get(secret).status_code == 429


def test_watched_addresses_expire_with_the_window() -> None:
    now = [1_000_000.0]
    store = InProcessLimitStore(clock=lambda: now[0])
    throttle = AuthFailureThrottle(store, limit=3, window_seconds=60)
    gate = UsageGate(
        limiter=UsageLimiter(store, auth_throttle=throttle),
        throttle=throttle,
        clock=lambda: now[0],
    )
    for _ in range(3):
        gate.failed_sync(code="NOT_FOUND", address="192.0.2.90", key=None, request_id=None)
    assert gate.any_blocked and gate.refusal_for("192.0.2.90") is not None
    now[0] += 61
    assert not gate.any_watched  # nothing left to check: valid keys skip the address again
    assert gate.refusal_for("192.0.2.90") is None
