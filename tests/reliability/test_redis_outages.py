"""Redis outages: /verify, the management API and /readyz follow KEYRACK_LIMITS_FAILURE_MODE.

A fault proxy sits between keyrack and the shared Redis (which is never stopped). For each
failure mode one server lives through a refused and then a blackholed Redis; every answer
during the outage is the documented one (closed: 503 problem+json with Retry-After; open:
admitted unchecked), quick, never a 500, and limits are enforced again by themselves after
the restore.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.connection import parse_url

from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.load import wait_until
from tests.reliability.servers import Backend, Node, Tenant, in_process_runtime, new_tenant

# A script call gives up after 3 x KEYRACK_REDIS_TIMEOUT_SECONDS (0.25 s), then Redis is left
# alone for 1 s: no answer during an outage should come near this.
OUTAGE_BOUND_SECONDS = 1.5
RECOVERY_BOUND_SECONDS = 5.0
LIMIT = 5


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[FaultProxy]:
    parsed = parse_url(redis_url)
    with FaultProxy(parsed.get("host", "127.0.0.1"), int(parsed.get("port", 6379))) as proxy:
        yield proxy


def start_node(
    tmp_path: Path, redis_url: str, proxy: FaultProxy, failure_mode: str
) -> tuple[Node, Tenant]:
    backend = Backend(database_url=f"sqlite:///{tmp_path / 'keyrack.db'}", data_dir=tmp_path)
    runtime = in_process_runtime(backend)
    try:
        tenant = new_tenant(runtime)
    finally:
        runtime.close()
    database = parse_url(redis_url).get("db", 0)
    node = Node(
        backend,
        tmp_path,
        name=f"fail-{failure_mode}",
        extra_env={
            "KEYRACK_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{database}",
            "KEYRACK_LIMITS_FAILURE_MODE": failure_mode,
        },
    )
    node.start()
    return node, tenant


def timed_get(
    client: httpx.Client, path: str, secret: str | None = None
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    response = client.get(path, headers=headers)
    elapsed = time.monotonic() - started
    assert response.status_code < 500 or response.status_code == 503, response.text
    return response, elapsed


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"


def enforced(response: httpx.Response) -> bool:
    """Counted in Redis: a success that reports what is left, or a refusal."""
    return response.status_code == 429 or (
        response.status_code == 200 and "ratelimit" in response.headers
    )


def recovery(client: httpx.Client, limited: str) -> tuple[float, list[httpx.Response]]:
    """Seconds until `limited` is counted in Redis again, and every counted answer from then
    on through `LIMIT` more requests."""
    counted: list[httpx.Response] = []

    def limits_enforced() -> bool:
        response, _ = timed_get(client, "/verify", limited)
        if enforced(response):
            counted.append(response)
        return enforced(response)

    seconds = wait_until(limits_enforced, timeout=RECOVERY_BOUND_SECONDS)
    counted.extend(timed_get(client, "/verify", limited)[0] for _ in range(LIMIT))
    return seconds, counted


@pytest.mark.parametrize("failure_mode", ["closed", "open"])
def test_redis_outage_follows_the_failure_mode_and_recovers(
    tmp_path: Path, redis_url: str, redis_proxy: FaultProxy, failure_mode: str
) -> None:
    node, tenant = start_node(tmp_path, redis_url, redis_proxy, failure_mode)
    keys_path = f"/orgs/{tenant.org_id}/api_keys"
    try:
        with node.client(tenant.admin_key, timeout=15) as client:
            limited_admin = client.post(
                keys_path,
                json={
                    "name": "limited-admin",
                    "permissions": ["read", "write", "admin"],
                    "rate_limit": {"limit": 1000, "window_seconds": 60},
                },
            ).json()["key"]
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
            for cut in ("refuse", "blackhole"):
                limited = client.post(
                    keys_path,
                    json={
                        "name": cut,
                        "permissions": ["read"],
                        "rate_limit": {"limit": LIMIT, "window_seconds": 60},
                    },
                ).json()["key"]
                assert enforced(timed_get(client, "/verify", limited)[0])
                redis_proxy.cut(cut)  # type: ignore[arg-type]
                slowest = 0.0
                for _ in range(3):
                    for path, secret in [("/verify", limited), (keys_path, limited_admin)]:
                        response, elapsed = timed_get(client, path, secret)
                        slowest = max(slowest, elapsed)
                        if failure_mode == "closed":
                            assert_unavailable(response)
                        else:
                            assert response.status_code == 200, response.text
                            assert "ratelimit" not in response.headers  # admitted unchecked
                unlimited, _ = timed_get(client, "/verify", tenant.admin_key)
                assert unlimited.status_code == 200  # keys without limits are unaffected
                ready, elapsed = timed_get(client, "/readyz")
                slowest = max(slowest, elapsed)
                if failure_mode == "closed":
                    assert_unavailable(ready)
                else:
                    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
                assert ready.json()["checks"]["redis"] == "unreachable"
                assert slowest < OUTAGE_BOUND_SECONDS, f"an answer took {slowest:.2f}s"
                redis_proxy.restore()
                recovered, counted = recovery(client, limited)
                statuses = [response.status_code for response in counted]
                assert statuses.count(200) == LIMIT - 1 and 429 in statuses  # one used before
                ready_again = wait_until(
                    lambda: client.get("/readyz").json().get("status") == "ready", timeout=5
                )
                print(
                    f"FIGURE Redis {cut} ({failure_mode}): slowest answer {slowest:.3f}s, "
                    f"limits enforced {recovered:.2f}s and /readyz ready "
                    f"{recovered + ready_again:.2f}s after the restore"
                )
    finally:
        node.stop()
