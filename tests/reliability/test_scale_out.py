"""Scale-out: three keyrack instances behind a real nginx, on one PostgreSQL and one Redis.

Everything runs on loopback and is started by the test. Keys created through any instance work
through all of them, and a revocation reaches every instance within the documented 1 s (README:
pushed through PostgreSQL LISTEN/NOTIFY), measured from the DELETE's answer to each instance's
first 401 while their caches held the key.

Rate limits and quotas hold across all instances: every node counts in the one Redis, so a
parallel burst spread by nginx over the three admits exactly the limit.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.reliability.load_balancer import UPSTREAM_HEADER, LoadBalancer
from tests.reliability.servers import Backend, Node, Tenant, in_process_runtime, new_tenant

INSTANCES = 3
REVOCATION_BOUND_SECONDS = 1.0
REVOCATIONS = int(os.environ.get("KEYRACK_SCALE_REVOCATIONS", "12"))


@dataclass
class Cluster:
    nodes: list[Node]
    balancer: LoadBalancer
    tenant: Tenant
    redis_url: str

    def through_balancer(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.balancer.url, headers=headers, timeout=10)

    @property
    def keys_path(self) -> str:
        return f"/orgs/{self.tenant.org_id}/api_keys"


@pytest.fixture
def cluster(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    backend = Backend(database_url=postgres_url, data_dir=tmp_path / "data")
    runtime = in_process_runtime(backend)
    try:
        tenant = new_tenant(runtime)
    finally:
        runtime.close()
    nodes = [
        Node(backend, tmp_path, name=f"node{i}", extra_env={"KEYRACK_REDIS_URL": redis_url})
        for i in range(INSTANCES)
    ]
    try:
        for node in nodes:
            node.start()
        with LoadBalancer(tmp_path / "nginx", [node.server.port for node in nodes]) as balancer:  # type: ignore[union-attr]
            yield Cluster(nodes, balancer, tenant, redis_url)
    finally:
        for node in nodes:
            node.stop()


def verify_status(client: httpx.Client, secret: str) -> int:
    return client.get("/verify", headers={"Authorization": f"Bearer {secret}"}).status_code


def test_keys_created_through_one_instance_work_through_all(cluster: Cluster) -> None:
    answered_by: set[str] = set()
    created = []
    with cluster.through_balancer(cluster.tenant.admin_key) as balancer:
        for index in range(2 * INSTANCES):
            response = balancer.post(
                cluster.keys_path, json={"name": f"k{index}", "permissions": ["read"]}
            )
            assert response.status_code == 200, response.text
            answered_by.add(response.headers[UPSTREAM_HEADER])
            created.append(response.json())
        assert len(answered_by) == INSTANCES, f"nginx used only {answered_by}"
        for key in created:
            for node in cluster.nodes:
                with node.client() as direct:
                    assert verify_status(direct, key["key"]) == 200
                with node.client(cluster.tenant.admin_key) as direct:
                    got = direct.get(f"{cluster.keys_path}/{key['id']}")
                    assert got.status_code == 200 and got.json()["name"] == key["name"]
            assert verify_status(balancer, key["key"]) == 200


def first_401_after(node: Node, secret: str, start: threading.Event, timeout: float) -> float:
    """Seconds from `start` to this node's first 401 for `secret` (polling every ~2 ms)."""
    with node.client(timeout=5) as client:
        start.wait(timeout=10)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if verify_status(client, secret) == 401:
                return time.monotonic() - started
            time.sleep(0.002)
    return float("inf")


def test_revocation_reaches_every_instance_within_the_bound(cluster: Cluster) -> None:
    delays: list[float] = []
    for round_ in range(REVOCATIONS):
        with cluster.nodes[0].client(cluster.tenant.admin_key) as admin:
            key = admin.post(cluster.keys_path, json={"name": "r", "permissions": ["read"]}).json()
        for node in cluster.nodes:  # every instance now holds the key in its cache
            with node.client() as direct:
                assert verify_status(direct, key["key"]) == 200
        start = threading.Event()
        with ThreadPoolExecutor(INSTANCES) as pool:
            polls = [
                pool.submit(first_401_after, node, key["key"], start, 5.0) for node in cluster.nodes
            ]
            deleting = cluster.nodes[round_ % INSTANCES]  # each instance revokes in turn
            with deleting.client(cluster.tenant.admin_key) as admin:
                assert admin.delete(f"{cluster.keys_path}/{key['id']}").status_code == 200
            start.set()
            delays.extend(poll.result(timeout=10) for poll in polls)
    p50, worst = statistics.median(delays), max(delays)
    print(
        f"FIGURE revocation across {INSTANCES} instances: {len(delays)} measurements, "
        f"p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms"
    )
    assert worst < REVOCATION_BOUND_SECONDS


async def verify_burst(cluster: Cluster, secret: str, count: int) -> list[httpx.Response]:
    """`count` parallel /verify calls through nginx (which spreads them over the instances)."""
    limits = httpx.Limits(max_connections=24)
    headers = {"X-API-Key": secret}
    async with httpx.AsyncClient(
        base_url=cluster.balancer.url, limits=limits, timeout=20
    ) as client:
        return await asyncio.gather(*(client.get("/verify", headers=headers) for _ in range(count)))


def test_rate_limits_hold_across_instances(cluster: Cluster) -> None:
    """One cluster start for both kinds of limit (starting three servers costs ~10 s)."""
    for limits, refusal in [
        ({"rate_limit": {"limit": 30, "window_seconds": 60}}, "RATE_LIMITED"),
        ({"quota": {"limit": 30, "period": "day"}}, "USAGE_EXCEEDED"),
    ]:
        with cluster.through_balancer(cluster.tenant.admin_key) as balancer:
            created = balancer.post(
                cluster.keys_path, json={"name": "limited", "permissions": ["read"], **limits}
            )
            assert created.status_code == 200, created.text
        answers = asyncio.run(verify_burst(cluster, created.json()["key"], 90))
        assert Counter(a.status_code for a in answers) == {200: 30, 429: 60}
        assert {a.json()["code"] for a in answers if a.status_code == 429} == {refusal}
        upstreams = Counter(a.headers[UPSTREAM_HEADER] for a in answers if a.status_code == 200)
        assert len({a.headers[UPSTREAM_HEADER] for a in answers}) == INSTANCES
        print(f"FIGURE {refusal} over {INSTANCES} instances: 30 of 90 admitted, {dict(upstreams)}")
