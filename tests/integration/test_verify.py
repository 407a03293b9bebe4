"""Verification, revocation propagation and last_used_at on real SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as service
from keyrack.settings import Settings
from tests.conftest import TEST_PEPPER
from tests.random_refs import random_org_id


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition` held; fails after `timeout` (polls every 10 ms)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout}s")


def started(runtime: Runtime) -> Runtime:
    runtime.start_background()
    listener = runtime._listener
    assert listener is not None
    assert listener.connected.wait(5), "the key change feed did not connect"
    return runtime


@pytest.fixture
def server_runtime(runtime: Runtime) -> Runtime:
    return started(runtime)


@pytest.fixture
def other_process(settings: Settings) -> Iterator[Runtime]:
    """A second runtime on the same database, standing in for another worker or instance."""
    runtime = started(build_runtime(settings))
    try:
        yield runtime
    finally:
        runtime.close()


def new_key(runtime: Runtime, permissions: tuple[str, ...] = ("read",)) -> tuple[str, str, str]:
    org_id = random_org_id()
    service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    created = service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="k",
        permissions=list(permissions),
    )
    return org_id, created.key.id, created.secret


def test_verify_codes_on_a_real_store(server_runtime: Runtime) -> None:
    org_id, key_id, secret = new_key(server_runtime, ("read", "write"))
    verifier = server_runtime.verifier
    result = verifier.verify(secret, ["write"])
    assert result.valid and result.key is not None
    assert (result.key.org_id, result.key.key_id) == (org_id, key_id)
    assert verifier.verify(secret, ["admin"]).code == "INSUFFICIENT_PERMISSIONS"
    assert verifier.verify(server_runtime.key_format.generate()).code == "NOT_FOUND"
    assert len(verifier.cache or ()) >= 1


def test_deleting_process_rejects_before_delete_returns(server_runtime: Runtime) -> None:
    org_id, key_id, secret = new_key(server_runtime)
    assert server_runtime.verifier.verify(secret).valid  # now cached
    service.delete_key(
        uow=server_runtime.uow(write=True),
        org_id=org_id,
        key_id=key_id,
        events=server_runtime.events,
    )
    assert server_runtime.verifier.verify(secret).code == "NOT_FOUND"


def test_other_process_rejects_within_the_bound(
    server_runtime: Runtime, other_process: Runtime
) -> None:
    org_id, key_id, secret = new_key(server_runtime)
    assert other_process.verifier.verify(secret).valid
    assert other_process.verifier.cache is not None
    assert len(other_process.verifier.cache) == 1  # cached there: only a push can evict it
    service.delete_key(
        uow=server_runtime.uow(write=True),
        org_id=org_id,
        key_id=key_id,
        events=server_runtime.events,
    )
    wait_until(lambda: other_process.verifier.verify(secret).code == "NOT_FOUND", timeout=1.0)


def test_a_rolled_back_change_announces_nothing(
    server_runtime: Runtime, other_process: Runtime
) -> None:
    _, key_id, secret = new_key(server_runtime)
    _, later_key_id, later_secret = new_key(server_runtime)
    assert other_process.verifier.verify(secret).valid
    assert other_process.verifier.verify(later_secret).valid
    with server_runtime.uow(write=True) as uow:
        uow.repo.publish_key_changes([key_id])  # never committed
    with server_runtime.uow(write=True) as uow:  # a committed change afterwards
        uow.repo.publish_key_changes([later_key_id])
        uow.commit()
    cache = other_process.verifier.cache
    assert cache is not None
    wait_until(lambda: not cache.holds(later_key_id), timeout=1.0)
    assert cache.holds(key_id)


@pytest.fixture
def postgres_pair(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    settings = Settings(data_dir=tmp_path, database_url=postgres_url, pepper=TEST_PEPPER)
    first, second = started(build_runtime(settings)), started(build_runtime(settings))
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_postgres_listener_reconnects(postgres_pair: tuple[Runtime, Runtime]) -> None:
    server_runtime, other_process = postgres_pair
    listener = other_process._listener
    assert listener is not None
    with server_runtime.engine.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'keyrack-key-changes' AND pid <> pg_backend_pid()"
            )
        )
    wait_until(lambda: not listener.connected.is_set(), timeout=5)
    wait_until(listener.connected.is_set, timeout=5)
    org_id, key_id, secret = new_key(server_runtime)
    assert other_process.verifier.verify(secret).valid
    service.delete_key(
        uow=server_runtime.uow(write=True),
        org_id=org_id,
        key_id=key_id,
        events=server_runtime.events,
    )
    wait_until(lambda: other_process.verifier.verify(secret).code == "NOT_FOUND", timeout=1.0)


def test_last_used_at_is_written_in_batches(server_runtime: Runtime) -> None:
    usage = server_runtime.verifier.usage
    assert usage is not None
    usage.stop()  # flush by hand below, not on the background thread's schedule
    org_id, key_id, secret = new_key(server_runtime)
    assert service.list_keys(uow=server_runtime.uow(), org_id=org_id)[0].last_used_at is None
    for _ in range(50):
        assert server_runtime.verifier.verify(secret).valid
    assert usage.flush() == 1  # fifty uses, one write
    (listed,) = service.list_keys(uow=server_runtime.uow(), org_id=org_id)
    assert listed.id == key_id and listed.last_used_at is not None


def test_expired_disabled_and_rotated_secrets_on_a_real_store(server_runtime: Runtime) -> None:
    from datetime import timedelta

    from keyrack.domain.model import utcnow
    from keyrack.store.tables import api_keys, key_secrets

    verifier = server_runtime.verifier
    past = utcnow() - timedelta(seconds=5)
    cases = [
        (api_keys.update().values(expires_at=past), api_keys.c.id, "EXPIRED"),
        (api_keys.update().values(enabled=False), api_keys.c.id, "DISABLED"),
        (key_secrets.update().values(expires_at=past), key_secrets.c.key_id, "EXPIRED"),
    ]
    for statement, column, code in cases:
        _, key_id, secret = new_key(server_runtime)
        with server_runtime.uow(write=True) as uow:
            uow.repo.connection.execute(statement.where(column == key_id))
            uow.commit()
        assert verifier.verify(secret).code == code


def test_openapi_documents_the_raw_verify_endpoint(runtime: Runtime) -> None:
    from keyrack.api.app import create_management_app

    schema = create_management_app(runtime).openapi()
    verify = schema["paths"]["/verify"]
    assert set(verify) == {"get", "post"}
    assert set(verify["get"]["responses"]) == {"200", "401", "403"}
    assert "Problem" in schema["components"]["schemas"]
