"""Alembic environment: runs on the connection keyrack hands it (see keyrack.store.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from keyrack.store.tables import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `keyrack migrate`, which passes the configured database")
run_migrations(connection)
