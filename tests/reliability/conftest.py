"""Reliability fixtures: a backend (SQLite or PostgreSQL) with a tenant, and server nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.servers import Backend, Node, Tenant, in_process_runtime, new_tenant


@pytest.fixture
def backend(database_url: str, tmp_path: Path) -> Backend:
    """Parametrized through `database_url`: every reliability test runs on SQLite and PostgreSQL."""
    return Backend(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
def tenant(backend: Backend) -> Tenant:
    runtime = in_process_runtime(backend)
    try:
        return new_tenant(runtime)
    finally:
        runtime.close()


@pytest.fixture
def node(backend: Backend, tenant: Tenant, tmp_path: Path) -> Iterator[Node]:
    node = Node(backend=backend, tmp_path=tmp_path)
    node.start()
    try:
        yield node
    finally:
        node.stop()
