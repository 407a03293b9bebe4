"""Verifying a presented key: format and checksum, cache, database, then expiry, state, permissions.

The same `Verifier` serves the `/verify` endpoint, management authentication and Python services
that link keyrack directly (`keyrack.Verifier`).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Collection
from typing import NamedTuple

from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.domain.limits import effective_limits
from keyrack.service.key_cache import KeyCache, VerifiedKey
from keyrack.service.usage import LastUsedRecorder
from keyrack.store.secret_lookup import SecretRecord
from keyrack.store.uow import UnitOfWork

VALID = "VALID"
MISSING = "MISSING"
MALFORMED = "MALFORMED"
NOT_FOUND = "NOT_FOUND"
EXPIRED = "EXPIRED"
DISABLED = "DISABLED"
INSUFFICIENT_PERMISSIONS = "INSUFFICIENT_PERMISSIONS"

DETAILS = {
    VALID: "the API key is valid",
    MISSING: "an API key is required",
    MALFORMED: "the API key is malformed",
    NOT_FOUND: "the API key is not valid",
    EXPIRED: "the API key has expired",
    DISABLED: "the API key is disabled",
    INSUFFICIENT_PERMISSIONS: "the API key lacks a required permission",
}

Loader = Callable[[bytes], VerifiedKey | None]


class VerifyResult(NamedTuple):
    """A NamedTuple rather than a frozen dataclass: built on every verification, and a tuple is
    several times cheaper to construct."""

    code: str
    key: VerifiedKey | None = None
    missing: tuple[str, ...] = ()  # the requested permissions the key lacks

    @property
    def valid(self) -> bool:
        return self.code == VALID

    @property
    def detail(self) -> str:
        if self.missing:
            return f"the API key lacks the permission(s): {', '.join(self.missing)}"
        return DETAILS[self.code]


_MISSING = VerifyResult(MISSING)
_MALFORMED = VerifyResult(MALFORMED)
_NOT_FOUND = VerifyResult(NOT_FOUND)


def sql_loader(uow_factory: Callable[[], UnitOfWork]) -> Loader:
    """Reads what verification needs for one secret hash, in one short read transaction."""

    def load(digest: bytes) -> VerifiedKey | None:
        with uow_factory() as uow:
            found = uow.repo.find_by_secret_hash(digest)
            # Only keys lacking a limit of their own need the org's defaults.
            needs_defaults = found is not None and (
                found[0].rate_limit is None or found[0].quota is None
            )
            policy = uow.repo.get_policy(found[0].org_id) if found and needs_defaults else None
        if found is None:
            return None
        key, stored_hash, secret_expires_at = found
        if not hmac.compare_digest(stored_hash, digest):
            return None
        rate_limit, quota = key.rate_limit, key.quota
        if policy is not None:
            rate_limit, quota = effective_limits(
                rate_limit=rate_limit,
                quota=quota,
                default_rate_limit=policy.default_rate_limit,
                default_quota=policy.default_quota,
            )
        return VerifiedKey(
            org_id=key.org_id,
            key_id=key.id,
            name=key.name,
            permissions=key.permissions,
            enabled=key.enabled,
            key_expires_at=key.expires_at.timestamp() if key.expires_at else None,
            secret_expires_at=secret_expires_at.timestamp() if secret_expires_at else None,
            loaded_at=time.time(),
            rate_limit=rate_limit,
            quota=quota,
        )

    return load


def entry_ttl(cache: KeyCache | None) -> float:
    # The TTL is a safety net only: revocation is pushed and never waits for it.
    return cache.ttl_seconds if cache is not None else 0.0


def record_loader(find: Callable[[bytes], SecretRecord | None]) -> Loader:
    """The loader over a raw secret lookup (SQLite's fast path, see store/secret_lookup.py)."""

    def load(digest: bytes) -> VerifiedKey | None:
        record = find(digest)
        if record is None or not hmac.compare_digest(record.secret_hash, digest):
            return None
        return VerifiedKey(
            org_id=record.org_id,
            key_id=record.key_id,
            name=record.name,
            permissions=record.permissions,
            enabled=record.enabled,
            key_expires_at=record.key_expires_at.timestamp() if record.key_expires_at else None,
            secret_expires_at=(
                record.secret_expires_at.timestamp() if record.secret_expires_at else None
            ),
            loaded_at=time.time(),
            rate_limit=record.rate_limit,
            quota=record.quota,
        )

    return load


class Verifier:
    def __init__(
        self,
        *,
        key_format: KeyFormat,
        hasher: SecretHasher,
        load: Loader,
        cache: KeyCache | None = None,
        usage: LastUsedRecorder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_format = key_format
        self.hasher = hasher
        self.cache = cache
        self.usage = usage
        self._load = load
        self._clock = clock

    def verify(self, secret: str | None, permissions: Collection[str] = ()) -> VerifyResult:
        """Verify `secret`, needing every permission in `permissions` (blocking on a miss)."""
        if not secret:
            return _MISSING
        if not self.key_format.is_well_formed(secret):
            return _MALFORMED  # decided before any cache or database lookup
        digest = self.hasher.hash(secret)
        now = self._clock()
        cache = self.cache
        entry = cache.get(digest) if cache is not None else None
        if entry is None or now - entry.loaded_at > entry_ttl(cache):
            entry = self._fetch(digest)
        return self._judge(entry, permissions, now)

    def verify_cached(
        self, secret: str | None, permissions: Collection[str] = ()
    ) -> VerifyResult | None:
        """The answer when it needs no database (an unusable key or a cache hit), else None.
        Lets an event loop answer hits inline, without even creating a coroutine."""
        if not secret:
            return _MISSING
        if not self.key_format.is_well_formed(secret):
            return _MALFORMED
        cache = self.cache
        if cache is None:
            return None
        entry = cache.get(self.hasher.hash(secret))
        now = self._clock()
        if entry is None or now - entry.loaded_at > cache.ttl_seconds:
            return None
        return self._judge(entry, permissions, now)

    async def averify(self, secret: str | None, permissions: Collection[str] = ()) -> VerifyResult:
        """As `verify`; a cache hit never leaves the event loop, a miss reads in a thread."""
        result = self.verify_cached(secret, permissions)
        if result is not None:
            return result
        assert secret  # verify_cached answered every unusable key
        entry = await asyncio.to_thread(self._fetch, self.hasher.hash(secret))
        return self._judge(entry, permissions, self._clock())

    def _fetch(self, digest: bytes) -> VerifiedKey | None:
        cache = self.cache
        generation = cache.generation if cache is not None else 0
        entry = self._load(digest)
        if entry is not None and cache is not None:
            cache.put(digest, entry, generation=generation)
        return entry

    def _judge(
        self, entry: VerifiedKey | None, permissions: Collection[str], now: float
    ) -> VerifyResult:
        if entry is None:
            return _NOT_FOUND
        if (entry.secret_expires_at is not None and entry.secret_expires_at <= now) or (
            entry.key_expires_at is not None and entry.key_expires_at <= now
        ):
            return VerifyResult(EXPIRED, entry)
        if not entry.enabled:
            return VerifyResult(DISABLED, entry)
        if self.usage is not None:
            self.usage.seen(entry.key_id, now)
        if permissions:
            held = entry.permissions
            missing = tuple(p for p in permissions if p not in held)
            if missing:
                return VerifyResult(INSUFFICIENT_PERMISSIONS, entry, missing)
        return VerifyResult(VALID, entry)
