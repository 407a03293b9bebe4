"""The verification cache: secret HMAC -> what verifying that secret needs, bounded, revocable."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from keyrack.domain.limits import Quota, RateLimit
from keyrack.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """A key as verification sees it; expiry instants are POSIX seconds, checked on every hit."""

    org_id: str
    key_id: str
    name: str
    permissions: tuple[str, ...]
    enabled: bool
    key_expires_at: float | None
    secret_expires_at: float | None  # set on a secret replaced by rotation: its grace end
    loaded_at: float  # when it was read from the database (safety-net TTL)
    # The effective limits: the key's own, else its org policy's defaults (a policy change
    # announces every key of the org, so cached entries never keep stale defaults).
    rate_limit: RateLimit | None = None
    quota: Quota | None = None

    @property
    def limited(self) -> bool:
        return self.rate_limit is not None or self.quota is not None


class KeyCache:
    """A bounded map keyed by the secret's HMAC (never the secret).

    Hand-written rather than `cachetools.LRUCache`: a hit here is one C-level `dict.get`, while an
    LRU reorders on every hit in Python; the hot path is worth more than recency (eviction is
    oldest-inserted first). Only found keys are stored, so a flood of distinct invalid keys
    cannot grow it, and a lookup that found nothing never hides a key created a moment later.

    Revocations must win over lookups already in flight: `generation` is read before the database
    lookup and `put` refuses the entry if an invalidation happened since (a lookup that started
    before a DELETE committed could otherwise re-insert the deleted key after its eviction).
    While no change listener is connected (`trusted` false) the cache is bypassed, so a missed
    notification can never keep a revoked key alive.
    """

    def __init__(self, *, max_entries: int = 100_000, ttl_seconds: float = 300.0) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.trusted = False
        self.generation = 0
        self._entries: dict[bytes, VerifiedKey] = {}
        self._digests_by_key: dict[str, set[bytes]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def holds(self, key_id: str) -> bool:
        """Whether any secret of `key_id` is cached (for tests and diagnostics)."""
        return key_id in self._digests_by_key

    def get(self, digest: bytes) -> VerifiedKey | None:
        return self._entries.get(digest) if self.trusted else None

    def put(self, digest: bytes, entry: VerifiedKey, *, generation: int) -> None:
        with self._lock:
            if not self.trusted or generation != self.generation:
                return
            if digest not in self._entries and len(self._entries) >= self.max_entries:
                self._evict_oldest()
            self._entries[digest] = entry
            self._digests_by_key.setdefault(entry.key_id, set()).add(digest)

    def drop(self, digest: bytes) -> None:
        with self._lock:
            entry = self._entries.pop(digest, None)
            if entry is not None:
                self._forget(entry.key_id, digest)

    def invalidate(self, key_ids: Iterable[str]) -> None:
        with self._lock:
            self.generation += 1
            for key_id in key_ids:
                for digest in self._digests_by_key.pop(key_id, ()):
                    self._entries.pop(digest, None)

    def reset(self, *, trusted: bool) -> None:
        """Forget everything; called when a change listener (re)connects or loses its feed."""
        with self._lock:
            self.generation += 1
            self.trusted = trusted
            self._entries.clear()
            self._digests_by_key.clear()

    def _evict_oldest(self) -> None:
        digest = next(iter(self._entries))
        entry = self._entries.pop(digest)
        self._forget(entry.key_id, digest)

    def _forget(self, key_id: str, digest: bytes) -> None:
        digests = self._digests_by_key.get(key_id)
        if digests is not None:
            digests.discard(digest)
            if not digests:
                del self._digests_by_key[key_id]


class CachedKeyEvents:
    """`KeyEvents` for processes with a cache: publish the change in the transaction (PostgreSQL
    NOTIFY or a row in SQLite's change log, so only a commit announces it) and evict locally
    before the use case answers."""

    def __init__(self, cache: KeyCache) -> None:
        self.cache = cache

    def record(self, uow: UnitOfWork, key_ids: Sequence[str]) -> None:
        uow.repo.publish_key_changes(key_ids)

    def applied(self, key_ids: Sequence[str]) -> None:
        self.cache.invalidate(key_ids)
