"""Keyrack server processes on a chosen database, that tests can kill, restart and multiply."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings
from tests.conftest import TEST_PEPPER
from tests.e2e.server import Server, start_server
from tests.random_refs import random_org_id


@dataclass(frozen=True)
class Backend:
    """Where the servers keep their data: SQLite in `data_dir`, or a PostgreSQL database."""

    database_url: str
    data_dir: Path

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path:
        assert self.is_sqlite
        return Path(make_url(self.database_url).database or "")

    def via(self, port: int) -> Backend:
        """The same PostgreSQL database reached through another port (a fault proxy)."""
        url = make_url(self.database_url).set(host="127.0.0.1", port=port)
        return Backend(url.render_as_string(hide_password=False), self.data_dir)

    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, database_url=self.database_url, pepper=TEST_PEPPER)

    def env(self) -> dict[str, str]:
        return {
            "KEYRACK_DATA_DIR": str(self.data_dir),
            "KEYRACK_DATABASE_URL": self.database_url,
            "KEYRACK_PEPPER": TEST_PEPPER,
            "KEYRACK_LOG_LEVEL": "warning",  # success lines cost time under load
            # These tests present deleted and guessed keys from one address far more often than
            # the failed-authentication throttle allows (it is tested in tests/e2e).
            "KEYRACK_AUTH_FAILURE_LIMIT": "100000",
        }


@dataclass
class Tenant:
    """An organization with an admin key holding every permission."""

    org_id: str
    admin_key: str


def new_tenant(runtime: Runtime) -> Tenant:
    org_id = random_org_id("rel")
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="admin",
        permissions=["read", "write", "admin"],
    )
    return Tenant(org_id=org_id, admin_key=created.secret)


@dataclass
class Node:
    """One keyrack instance on `backend`; each (re)start gets its own log file."""

    backend: Backend
    tmp_path: Path
    name: str = "node"
    extra_env: dict[str, str] = field(default_factory=dict)
    server: Server | None = None
    starts: int = 0

    def start(self) -> Server:
        self.starts += 1
        self.server = start_server(
            self.tmp_path,
            env={**self.backend.env(), **self.extra_env},
            args=("--no-bootstrap",),
            name=f"{self.name}-{self.starts}",
        )
        return self.server

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no flush, no rollback runs."""
        assert self.server is not None
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(timeout=10)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def client(self, key: str | None = None, *, timeout: float = 10) -> httpx.Client:
        assert self.server is not None
        client = self.server.client(key)
        client.timeout = httpx.Timeout(timeout)
        return client


def in_process_runtime(backend: Backend) -> Runtime:
    """A runtime on the servers' database, for setup and direct inspection."""
    return build_runtime(backend.settings())
