"""PostgreSQL outages: 503 problem+json with Retry-After within 2 s, and recovery on its own.

The shared PostgreSQL server is never stopped: a fault proxy sits between keyrack and it, and
cutting the proxy looks to keyrack like a stopped server (refused) or a lost network (blackhole).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.load import Outcomes, authenticates, run_clients, wait_until
from tests.reliability.servers import Backend, Node, Tenant, in_process_runtime, new_tenant

OUTAGE_BOUND_SECONDS = 2.0
# A blackholed connect waits for libpq's connect_timeout, whose minimum is 2 s.
BLACKHOLE_BOUND_SECONDS = 3.5
# Silence (connections stay open, no reset): the change feed's watchdog notices within ~2.5 s,
# the pool is dropped, and the next query waits for the connect timeout (2 s).
SILENCE_BOUND_SECONDS = 6.0
RECOVERY_BOUND_SECONDS = 10.0


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FaultProxy]:
    url = make_url(postgres_url)
    with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied(postgres_url: str, proxy: FaultProxy, tmp_path: Path) -> Iterator[tuple[Node, Tenant]]:
    """A keyrack server whose only way to PostgreSQL is through the proxy."""
    direct = Backend(database_url=postgres_url, data_dir=tmp_path / "data")
    runtime = in_process_runtime(direct)
    try:
        tenant = new_tenant(runtime)
    finally:
        runtime.close()
    node = Node(backend=direct.via(proxy.port), tmp_path=tmp_path, name="proxied")
    node.start()
    try:
        yield node, tenant
    finally:
        node.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"


def timed(
    call: httpx.Client, method: str, path: str, **kwargs: object
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call.request(method, path, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


@pytest.mark.parametrize(
    ("mode", "bound"), [("refuse", OUTAGE_BOUND_SECONDS), ("blackhole", BLACKHOLE_BOUND_SECONDS)]
)
def test_outage_answers_503_quickly_and_recovers_by_itself(
    proxied: tuple[Node, Tenant], proxy: FaultProxy, mode: str, bound: float
) -> None:
    node, tenant = proxied
    keys_path = f"/orgs/{tenant.org_id}/api_keys"
    with node.client(tenant.admin_key, timeout=30) as client:
        created = client.post(keys_path, json={"name": "before", "permissions": ["read"]})
        assert created.status_code == 200
        proxy.cut(mode)  # type: ignore[arg-type]
        slowest = 0.0
        for method, path, body in [
            ("GET", keys_path, None),
            ("POST", keys_path, {"name": "during", "permissions": ["read"]}),
            ("DELETE", f"{keys_path}/{created.json()['id']}", None),
            ("GET", keys_path, None),
        ]:
            response, elapsed = timed(client, method, path, json=body)
            assert_unavailable(response)
            slowest = max(slowest, elapsed)
        assert slowest < bound, f"an answer took {slowest:.2f}s during the outage"
        proxy.restore()
        recovery = wait_until(lambda: client.get(keys_path).status_code == 200, timeout=10)
        assert recovery < RECOVERY_BOUND_SECONDS
        print(f"FIGURE outage {mode}: slowest 503 {slowest:.3f}s, recovered in {recovery:.3f}s")
        assert authenticates(client, tenant.org_id, created.json()["key"])
        listed = [item["name"] for item in client.get(keys_path).json()]
        assert sorted(listed) == ["admin", "before"]  # nothing half-done during the outage


def test_faults_in_the_middle_of_requests_are_503_never_500(
    proxied: tuple[Node, Tenant], proxy: FaultProxy
) -> None:
    node, tenant = proxied
    keys_path = f"/orgs/{tenant.org_id}/api_keys"
    outcomes = Outcomes()
    slowest: list[float] = []
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client_loop(index: int, stop: threading.Event) -> None:
        with node.client(tenant.admin_key, timeout=30) as client:
            for round_ in range(200):
                if stop.is_set():
                    return
                operation = ("create", "list", "delete")[round_ % 3]
                if operation == "create":
                    body = {"name": f"c{index}", "permissions": ["read"]}
                    response, elapsed = timed(client, "POST", keys_path, json=body)
                    if response.status_code == 200:
                        with lock:
                            acknowledged.append(response.json()["key"])
                elif operation == "list":
                    response, elapsed = timed(client, "GET", keys_path)
                else:
                    path = f"{keys_path}/key-{'x' * 20}"
                    response, elapsed = timed(client, "DELETE", path)
                outcomes.record(operation, response)
                if response.status_code == 503:
                    assert_unavailable(response)
                with lock:
                    slowest.append(elapsed)

    def chaos(stop: threading.Event) -> None:
        rng = random.Random()
        while not stop.wait(rng.uniform(0.2, 0.6)):
            proxy.cut("refuse")
            stop.wait(rng.uniform(0.1, 0.4))
            proxy.restore()

    stop = threading.Event()
    chaos_thread = threading.Thread(target=chaos, args=(stop,))
    chaos_thread.start()
    try:
        run_clients(8, client_loop, seconds=6, stop=stop)
    finally:
        stop.set()
        chaos_thread.join(timeout=10)
        proxy.restore()
    assert outcomes.server_errors == []
    assert {status for _, status in outcomes.statuses} <= {200, 404, 503}, outcomes.statuses
    assert sum(n for (_, status), n in outcomes.statuses.items() if status == 503) > 0
    assert max(slowest) < OUTAGE_BOUND_SECONDS, f"slowest answer {max(slowest):.2f}s"
    print(f"FIGURE flapping database: {dict(outcomes.statuses)}, slowest {max(slowest):.3f}s")
    with node.client(tenant.admin_key, timeout=30) as client:
        wait_until(lambda: client.get(keys_path).status_code == 200, timeout=10)
        for secret in acknowledged:
            assert authenticates(client, tenant.org_id, secret)


def verify_code(client: httpx.Client, secret: str) -> tuple[int, str, float]:
    response, elapsed = timed(
        client, "GET", "/verify", headers={"Authorization": f"Bearer {secret}"}
    )
    if response.status_code == 503:
        assert_unavailable(response)
    return response.status_code, response.json()["code"], elapsed


@pytest.mark.parametrize(
    ("mode", "bound"),
    [
        ("refuse", OUTAGE_BOUND_SECONDS),
        ("blackhole", BLACKHOLE_BOUND_SECONDS),
        ("silence", SILENCE_BOUND_SECONDS),
    ],
)
def test_readyz_and_verify_during_an_outage(
    proxied: tuple[Node, Tenant], proxy: FaultProxy, mode: str, bound: float
) -> None:
    """/readyz says 503 while the database is away and 200 after; /verify fails closed: once the
    change feed is lost (checked every 0.5 s) even a cached key gets 503, because a revocation
    committed by another instance could no longer reach this one's cache."""
    node, tenant = proxied
    keys_path = f"/orgs/{tenant.org_id}/api_keys"
    with node.client(tenant.admin_key, timeout=30) as client, node.client(timeout=30) as anonymous:
        cached, uncached = (
            client.post(keys_path, json={"name": name, "permissions": ["read"]}).json()["key"]
            for name in ("cached", "uncached")
        )
        assert verify_code(anonymous, cached)[:2] == (200, "VALID")  # now in the cache
        assert anonymous.get("/readyz").status_code == 200
        proxy.cut(mode)  # type: ignore[arg-type]
        started = time.monotonic()
        closed = wait_until(
            lambda: verify_code(anonymous, cached)[:2] == (503, "SERVICE_UNAVAILABLE"),
            timeout=bound + 2,
        )
        assert closed < bound, f"a cached key verified for {closed:.2f}s"
        for secret in (cached, uncached):
            status, code, elapsed = verify_code(anonymous, secret)
            assert (status, code) == (503, "SERVICE_UNAVAILABLE")
            assert elapsed < bound
        ready, elapsed = timed(anonymous, "GET", "/readyz")
        assert_unavailable(ready)
        assert ready.json()["checks"]["database"] != "ok"
        assert elapsed < bound
        outage = time.monotonic() - started
        proxy.restore()
        recovered = wait_until(lambda: anonymous.get("/readyz").status_code == 200, timeout=10)
        verifies = wait_until(
            lambda: all(
                verify_code(anonymous, s)[:2] == (200, "VALID") for s in (cached, uncached)
            ),
            timeout=10,
        )
        assert max(recovered, verifies) < RECOVERY_BOUND_SECONDS
        print(
            f"FIGURE verify during outage ({mode}): cached key failed closed after {closed:.3f}s, "
            f"/readyz 503 for {outage:.2f}s, ready again {recovered:.3f}s and verifying "
            f"{verifies:.3f}s after the restore"
        )
