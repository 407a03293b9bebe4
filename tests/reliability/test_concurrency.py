"""32 parallel clients over mixed operations: no 5xx, and racing deletes have one winner."""

from __future__ import annotations

import random
import threading
from collections import Counter

from tests.reliability.load import Outcomes, authenticates, bearer, run_clients
from tests.reliability.servers import Node, Tenant

CLIENTS = 32
ROUNDS_PER_CLIENT = 4
EXPECTED = {
    ("create", 200),
    ("list", 200),
    ("delete", 200),
    ("delete again", 404),
    ("create invalid", 400),
    ("list as reader", 403),
}


def test_mixed_operations_from_32_clients_never_fail(node: Node, tenant: Tenant) -> None:
    outcomes = Outcomes()
    keys_path = f"/orgs/{tenant.org_id}/api_keys"
    deleted: list[str] = []

    def client_loop(index: int, stop: threading.Event) -> None:
        rng = random.Random(index)
        with node.client(tenant.admin_key, timeout=30) as client:
            for _ in range(ROUNDS_PER_CLIENT):
                if stop.is_set():
                    return
                permissions = rng.choice([["read"], ["read", "write"]])
                created = client.post(
                    keys_path, json={"name": f"c{index}", "permissions": permissions}
                )
                outcomes.record("create", created)
                outcomes.record("list", client.get(keys_path))
                reader = client.get(keys_path, headers=bearer(created.json()["key"]))
                outcomes.record("list as reader", reader)
                invalid = client.post(keys_path, json={"name": "", "permissions": ["root"]})
                outcomes.record("create invalid", invalid)
                key_path = f"{keys_path}/{created.json()['id']}"
                outcomes.record("delete", client.delete(key_path))
                outcomes.record("delete again", client.delete(key_path))
                deleted.append(created.json()["key"])

    run_clients(CLIENTS, client_loop, seconds=60)

    assert outcomes.server_errors == []
    assert set(outcomes.statuses) <= EXPECTED, outcomes.statuses
    assert outcomes.count("create", 200) == CLIENTS * ROUNDS_PER_CLIENT
    assert outcomes.total == CLIENTS * ROUNDS_PER_CLIENT * 6
    with node.client(tenant.admin_key) as client:
        for secret in random.sample(deleted, 10):
            assert not authenticates(client, tenant.org_id, secret)
        assert [item["name"] for item in client.get(keys_path).json()] == ["admin"]


def test_parallel_deletes_of_one_key_have_exactly_one_winner(node: Node, tenant: Tenant) -> None:
    keys_path = f"/orgs/{tenant.org_id}/api_keys"
    clients = [node.client(tenant.admin_key, timeout=30) for _ in range(CLIENTS)]
    try:
        for _ in range(3):
            created = clients[0].post(keys_path, json={"name": "race", "permissions": ["read"]})
            assert created.status_code == 200
            key_path = f"{keys_path}/{created.json()['id']}"
            start = threading.Barrier(CLIENTS, timeout=30)
            statuses: Counter[int] = Counter()
            lock = threading.Lock()

            def delete(
                index: int,
                _stop: threading.Event,
                key_path: str = key_path,
                start: threading.Barrier = start,
                statuses: Counter[int] = statuses,
                lock: threading.Lock = lock,
            ) -> None:
                start.wait()
                status = clients[index].delete(key_path).status_code
                with lock:
                    statuses[status] += 1

            run_clients(CLIENTS, delete, seconds=60)
            assert statuses == Counter({200: 1, 404: CLIENTS - 1})
            assert not authenticates(clients[0], tenant.org_id, created.json()["key"])
    finally:
        for client in clients:
            client.close()
