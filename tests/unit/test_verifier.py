"""The Verifier and its cache against fakes: codes, cache bounds, no negative caching."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.service import keys as service
from keyrack.service.key_cache import CachedKeyEvents, KeyCache, VerifiedKey
from keyrack.service.verify import Verifier, VerifyResult, sql_loader
from tests.unit.fakes import FakeUnitOfWork

FORMAT = KeyFormat("kr")
HASHER = SecretHasher(b"k" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


class Harness:
    """A verifier over a fake store that counts database lookups."""

    def __init__(self, max_entries: int = 100) -> None:
        self.uow = FakeUnitOfWork()
        service.create_org(uow=self.uow, org_id="acme")
        self.loads = 0
        self.cache = KeyCache(max_entries=max_entries, ttl_seconds=60)
        self.cache.reset(trusted=True)
        self.clock = Clock()
        load = sql_loader(lambda: self.uow)

        def counting_load(digest: bytes) -> VerifiedKey | None:
            self.loads += 1
            return load(digest)

        self.verifier = Verifier(
            key_format=FORMAT, hasher=HASHER, load=counting_load, cache=self.cache, clock=self.clock
        )

    def create(self, permissions: tuple[str, ...] = ("read",)) -> tuple[str, str]:
        created = service.create_key(
            uow=self.uow,
            key_format=FORMAT,
            hasher=HASHER,
            org_id="acme",
            name="k",
            permissions=list(permissions),
        )
        return created.secret, created.key.id

    def verify(self, secret: str | None, permissions: tuple[str, ...] = ()) -> VerifyResult:
        return self.verifier.verify(secret, permissions)


@pytest.fixture
def harness() -> Harness:
    return Harness()


def test_valid_key_carries_what_the_forward_auth_answer_needs(harness: Harness) -> None:
    secret, key_id = harness.create(("read", "write"))
    result = harness.verify(secret, ("write",))
    assert result.valid and result.code == "VALID"
    assert result.key is not None
    assert (result.key.org_id, result.key.key_id, result.key.permissions) == (
        "acme",
        key_id,
        ("read", "write"),
    )


@pytest.mark.parametrize(
    ("secret", "code"),
    [(None, "MISSING"), ("", "MISSING"), ("kr_short", "MALFORMED"), ("Basic abc", "MALFORMED")],
)
def test_unusable_keys_are_decided_without_any_lookup(
    harness: Harness, secret: str | None, code: str
) -> None:
    assert harness.verify(secret).code == code
    assert harness.loads == 0


def test_checksum_failure_is_malformed_without_lookup(harness: Harness) -> None:
    secret, _ = harness.create()
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert harness.verify(forged).code == "MALFORMED"
    assert harness.loads == 0


def test_missing_permission_is_insufficient(harness: Harness) -> None:
    secret, _ = harness.create(("read",))
    result = harness.verify(secret, ("read", "admin"))
    assert result.code == "INSUFFICIENT_PERMISSIONS"
    assert result.missing == ("admin",)
    assert "admin" in result.detail


def test_cache_hit_touches_no_database(harness: Harness) -> None:
    secret, _ = harness.create()
    for _ in range(5):
        assert harness.verify(secret).valid
    assert harness.loads == 1


def test_not_found_is_never_cached(harness: Harness) -> None:
    unknown = FORMAT.generate()
    assert harness.verify(unknown).code == "NOT_FOUND"
    assert harness.verify(unknown).code == "NOT_FOUND"
    assert harness.loads == 2
    secret, _ = harness.create()
    assert harness.verify(secret).valid  # created a moment after a miss: works at once


def test_cache_is_bounded_and_flat_under_invalid_floods() -> None:
    harness = Harness(max_entries=10)
    secrets = [harness.create()[0] for _ in range(30)]
    for secret in secrets:
        assert harness.verify(secret).valid
    assert len(harness.cache) == 10
    assert harness.verify(secrets[-1]).valid and harness.loads == 30  # newest still cached
    for _ in range(500):
        assert harness.verify(FORMAT.generate()).code == "NOT_FOUND"
    assert len(harness.cache) == 10
    assert sum(len(v) for v in harness.cache._digests_by_key.values()) == 10


def test_expiry_and_rotation_grace_are_checked_on_every_hit(harness: Harness) -> None:
    secret, key_id = harness.create()
    repo = harness.uow.repo
    soon = datetime.fromtimestamp(harness.clock.now, UTC) + timedelta(seconds=30)
    repo.keys[key_id] = replace(repo.keys[key_id], expires_at=soon)
    assert harness.verify(secret).valid
    harness.clock.now += 31
    assert harness.verify(secret).code == "EXPIRED"
    assert harness.loads == 1  # decided from the cached entry, no event needed

    other = Harness()
    secret, key_id = other.create()
    digest = HASHER.hash(secret)
    grace_end = datetime.fromtimestamp(other.clock.now, UTC) + timedelta(seconds=10)
    other.uow.repo.secrets[digest] = (key_id, grace_end)
    assert other.verify(secret).valid
    other.clock.now += 11
    assert other.verify(secret).code == "EXPIRED"


def test_disabled_key_is_refused(harness: Harness) -> None:
    secret, key_id = harness.create()
    harness.uow.repo.keys[key_id] = replace(harness.uow.repo.keys[key_id], enabled=False)
    assert harness.verify(secret).code == "DISABLED"


def test_delete_publishes_and_evicts_before_returning(harness: Harness) -> None:
    secret, key_id = harness.create()
    assert harness.verify(secret).valid
    events = CachedKeyEvents(harness.cache)
    service.delete_key(uow=harness.uow, org_id="acme", key_id=key_id, events=events)
    assert harness.uow.repo.published == [key_id]
    assert harness.verify(secret).code == "NOT_FOUND"
    assert len(harness.cache) == 0


def test_lookup_racing_a_revocation_is_not_cached(harness: Harness) -> None:
    secret, key_id = harness.create()
    digest = HASHER.hash(secret)
    generation = harness.cache.generation
    entry = sql_loader(lambda: harness.uow)(digest)
    assert entry is not None
    harness.cache.invalidate([key_id])  # the DELETE committed while the lookup was in flight
    harness.cache.put(digest, entry, generation=generation)
    assert len(harness.cache) == 0


def test_untrusted_cache_is_bypassed(harness: Harness) -> None:
    secret, _ = harness.create()
    harness.cache.reset(trusted=False)  # the change feed is down
    assert harness.verify(secret).valid
    assert harness.verify(secret).valid
    assert harness.loads == 2 and len(harness.cache) == 0


def test_ttl_is_a_safety_net(harness: Harness) -> None:
    secret, _ = harness.create()
    assert harness.verify(secret).valid
    harness.clock.now += 61
    assert harness.verify(secret).valid
    assert harness.loads == 2


def test_averify_answers_like_verify(harness: Harness) -> None:
    import asyncio

    secret, _ = harness.create()
    assert asyncio.run(harness.verifier.averify(secret, ["read"])).valid
    assert asyncio.run(harness.verifier.averify(secret, ["admin"])).code == (
        "INSUFFICIENT_PERMISSIONS"
    )
    assert asyncio.run(harness.verifier.averify(FORMAT.generate())).code == "NOT_FOUND"
    assert harness.loads == 2


def test_keyrack_exports_verifier_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, keyrack; assert 'sqlalchemy' not in sys.modules; "
        "from keyrack import Verifier; print(Verifier.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Verifier"


def test_verify_cached_answers_only_what_needs_no_database(harness: Harness) -> None:
    secret, _ = harness.create()
    assert harness.verifier.verify_cached("kr_bad") == ("MALFORMED", None, ())
    assert harness.verifier.verify_cached(secret) is None  # a miss: the caller must load
    assert harness.loads == 0
    assert harness.verify(secret).valid
    cached = harness.verifier.verify_cached(secret, ["read"])
    assert cached is not None and cached.valid and harness.loads == 1
