"""A database that fails during a use case is a 503-style ServiceUnavailable, never a crash."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from keyrack.domain.errors import ServiceUnavailable
from keyrack.store.engine import make_engine
from keyrack.store.uow import SqlUnitOfWork
from tests.random_refs import random_org_id


@pytest.fixture
def postgres_engine(postgres_url: str) -> Engine:
    engine = make_engine(postgres_url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def terminate_backend(postgres_url: str, pid: int) -> None:
    conninfo = make_url(postgres_url).set(drivername="postgresql")
    with psycopg.connect(conninfo.render_as_string(hide_password=False)) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.mark.parametrize("write", [False, True])
def test_connection_lost_mid_use_case_is_unavailable_and_recovers(
    postgres_engine: Engine, postgres_url: str, write: bool
) -> None:
    with pytest.raises(ServiceUnavailable), SqlUnitOfWork(postgres_engine, write=write) as uow:
        pid = uow.repo.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        terminate_backend(postgres_url, pid)
        uow.repo.get_org(random_org_id())
        uow.commit()
    with SqlUnitOfWork(postgres_engine) as uow:  # the pool threw the dead connection away
        assert uow.repo.get_org(random_org_id()) is None


def test_statements_and_waits_are_bounded(postgres_engine: Engine) -> None:
    with postgres_engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar_one() == "5s"
    assert postgres_engine.pool.timeout() <= 2  # type: ignore[attr-defined]
