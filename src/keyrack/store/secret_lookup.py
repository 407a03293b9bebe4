"""The verification read on SQLite: one secret hash to what verifying it needs, on a raw driver.

Hand-written beside the repository because this is the cold path of every verification: through
SQLAlchemy (pool checkout, BEGIN, compiled select, rollback) one lookup costs about ten times the
SQLite query itself. Each thread keeps its own read-only autocommit connection, so every SELECT is
its own WAL snapshot and sqlite3's statement cache keeps the query prepared.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any, NamedTuple

from keyrack import metrics
from keyrack.domain.errors import ServiceUnavailable
from keyrack.domain.limits import Quota, RateLimit, effective_limits
from keyrack.domain.policy import parse_policy

_QUERY = (
    "SELECT k.id, k.org_id, k.name, k.permissions, k.enabled, k.expires_at, s.secret_hash,"
    " s.expires_at, k.rate_limit, k.quota, o.policy FROM key_secrets AS s"
    " JOIN api_keys AS k ON k.id = s.key_id JOIN orgs AS o ON o.id = k.org_id"
    " WHERE s.secret_hash = ?"
)


class SecretRecord(NamedTuple):
    key_id: str
    org_id: str
    name: str
    permissions: tuple[str, ...]
    enabled: bool
    key_expires_at: datetime | None
    secret_hash: bytes
    secret_expires_at: datetime | None
    rate_limit: RateLimit | None = None  # effective: the key's own, else the org's default
    quota: Quota | None = None


def _json(value: str | None) -> Any:
    return json.loads(value) if value else None


def _limits(row: tuple[Any, ...]) -> tuple[RateLimit | None, Quota | None]:
    rate_limit, quota = RateLimit.parse(_json(row[8])), Quota.parse(_json(row[9]))
    if rate_limit is not None and quota is not None:
        return rate_limit, quota
    policy = _json(row[10])
    if not policy:
        return rate_limit, quota
    defaults = parse_policy(policy)
    return effective_limits(
        rate_limit=rate_limit,
        quota=quota,
        default_rate_limit=defaults.default_rate_limit,
        default_quota=defaults.default_quota,
    )


def _utc(value: str | None) -> datetime | None:
    # SQLAlchemy stores naive UTC as ISO text on SQLite (see tables.UTCDateTime)
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None


class SqliteSecretLookup:
    def __init__(self, database_path: str) -> None:
        self.database_path = database_path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def find(self, secret_hash: bytes) -> SecretRecord | None:
        try:
            connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._connect()
            row = connection.execute(_QUERY, (secret_hash,)).fetchone()
        except sqlite3.Error as error:  # as SqlUnitOfWork does: counted, then 503 to the caller
            metrics.record_database_error(error)
            raise ServiceUnavailable("the database is unreachable; retry shortly") from error
        if row is None:
            return None
        rate_limit, quota = _limits(row)
        return SecretRecord(
            key_id=row[0],
            org_id=row[1],
            name=row[2],
            permissions=tuple(row[3].split(",")),
            enabled=bool(row[4]),
            key_expires_at=_utc(row[5]),
            secret_hash=bytes(row[6]),
            secret_expires_at=_utc(row[7]),
            rate_limit=rate_limit,
            quota=quota,
        )

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.database_path, timeout=30, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute("PRAGMA query_only=1")
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection
