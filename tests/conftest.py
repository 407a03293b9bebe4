"""Shared fixtures: database URLs for SQLite and PostgreSQL, runtimes, random org ids.

PostgreSQL and Redis tests read `KEYRACK_TEST_POSTGRES_URL` / `KEYRACK_TEST_REDIS_URL` and skip
with a reason when unset; `.ci/run` sets them and `KEYRACK_TEST_REQUIRE_SERVICES=1`, which turns
such a skip into a failure so that CI never passes by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyrack.domain.keyformat import KeyFormat
from keyrack.runtime import Runtime, build_runtime
from keyrack.settings import Settings
from keyrack.store import migrate
from keyrack.store.engine import make_engine
from tests.secrets_registry import REGISTRY

POSTGRES_URL_VAR = "KEYRACK_TEST_POSTGRES_URL"
REDIS_URL_VAR = "KEYRACK_TEST_REDIS_URL"
TEST_PEPPER = "test-pepper-" + "x" * 40


def service_url(variable: str, what: str) -> str:
    url = os.environ.get(variable)
    if url:
        return url
    message = f"{what} tests need {variable} (e.g. set by .ci/run)"
    if os.environ.get("KEYRACK_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message + "; KEYRACK_TEST_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = service_url(POSTGRES_URL_VAR, "PostgreSQL")
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    REGISTRY.postgres_urls.add(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return service_url(REDIS_URL_VAR, "Redis")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test runs on the embedded SQLite default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keyrack.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, pepper=TEST_PEPPER)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = build_runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture(scope="session", autouse=True)
def secrets_never_leak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Records every secret generated in this process (servers' come back through
    `Server.client()`), then searches the whole run's files, databases and error bodies."""
    generate = KeyFormat.generate

    def recording_generate(self: KeyFormat) -> str:
        secret = generate(self)
        REGISTRY.add(secret)
        return secret

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KeyFormat, "generate", recording_generate)
        yield
    leaks = {
        **REGISTRY.scan_files(tmp_path_factory.getbasetemp()),
        **REGISTRY.scan_postgres(),
        "error bodies": REGISTRY.scan_error_bodies(),
    }
    leaks = {where: found for where, found in leaks.items() if found}
    assert not leaks, f"{sum(map(len, leaks.values()))} issued secrets leaked into: {list(leaks)}"
