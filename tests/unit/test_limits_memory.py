"""The in-process store: exact sliding windows and calendar quotas on an injected clock."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from keyrack.domain.errors import RateLimited, UsageExceeded
from keyrack.domain.limits import AUTH_FAILURE_POLICY, Quota, RateLimit
from keyrack.service.limits import AuthFailureThrottle, UsageLimiter
from keyrack.settings import Settings
from keyrack.store.limits_memory import SWEEP_INTERVAL_SECONDS, InProcessLimitStore
from keyrack.store.limits_redis import RedisLimitStore
from keyrack.usage_controls import build_usage_controls


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 1, 31, 23, 59, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def store(clock: Clock) -> InProcessLimitStore:
    return InProcessLimitStore(clock=clock)


def admitted(store: InProcessLimitStore, n: int, **limits: RateLimit | Quota | None) -> int:
    return sum(
        store.acquire_sync(
            subject="s", rate_limit=limits.get("rate_limit"), quota=limits.get("quota")
        ).allowed
        for _ in range(n)
    )


def test_admits_exactly_the_limit_then_refuses(store: InProcessLimitStore) -> None:
    assert admitted(store, 10, rate_limit=RateLimit(7, 60)) == 7


def test_window_slides_one_admission_at_a_time(store: InProcessLimitStore, clock: Clock) -> None:
    rate = RateLimit(3, 10)
    for _ in range(3):
        assert store.acquire_sync(subject="s", rate_limit=rate, quota=None).allowed
        clock.now += 2  # admissions at t, t+2, t+4
    refused = store.acquire_sync(subject="s", rate_limit=rate, quota=None)
    assert not refused.allowed
    assert refused.decisions[0].retry_after == 4  # the first leaves the window at t+10
    clock.now += 3.999
    assert not store.acquire_sync(subject="s", rate_limit=rate, quota=None).allowed
    clock.now += 0.001  # exactly t+10: the first admission has left
    assert store.acquire_sync(subject="s", rate_limit=rate, quota=None).allowed
    assert not store.acquire_sync(subject="s", rate_limit=rate, quota=None).allowed


def test_no_interval_of_the_window_ever_holds_more_than_the_limit(
    store: InProcessLimitStore, clock: Clock
) -> None:
    rate, times = RateLimit(5, 10), []
    for _ in range(400):  # one attempt every 0.25 s for 100 s
        if store.acquire_sync(subject="s", rate_limit=rate, quota=None).allowed:
            times.append(clock.now)
        clock.now += 0.25
    assert all(sum(1 for t in times if start <= t < start + 10) <= 5 for start in times)
    assert len(times) == 50  # and it is not stingier than the limit


def test_daily_quota_resets_at_utc_midnight(store: InProcessLimitStore, clock: Clock) -> None:
    quota = Quota(3, "day")
    assert admitted(store, 5, quota=quota) == 3
    refused = store.acquire_sync(subject="s", rate_limit=None, quota=quota)
    assert refused.decisions[0].retry_after == 60  # 23:59:00 -> midnight
    clock.now += 60
    assert admitted(store, 5, quota=quota) == 3


def test_monthly_quota_counts_across_days_until_the_month_ends(
    store: InProcessLimitStore, clock: Clock
) -> None:
    clock.now = datetime(2024, 2, 1, tzinfo=UTC).timestamp()
    quota = Quota(4, "month")
    assert admitted(store, 2, quota=quota) == 2
    clock.now += 28 * 86_400  # 29 February 2024, still the same month
    assert admitted(store, 5, quota=quota) == 2
    clock.now += 86_400  # 1 March
    assert admitted(store, 5, quota=quota) == 4


def test_a_refused_request_counts_against_nothing(store: InProcessLimitStore) -> None:
    rate, quota = RateLimit(10, 60), Quota(2, "day")
    assert admitted(store, 5, rate_limit=rate, quota=quota) == 2
    usage = store.acquire_sync(subject="s", rate_limit=rate, quota=None)
    assert usage.decisions[0].remaining == 7  # only the two admitted requests are in the log


def test_threads_together_admit_exactly_the_limit(store: InProcessLimitStore) -> None:
    rate, quota, results = RateLimit(1000, 60), Quota(777, "day"), []

    def worker() -> None:
        for _ in range(200):
            results.append(store.acquire_sync(subject="s", rate_limit=rate, quota=quota).allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 1600 and sum(results) == 777


def test_idle_subjects_are_swept(store: InProcessLimitStore, clock: Clock) -> None:
    for n in range(50):
        store.acquire_sync(subject=f"s{n}", rate_limit=RateLimit(1, 5), quota=Quota(1, "day"))
    assert store.size() == 100
    clock.now += max(SWEEP_INTERVAL_SECONDS, 86_400)
    store.acquire_sync(subject="fresh", rate_limit=RateLimit(1, 5), quota=None)
    assert store.size() == 1


def test_limiter_raises_the_right_error(store: InProcessLimitStore) -> None:
    limiter = UsageLimiter(store)
    assert limiter.enforce_sync(key_id="key-a", rate_limit=None, quota=None) == ()
    limiter.enforce_sync(key_id="key-a", rate_limit=RateLimit(1, 60), quota=None)
    with pytest.raises(RateLimited) as rate_error:
        limiter.enforce_sync(key_id="key-a", rate_limit=RateLimit(1, 60), quota=None)
    assert rate_error.value.decisions[0].retry_after == 60
    decisions = asyncio.run(
        limiter.enforce(key_id="key-b", rate_limit=RateLimit(9, 60), quota=Quota(1, "day"))
    )
    assert [d.remaining for d in decisions] == [8, 0]
    with pytest.raises(UsageExceeded) as quota_error:
        limiter.enforce_sync(key_id="key-b", rate_limit=RateLimit(9, 60), quota=Quota(1, "day"))
    assert [d.policy for d in quota_error.value.decisions] == ["rate", "quota"]


def test_throttle_blocks_one_address_after_the_threshold(
    store: InProcessLimitStore, clock: Clock
) -> None:
    throttle = AuthFailureThrottle(store, limit=3, window_seconds=60)
    for _ in range(3):
        throttle.check_sync("203.0.113.9")
        throttle.record_failure_sync("203.0.113.9")
    with pytest.raises(RateLimited) as blocked:
        throttle.check_sync("203.0.113.9")
    assert blocked.value.decisions[0].policy == AUTH_FAILURE_POLICY
    assert blocked.value.decisions[0].retry_after == 60
    with pytest.raises(RateLimited):  # a further failure: 429 rather than 401, not stored
        asyncio.run(throttle.record_failure("203.0.113.9"))
    throttle.check_sync("198.51.100.1")  # another address is unaffected
    throttle.check_sync(None)  # unknown address: never throttled
    clock.now += 60
    asyncio.run(throttle.check("203.0.113.9"))


def test_a_blocked_address_is_refused_even_with_a_valid_key(
    store: InProcessLimitStore, clock: Clock
) -> None:
    """Otherwise a guesser would learn which guess was right from a 200 among the 429s."""
    throttle = AuthFailureThrottle(store, limit=2, window_seconds=60)
    limiter = UsageLimiter(store, auth_throttle=throttle)
    rate = RateLimit(10, 60)
    limiter.enforce_sync(key_id="key-v", rate_limit=rate, quota=None, address="203.0.113.9")
    throttle.record_failure_sync("203.0.113.9")
    throttle.record_failure_sync("203.0.113.9")
    with pytest.raises(RateLimited) as blocked:
        limiter.enforce_sync(key_id="key-v", rate_limit=None, quota=None, address="203.0.113.9")
    assert [d.policy for d in blocked.value.decisions] == [AUTH_FAILURE_POLICY]
    # the same key from another address works, and the refused request counted nothing
    decisions = asyncio.run(
        limiter.enforce(key_id="key-v", rate_limit=rate, quota=None, address="198.51.100.1")
    )
    assert decisions[0].remaining == 8
    clock.now += 60
    limiter.enforce_sync(key_id="key-v", rate_limit=rate, quota=None, address="203.0.113.9")


def test_settings_choose_the_store() -> None:
    embedded = build_usage_controls(Settings(auth_failure_limit=7))
    assert isinstance(embedded.store, InProcessLimitStore)
    assert embedded.auth_throttle.policy == RateLimit(7, 60)
    shared = build_usage_controls(
        Settings(redis_url="redis://127.0.0.1:1/0", limits_failure_mode="closed")
    )
    assert isinstance(shared.store, RedisLimitStore)
    assert shared.store.failure_mode == "closed"
    shared.close()
