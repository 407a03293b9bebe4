"""In-memory stand-ins for the repository and unit of work (cosmicpython's FakeRepository)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyrack.domain.model import ApiKey, Org


class FakeRepository:
    def __init__(self) -> None:
        self.orgs: dict[str, Org] = {}
        self.keys: dict[str, ApiKey] = {}
        self.secrets: dict[bytes, tuple[str, datetime | None]] = {}
        self.published: list[str] = []  # key ids announced to other processes

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
