"""The SQLAlchemy tables; the domain never imports them, the repository maps rows to records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (portable across SQLite and PostgreSQL), returns aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


metadata = MetaData()
AutoId = BigInteger().with_variant(Integer, "sqlite")

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("policy", JSON, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(72), primary_key=True),
    Column("org_id", String(64), ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("permissions", String(64), nullable=False),
    Column("start", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("rate_limit", JSON, nullable=True),
    Column("quota", JSON, nullable=True),
    Index("ix_api_keys_org_created", "org_id", "created_at", "id"),
)

key_secrets = Table(
    "key_secrets",
    metadata,
    Column("secret_hash", LargeBinary(32), primary_key=True),
    Column("key_id", String(72), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Set on a secret replaced by rotation: it keeps working until then (the grace period).
    Column("expires_at", UTCDateTime, nullable=True),
    Index("ix_key_secrets_key_id", "key_id"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("org_id", String(64), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor_key_id", String(72), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(128), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("details", JSON, nullable=True),
    Index("ix_audit_events_org", "org_id", "id"),
)

# SQLite's change feed: a row per changed key, written in the changing transaction; every
# process tails it by id (see store/key_changes.py). AUTOINCREMENT: ids are never reused.
key_changes = Table(
    "key_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(72), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("org_id", String(64), primary_key=True),
    Column("caller_key_id", String(72), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
