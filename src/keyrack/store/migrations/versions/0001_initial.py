"""Initial schema: orgs, keys, key secrets, audit events, idempotency records.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keyrack.store.tables import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("policy", sa.JSON, nullable=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(72), primary_key=True),
        sa.Column(
            "org_id", sa.String(64), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("permissions", sa.String(64), nullable=False),
        sa.Column("start", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("last_used_at", UTCDateTime, nullable=True),
        sa.Column("rate_limit", sa.JSON, nullable=True),
        sa.Column("quota", sa.JSON, nullable=True),
    )
    op.create_index("ix_api_keys_org_created", "api_keys", ["org_id", "created_at", "id"])
    op.create_table(
        "key_secrets",
        sa.Column("secret_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column(
            "key_id",
            sa.String(72),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_key_secrets_key_id", "key_secrets", ["key_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("actor_key_id", sa.String(72), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("details", sa.JSON, nullable=True),
    )
    op.create_index("ix_audit_events_org", "audit_events", ["org_id", "id"])
    op.create_table(
        "idempotency_records",
        sa.Column("org_id", sa.String(64), primary_key=True),
        sa.Column("caller_key_id", sa.String(72), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_body", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_records")
    op.drop_table("audit_events")
    op.drop_table("key_secrets")
    op.drop_table("api_keys")
    op.drop_table("orgs")
