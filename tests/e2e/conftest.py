"""End-to-end fixtures: a real server process per module, random orgs per test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings
from tests.e2e.server import Server, keyrack_command, start_server
from tests.random_refs import random_org_id

# Every secret any e2e test obtained, for the scan in test_secrets.py.
ISSUED_SECRETS: list[str] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    server = start_server(tmp)
    ISSUED_SECRETS.append(server.bootstrap_key())
    try:
        yield server
    finally:
        server.stop()


@dataclass
class OrgAdmin:
    """A fresh org with an admin key holding every permission, created through the CLI."""

    org_id: str
    key: str
    client: httpx.Client


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        keyrack_command(*args), env=server.env, capture_output=True, text=True, timeout=60
    )


def server_runtime(server: Server) -> Runtime:
    """A runtime on the server's own database, as the CLI would open it (but in-process: fast)."""
    if not hasattr(server, "runtime"):
        env = {
            k[len("KEYRACK_") :].lower(): v
            for k, v in server.env.items()
            if k.startswith("KEYRACK_")
        }
        server.runtime = build_runtime(Settings(**env))  # type: ignore[attr-defined]
    runtime: Runtime = server.runtime  # type: ignore[attr-defined]
    return runtime


def new_org_admin(
    server: Server, permissions: tuple[str, ...] = ("read", "write", "admin")
) -> OrgAdmin:
    runtime = server_runtime(server)
    org_id = random_org_id()
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="admin",
        permissions=list(permissions),
    )
    ISSUED_SECRETS.append(created.secret)
    return OrgAdmin(org_id=org_id, key=created.secret, client=server.client(created.secret))


@pytest.fixture
def admin(server: Server) -> Iterator[OrgAdmin]:
    org_admin = new_org_admin(server)
    yield org_admin
    org_admin.client.close()
