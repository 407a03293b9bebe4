"""The repository: every query of keyrack, each scoped by org where a tenant is involved."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from keyrack.domain.limits import Quota, RateLimit
from keyrack.domain.model import ApiKey, Org, utcnow
from keyrack.domain.policy import OrgPolicy, parse_policy
from keyrack.store.audit_queries import AuditQueries
from keyrack.store.idempotency_queries import IdempotencyQueries
from keyrack.store.tables import api_keys, key_changes, key_secrets, orgs

KEY_CHANGES_CHANNEL = "keyrack_key_changes"
NOTIFY_PAYLOAD_LIMIT = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
KEY_CHANGES_RETENTION = timedelta(days=1)


def _key_from_row(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        permissions=tuple(row.permissions.split(",")),
        start=row.start,
        created_at=row.created_at,
        expires_at=row.expires_at,
        enabled=row.enabled,
        last_used_at=row.last_used_at,
        rate_limit=RateLimit.parse(row.rate_limit),
        quota=Quota.parse(row.quota),
    )


def _key_values(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "permissions": ",".join(key.permissions),
        "expires_at": key.expires_at,
        "enabled": key.enabled,
        "rate_limit": key.rate_limit and key.rate_limit.to_json(),
        "quota": key.quota and key.quota.to_json(),
    }


_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.org_id,
    api_keys.c.name,
    api_keys.c.permissions,
    api_keys.c.start,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.enabled,
    api_keys.c.last_used_at,
    api_keys.c.rate_limit,
    api_keys.c.quota,
)


class Repository(AuditQueries, IdempotencyQueries):
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- organizations
    def add_org(self, org: Org) -> None:
        self.connection.execute(insert(orgs).values(id=org.id, created_at=org.created_at))

    def get_org(self, org_id: str) -> Org | None:
        row = self.connection.execute(
            select(orgs.c.id, orgs.c.created_at).where(orgs.c.id == org_id)
        ).first()
        return Org(id=row.id, created_at=row.created_at) if row else None

    def list_orgs(self) -> list[Org]:
        rows = self.connection.execute(select(orgs.c.id, orgs.c.created_at).order_by(orgs.c.id))
        return [Org(id=row.id, created_at=row.created_at) for row in rows]

    def count_orgs(self) -> int:
        return int(self.connection.execute(select(func.count()).select_from(orgs)).scalar_one())

    def lock_org_policy(self, org_id: str) -> OrgPolicy | None:
        """The org's policy, row-locked until commit (FOR UPDATE on PostgreSQL; SQLite's
        BEGIN IMMEDIATE already serializes writers), or None when the org does not exist."""
        row = self.connection.execute(
            select(orgs.c.policy).where(orgs.c.id == org_id).with_for_update()
        ).first()
        return None if row is None else parse_policy(row.policy or {})

    def get_policy(self, org_id: str) -> OrgPolicy | None:
        row = self.connection.execute(select(orgs.c.policy).where(orgs.c.id == org_id)).first()
        return None if row is None else parse_policy(row.policy or {})

    def set_policy(self, org_id: str, policy: OrgPolicy) -> None:
        self.connection.execute(
            update(orgs).where(orgs.c.id == org_id).values(policy=policy.as_dict())
        )

    # -- keys
    def count_live_keys(self, *, org_id: str, now: datetime) -> int:
        """Keys that have not expired (disabled ones count: they can be enabled again)."""
        query = (
            select(func.count())
            .select_from(api_keys)
            .where(api_keys.c.org_id == org_id)
            .where(api_keys.c.expires_at.is_(None) | (api_keys.c.expires_at > now))
        )
        return int(self.connection.execute(query).scalar_one())

    def list_keys_page(
        self, *, org_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[ApiKey]:
        query = select(*_KEY_COLUMNS).where(api_keys.c.org_id == org_id)
        if after is not None:
            created_at, key_id = after
            query = query.where(
                (api_keys.c.created_at > created_at)
                | ((api_keys.c.created_at == created_at) & (api_keys.c.id > key_id))
            )
        query = query.order_by(api_keys.c.created_at, api_keys.c.id).limit(limit)
        return [_key_from_row(row) for row in self.connection.execute(query)]

    def update_key(self, key: ApiKey) -> None:
        self.connection.execute(
            update(api_keys)
            .where(api_keys.c.org_id == key.org_id, api_keys.c.id == key.id)
            .values(**_key_values(key))
        )

    def replace_secret(
        self, *, key_id: str, secret_hash: bytes, now: datetime, old_until: datetime
    ) -> None:
        """Add a new secret; older ones keep working until `old_until` (the rotation grace)."""
        finished = delete(key_secrets).where(key_secrets.c.key_id == key_id)
        if old_until > now:  # with a grace period only secrets already past theirs go now
            finished = finished.where(key_secrets.c.expires_at <= now)
        self.connection.execute(finished)
        self.connection.execute(
            update(key_secrets)
            .where(key_secrets.c.key_id == key_id)
            .where(key_secrets.c.expires_at.is_(None) | (key_secrets.c.expires_at > old_until))
            .values(expires_at=old_until)
        )
        self.connection.execute(
            insert(key_secrets).values(secret_hash=secret_hash, key_id=key_id, created_at=now)
        )

    def update_start(self, *, key_id: str, start: str) -> None:
        self.connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(start=start))

    def list_key_ids(self, *, org_id: str) -> list[str]:
        rows = self.connection.execute(
            select(api_keys.c.id).where(api_keys.c.org_id == org_id).order_by(api_keys.c.id)
        )
        return [row.id for row in rows]

    def add_key(self, key: ApiKey, *, secret_hash: bytes) -> None:
        self.connection.execute(
            insert(api_keys).values(
                id=key.id,
                org_id=key.org_id,
                start=key.start,
                created_at=key.created_at,
                **_key_values(key),
            )
        )
        self.connection.execute(
            insert(key_secrets).values(
                secret_hash=secret_hash, key_id=key.id, created_at=key.created_at
            )
        )

    def get_key(self, *, org_id: str, key_id: str) -> ApiKey | None:
        row = self.connection.execute(
            select(*_KEY_COLUMNS).where(api_keys.c.org_id == org_id, api_keys.c.id == key_id)
        ).first()
        return _key_from_row(row) if row else None

    def list_keys(self, *, org_id: str) -> list[ApiKey]:
        rows = self.connection.execute(
            select(*_KEY_COLUMNS)
            .where(api_keys.c.org_id == org_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        return [_key_from_row(row) for row in rows]

    def delete_keys(self, *, org_id: str, key_ids: Sequence[str]) -> list[str]:
        """Delete those of `key_ids` the org owns; returns the ids actually deleted."""
        owned = [
            row.id
            for row in self.connection.execute(
                select(api_keys.c.id)
                .where(api_keys.c.org_id == org_id, api_keys.c.id.in_(list(key_ids)))
                .order_by(api_keys.c.id)
            )
        ]
        if owned:
            self.connection.execute(delete(key_secrets).where(key_secrets.c.key_id.in_(owned)))
            self.connection.execute(delete(api_keys).where(api_keys.c.id.in_(owned)))
        return owned

    def delete_key(self, *, org_id: str, key_id: str) -> bool:
        # Secrets go first and explicitly, so that revocation never depends on cascade settings.
        owned = select(api_keys.c.id).where(api_keys.c.org_id == org_id, api_keys.c.id == key_id)
        self.connection.execute(delete(key_secrets).where(key_secrets.c.key_id.in_(owned)))
        result = self.connection.execute(
            delete(api_keys).where(api_keys.c.org_id == org_id, api_keys.c.id == key_id)
        )
        return result.rowcount == 1

    def find_by_secret_hash(
        self, secret_hash: bytes
    ) -> tuple[ApiKey, bytes, datetime | None] | None:
        """The key a secret hash belongs to, with the stored hash and that secret's own expiry."""
        row = self.connection.execute(
            select(
                *_KEY_COLUMNS,
                key_secrets.c.secret_hash,
                key_secrets.c.expires_at.label("secret_expires_at"),
            )
            .join(key_secrets, key_secrets.c.key_id == api_keys.c.id)
            .where(key_secrets.c.secret_hash == secret_hash)
        ).first()
        if row is None:
            return None
        return _key_from_row(row), row.secret_hash, row.secret_expires_at

    def touch_last_used(self, stamps: Sequence[tuple[str, datetime]]) -> None:
        """One statement executed for many rows (the driver's executemany): the writer thread
        holds the GIL for microseconds per key, not for a statement built per key, which
        stalled the event loop's requests behind it."""
        if not stamps:
            return
        used_at = bindparam("used_at", type_=api_keys.c.last_used_at.type)
        self.connection.execute(
            update(api_keys)
            .where(api_keys.c.id == bindparam("key_id"))
            .where(api_keys.c.last_used_at.is_(None) | (api_keys.c.last_used_at < used_at))
            .values(last_used_at=used_at),
            [{"key_id": key_id, "used_at": stamp} for key_id, stamp in stamps],
        )

    # -- key change feed (revocation propagation; see store/key_changes.py)
    def publish_key_changes(self, key_ids: Sequence[str]) -> None:
        """Announce changed keys inside the current transaction, so only a commit announces them:
        PostgreSQL NOTIFY (delivered on commit), or a row in SQLite's `key_changes` feed."""
        if not key_ids:
            return
        if self.connection.dialect.name == "postgresql":
            for payload in _chunks(key_ids, NOTIFY_PAYLOAD_LIMIT):
                self.connection.execute(select(func.pg_notify(KEY_CHANGES_CHANNEL, payload)))
            return
        now = utcnow()
        self.connection.execute(
            delete(key_changes).where(key_changes.c.changed_at < now - KEY_CHANGES_RETENTION)
        )
        self.connection.execute(
            insert(key_changes), [{"key_id": key_id, "changed_at": now} for key_id in key_ids]
        )


def _chunks(key_ids: Sequence[str], limit: int) -> list[str]:
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for key_id in key_ids:
        if current and size + len(key_id) + 1 > limit:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(key_id)
        size += len(key_id) + 1
    if current:
        payloads.append(",".join(current))
    return payloads
