"""Usage controls wired into a real runtime: effective limits from the database (SQLite and
PostgreSQL), the management API's 429, and Redis unreachable in both failure modes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from keyrack.api.app import create_app
from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.service import policy as policy_service
from keyrack.settings import Settings
from tests.conftest import TEST_PEPPER
from tests.random_refs import random_org_id

RATE = {"limit": 2, "window_seconds": 60}


def new_key(runtime: Runtime, org_id: str, **limits: object) -> tuple[str, str]:
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="k",
        permissions=["read", "write", "admin"],
        **limits,
    )
    return created.secret, created.key.id


def new_org(runtime: Runtime) -> str:
    org_id = random_org_id()
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    return org_id


async def requests(
    app: Any, *calls: tuple[str, str, str], client: str = "192.0.2.30"
) -> list[httpx.Response]:
    """(method, path, key) one after another, in one event loop (as a server worker)."""
    transport = httpx.ASGITransport(app=app, client=(client, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=10) as http:
        return [
            await http.request(method, path, headers={"X-API-Key": key})
            for method, path, key in calls
        ]


def test_verification_carries_the_effective_limits_and_follows_policy_changes(
    runtime: Runtime,
) -> None:
    org_id = new_org(runtime)
    plain, _ = new_key(runtime, org_id, rate_limit=None, quota=None)
    own, _ = new_key(runtime, org_id, rate_limit=RATE, quota=None)
    assert runtime.verifier.cache is not None
    runtime.verifier.cache.reset(trusted=True)  # as once the change feed is connected
    before = runtime.verifier.verify(plain).key
    assert before is not None and not before.limited
    policy_service.set_policy(
        uow=runtime.uow(write=True),
        org_id=org_id,
        document={
            "default_rate_limit": {"limit": 5, "window_seconds": 10},
            "default_quota": {"limit": 100, "period": "month"},
        },
        events=runtime.events,
    )
    after = runtime.verifier.verify(plain).key
    assert after is not None
    assert (after.rate_limit and after.rate_limit.to_json()) == {"limit": 5, "window_seconds": 10}
    assert (after.quota and after.quota.to_json()) == {"limit": 100, "period": "month"}
    mixed = runtime.verifier.verify(own).key  # its own rate limit wins, the quota is the org's
    assert mixed is not None and mixed.rate_limit and mixed.rate_limit.to_json() == RATE
    assert mixed.quota is not None and mixed.quota.limit == 100


def test_management_api_limits_the_calling_key(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    secret, _ = new_key(runtime, org_id, rate_limit=RATE, quota=None)
    path = f"/orgs/{org_id}/api_keys"
    app = create_app(runtime)
    answers = asyncio.run(requests(app, *[("GET", path, secret)] * 3))
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-policy"] == '"rate";q=2;w=60'
    # /verify shares the key's counters: it is over its limit there too.
    assert asyncio.run(requests(app, ("GET", "/verify", secret)))[0].status_code == 429


def test_management_api_throttles_failed_authentications(settings: Settings) -> None:
    runtime = build_runtime(settings.model_copy(update={"auth_failure_limit": 3}))
    try:
        org_id = new_org(runtime)
        secret, _ = new_key(runtime, org_id)
        path = f"/orgs/{org_id}/api_keys"
        guesses = [("GET", path, runtime.key_format.generate())] * 4
        app = create_app(runtime)
        answers = asyncio.run(requests(app, *guesses, ("GET", path, secret)))
        assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
        assert answers[3].json()["code"] == "RATE_LIMITED"
        assert answers[3].headers["ratelimit-policy"] == '"auth-failures";q=3;w=60'
        elsewhere = asyncio.run(requests(app, ("GET", path, secret), client="192.0.2.31"))
        assert elsewhere[0].status_code == 200
    finally:
        runtime.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there any more: connections are refused


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def runtime_with_redis(tmp_path: Path, port: int, mode: str) -> Runtime:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'keyrack.db'}",
        pepper=TEST_PEPPER,
        redis_url=f"redis://127.0.0.1:{port}/0",
        limits_failure_mode=mode,  # type: ignore[arg-type]
        redis_timeout_seconds=0.2,
    )
    return build_runtime(settings)


def failures_counted() -> float:
    total = 0.0
    for reason in ("unreachable", "skipped"):
        value = REGISTRY.get_sample_value("keyrack_limit_store_failures_total", {"reason": reason})
        total += value or 0.0
    return total


def test_redis_unreachable_fails_closed_with_503(tmp_path: Path, closed_port: int) -> None:
    runtime = runtime_with_redis(tmp_path, closed_port, "closed")
    try:
        org_id = new_org(runtime)
        limited, _ = new_key(runtime, org_id, rate_limit=RATE, quota=None)
        plain, _ = new_key(runtime, org_id, rate_limit=None, quota=None)
        path = f"/orgs/{org_id}/api_keys"
        started = time.monotonic()
        answers = asyncio.run(
            requests(
                create_app(runtime),
                ("GET", "/verify", limited),
                ("GET", path, limited),
                ("GET", "/verify", plain),  # no limits: Redis is not needed
                ("GET", path, plain),
            )
        )
        assert time.monotonic() - started < 5
        assert [a.status_code for a in answers] == [503, 503, 200, 200]
        for refused in answers[:2]:
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
            assert refused.headers["retry-after"] == "1"
    finally:
        runtime.close()


def test_silent_redis_fails_open_quickly_and_is_counted(tmp_path: Path, silent_port: int) -> None:
    runtime = runtime_with_redis(tmp_path, silent_port, "open")
    try:
        org_id = new_org(runtime)
        limited, _ = new_key(runtime, org_id, rate_limit=RATE, quota=None)
        path = f"/orgs/{org_id}/api_keys"
        counted = failures_counted()
        started = time.monotonic()
        answers = asyncio.run(
            requests(
                create_app(runtime), *[("GET", "/verify", limited), ("GET", path, limited)] * 3
            )
        )
        elapsed = time.monotonic() - started
        # Six requests over a limit of two, all admitted unchecked; one timeout at most per
        # client (the async and the sync one), then Redis is left alone for a second.
        assert [a.status_code for a in answers] == [200] * 6
        assert elapsed < 3, elapsed
        assert "ratelimit" not in answers[0].headers
        assert failures_counted() - counted == 6
    finally:
        runtime.close()
