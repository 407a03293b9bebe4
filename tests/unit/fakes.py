"""In-memory stand-ins for the repository and unit of work (cosmicpython's FakeRepository)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from keyrack.domain.audit import AuditEvent
from keyrack.domain.model import ApiKey, Org
from keyrack.domain.policy import OrgPolicy


class FakeRepository:
    def __init__(self) -> None:
        self.orgs: dict[str, Org] = {}
        self.keys: dict[str, ApiKey] = {}
        self.secrets: dict[bytes, tuple[str, datetime | None]] = {}
        self.published: list[str] = []  # key ids announced to other processes
        self.policies: dict[str, OrgPolicy] = {}
        self.audit: list[AuditEvent] = []

    def lock_org_policy(self, org_id: str) -> OrgPolicy | None:
        return self.get_policy(org_id)

    def get_policy(self, org_id: str) -> OrgPolicy | None:
        return self.policies.get(org_id, OrgPolicy()) if org_id in self.orgs else None

    def set_policy(self, org_id: str, policy: OrgPolicy) -> None:
        self.policies[org_id] = policy

    def add_audit_event(self, event: AuditEvent) -> None:
        self.audit.append(replace(event, id=len(self.audit) + 1))

    def count_live_keys(self, *, org_id: str, now: datetime) -> int:
        return sum(
            1
            for key in self.keys.values()
            if key.org_id == org_id and (key.expires_at is None or key.expires_at > now)
        )

    def update_key(self, key: ApiKey) -> None:
        self.keys[key.id] = key

    def update_start(self, *, key_id: str, start: str) -> None:
        self.keys[key_id] = replace(self.keys[key_id], start=start)

    def replace_secret(
        self, *, key_id: str, secret_hash: bytes, now: datetime, old_until: datetime
    ) -> None:
        for digest, (owner, until) in list(self.secrets.items()):
            if owner != key_id:
                continue
            if old_until <= now or (until is not None and until <= now):
                del self.secrets[digest]
            elif until is None or until > old_until:
                self.secrets[digest] = (owner, old_until)
        self.secrets[secret_hash] = (key_id, None)

    def list_key_ids(self, *, org_id: str) -> list[str]:
        return sorted(k.id for k in self.keys.values() if k.org_id == org_id)

    def delete_keys(self, *, org_id: str, key_ids: Sequence[str]) -> list[str]:
        return [k for k in sorted(key_ids) if self.delete_key(org_id=org_id, key_id=k)]

    def add_org(self, org: Org) -> None:
        self.orgs[org.id] = org

    def get_org(self, org_id: str) -> Org | None:
        return self.orgs.get(org_id)

    def list_orgs(self) -> list[Org]:
        return sorted(self.orgs.values(), key=lambda org: org.id)

    def count_orgs(self) -> int:
        return len(self.orgs)

    def add_key(self, key: ApiKey, *, secret_hash: bytes) -> None:
        self.keys[key.id] = key
        self.secrets[secret_hash] = (key.id, None)

    def get_key(self, *, org_id: str, key_id: str) -> ApiKey | None:
        key = self.keys.get(key_id)
        return key if key and key.org_id == org_id else None

    def list_keys(self, *, org_id: str) -> list[ApiKey]:
        return sorted(
            (k for k in self.keys.values() if k.org_id == org_id),
            key=lambda k: (k.created_at, k.id),
        )

    def delete_key(self, *, org_id: str, key_id: str) -> bool:
        if self.get_key(org_id=org_id, key_id=key_id) is None:
            return False
        del self.keys[key_id]
        self.secrets = {h: v for h, v in self.secrets.items() if v[0] != key_id}
        return True

    def find_by_secret_hash(
        self, secret_hash: bytes
    ) -> tuple[ApiKey, bytes, datetime | None] | None:
        found = self.secrets.get(secret_hash)
        if found is None:
            return None
        return self.keys[found[0]], secret_hash, found[1]

    def publish_key_changes(self, key_ids: list[str]) -> None:
        self.published.extend(key_ids)


class FakeUnitOfWork:
    def __init__(self, repo: FakeRepository | None = None) -> None:
        self.repo = repo or FakeRepository()
        self.committed = 0

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def commit(self) -> None:
        self.committed += 1
