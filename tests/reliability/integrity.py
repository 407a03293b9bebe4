"""Database-level checks after a crash: the file or indexes are sound, nothing is half-written."""

from __future__ import annotations

import sqlite3

import httpx
from sqlalchemy import text

from tests.reliability.servers import Backend, in_process_runtime

HALF_WRITTEN = {
    "key without a secret": """
        SELECT count(*) FROM api_keys k
        WHERE NOT EXISTS (SELECT 1 FROM key_secrets s WHERE s.key_id = k.id)""",
    "secret without a key": """
        SELECT count(*) FROM key_secrets s
        WHERE NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.key_id)""",
    "key without an org": """
        SELECT count(*) FROM api_keys k
        WHERE NOT EXISTS (SELECT 1 FROM orgs o WHERE o.id = k.org_id)""",
}
POSTGRES_INDEXES = """
    SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid IN ('orgs'::regclass, 'api_keys'::regclass, 'key_secrets'::regclass)"""


def half_written_rows(backend: Backend) -> dict[str, int]:
    """Counts of rows that only a torn write could leave behind (all must be zero)."""
    runtime = in_process_runtime(backend)
    try:
        with runtime.engine.connect() as connection:
            return {
                what: int(connection.execute(text(query)).scalar_one())
                for what, query in HALF_WRITTEN.items()
            }
    finally:
        runtime.close()


def integrity_problems(backend: Backend) -> list[str]:
    """SQLite: `PRAGMA integrity_check` and `foreign_key_check` on the file, opened afresh as a
    restarted process would. PostgreSQL: amcheck's B-tree checks, with every heap row indexed."""
    if backend.is_sqlite:
        with sqlite3.connect(backend.sqlite_path) as connection:
            result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
            problems = [] if result == ["ok"] else result
            problems += [repr(row) for row in connection.execute("PRAGMA foreign_key_check")]
        connection.close()
        return problems
    runtime = in_process_runtime(backend)
    try:
        with runtime.engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
            indexes = connection.execute(text(POSTGRES_INDEXES)).scalars().all()
            for index in indexes:  # raises on a corrupt index
                connection.execute(
                    text("SELECT bt_index_check(CAST(:i AS regclass), true)"), {"i": index}
                )
        return [] if indexes else ["no indexes found to check"]
    finally:
        runtime.close()


def listed_key_ids(client: httpx.Client, org_id: str) -> set[str]:
    """Every key id of the org, following `Link: rel="next"` pages where the API paginates."""
    ids: set[str] = set()
    url: str | None = f"/orgs/{org_id}/api_keys?limit=1000"
    for _ in range(1000):
        if url is None:
            return ids
        response = client.get(url)
        assert response.status_code == 200, response.text
        ids.update(item["id"] for item in response.json())
        url = response.links.get("next", {}).get("url")
    raise AssertionError("more than 1000 pages of keys")
