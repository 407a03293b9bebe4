"""On PostgreSQL, `keyrack migrate` is the explicit step and `serve` refuses an outdated schema."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.server import keyrack_command


@pytest.fixture
def empty_postgres_database(postgres_url: str) -> Iterator[str]:
    name = f"keyrack_fresh_{uuid.uuid4().hex[:10]}"
    admin_url = make_url(postgres_url).set(drivername="postgresql")
    conninfo = admin_url.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_serve_refuses_outdated_schema_until_migrate(
    empty_postgres_database: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "KEYRACK_DATABASE_URL": empty_postgres_database,
        "KEYRACK_DATA_DIR": str(tmp_path),
    }
    refused = subprocess.run(
        keyrack_command("serve", "--port", "1"), env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 7
    assert "keyrack migrate" in refused.stderr and "Traceback" not in refused.stderr
    listed = subprocess.run(
        keyrack_command("orgs", "list"), env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 7
    migrated = subprocess.run(
        keyrack_command("migrate"), env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "revision" in migrated.stdout
    created = subprocess.run(
        keyrack_command("orgs", "create", "acme"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
