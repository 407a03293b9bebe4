"""Revocation across real server processes: two on one PostgreSQL database, two on one SQLite
file. The process that handles the DELETE rejects at once; the other within the documented 1 s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings
from tests.conftest import TEST_PEPPER
from tests.e2e.conftest import ISSUED_SECRETS
from tests.e2e.server import Server, start_server
from tests.random_refs import random_org_id

REVOCATION_BOUND_SECONDS = 1.0  # documented in the README


@pytest.fixture(params=["sqlite", "postgres"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def two_servers(shared_database: str, tmp_path: Path) -> Iterator[tuple[Server, Server, Runtime]]:
    env = {"KEYRACK_DATABASE_URL": shared_database, "KEYRACK_PEPPER": TEST_PEPPER}
    first = start_server(tmp_path, env=env, args=("--no-bootstrap",), name="first")
    second = None
    runtime = build_runtime(
        Settings(data_dir=tmp_path / "admin", database_url=shared_database, pepper=TEST_PEPPER)
    )
    try:
        second = start_server(tmp_path, env=env, args=("--no-bootstrap",), name="second")
        yield first, second, runtime
    finally:
        runtime.close()
        first.stop()
        if second is not None:
            second.stop()


def issue(runtime: Runtime, org_id: str, permissions: list[str]) -> tuple[str, str]:
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="e2e",
        permissions=permissions,
    )
    ISSUED_SECRETS.append(created.secret)
    return created.key.id, created.secret


def verify_status(server: Server, secret: str) -> int:
    return httpx.get(server.url + "/verify", headers={"X-API-Key": secret}, timeout=5).status_code


def test_delete_on_one_process_reaches_the_other_within_the_bound(
    two_servers: tuple[Server, Server, Runtime],
) -> None:
    handling, other, runtime = two_servers
    org_id = random_org_id()
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    _, admin_secret = issue(runtime, org_id, ["read", "write", "admin"])
    victim_id, victim = issue(runtime, org_id, ["read"])
    for server in (handling, other):  # warm both caches
        for _ in range(3):
            assert verify_status(server, victim) == 200
    deleted = httpx.delete(
        f"{handling.url}/orgs/{org_id}/api_keys/{victim_id}",
        headers={"Authorization": f"Bearer {admin_secret}"},
        timeout=5,
    )
    answered = time.monotonic()
    assert deleted.status_code == 200, deleted.text
    assert verify_status(handling, victim) == 401  # the handling process: at once
    while verify_status(other, victim) != 401:
        assert time.monotonic() - answered < REVOCATION_BOUND_SECONDS, "revocation too slow"
        time.sleep(0.01)
    # management authentication goes through the same verifier and cache
    listed = httpx.get(
        f"{other.url}/orgs/{org_id}/api_keys",
        headers={"Authorization": f"Bearer {victim}"},
        timeout=5,
    )
    assert listed.status_code == 401


def test_last_used_at_appears_in_listings(tmp_path: Path) -> None:
    server = start_server(
        tmp_path, env={"KEYRACK_LAST_USED_INTERVAL_SECONDS": "0.5"}, name="last-used"
    )
    try:
        admin = server.bootstrap_key()
        ISSUED_SECRETS.append(admin)
        with server.client(admin) as client:
            assert verify_status(server, admin) == 200
            deadline = time.monotonic() + 10  # the documented visibility bound
            while client.get("/orgs/default/api_keys").json()[0]["last_used_at"] is None:
                assert time.monotonic() < deadline, "last_used_at not visible within 10 s"
                time.sleep(0.1)
    finally:
        server.stop()
