"""Every secret issued during a test run, and every error body seen, for the end-of-run scan.

`tests/conftest.py` records secrets generated in-process, `Server.client()` records those that
come back over HTTP, and at the end of the session the scan looks for all of them in the files
under the session's temporary directory (databases, server logs), in the PostgreSQL test
database and in every error body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

# Any `<prefix>_<38 base62>` token: one regex pass per blob instead of one search per secret.
CANDIDATE = re.compile(rb"\b[a-z][a-z0-9]{1,15}_[0-9A-Za-z]{38}\b")
# Files that hold a secret on purpose: the terminal output where the bootstrap key is shown once,
# the lists of secrets that test helper processes hand back to this registry, and the pepper.
NOT_SCANNED_SUFFIXES = (".stdout", ".issued-secrets")
NOT_SCANNED_NAMES = ("pepper",)


@dataclass
class SecretRegistry:
    secrets: set[str] = field(default_factory=set)
    error_bodies: list[str] = field(default_factory=list)
    postgres_urls: set[str] = field(default_factory=set)

    def add(self, secret: str) -> None:
        self.secrets.add(secret)

    def record_response(self, response: httpx.Response) -> None:
        """An httpx response hook: keys in successful bodies are issued secrets, error bodies
        are kept for the scan."""
        response.read()
        if response.is_success:
            for match in CANDIDATE.finditer(response.content):
                self.add(match.group().decode())
        else:
            self.error_bodies.append(response.text)

    def leaks_in(self, blob: bytes) -> set[str]:
        found = {match.group().decode() for match in CANDIDATE.finditer(blob)}
        return found & self.secrets

    def scan_files(self, root: Path) -> dict[str, set[str]]:
        leaks = {}
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            if path.name in NOT_SCANNED_NAMES or path.name.endswith(NOT_SCANNED_SUFFIXES):
                continue
            found = self.leaks_in(path.read_bytes())
            if found:
                leaks[str(path)] = found
        return leaks

    def scan_error_bodies(self) -> set[str]:
        return self.leaks_in("\n".join(self.error_bodies).encode())

    def scan_postgres(self) -> dict[str, set[str]]:
        """Every row of every table of each PostgreSQL test database, as text."""
        leaks = {}
        for url in self.postgres_urls:
            conninfo = make_url(url).set(drivername="postgresql")
            with psycopg.connect(conninfo.render_as_string(hide_password=False)) as connection:
                tables = connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()
                for (table,) in tables:
                    rows = connection.execute(f'SELECT t::text FROM "{table}" t').fetchall()
                    found = self.leaks_in("\n".join(row[0] for row in rows).encode())
                    if found:
                        leaks[f"postgres table {table}"] = found
        return leaks


REGISTRY = SecretRegistry()


def register_secrets(secrets: Iterable[str]) -> None:
    for secret in secrets:
        REGISTRY.add(secret)
