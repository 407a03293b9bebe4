"""The Redis limit store on a real Redis: exact across instances and processes, and failing
open or closed, quickly, when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyrack.domain.errors import RateLimited, ServiceUnavailable
from keyrack.domain.limits import Quota, RateLimit
from keyrack.service.limits import Guard, UsageLimiter
from keyrack.settings import Settings
from keyrack.store.limits_memory import InProcessLimitStore
from keyrack.store.limits_redis import RedisLimitStore
from keyrack.usage_controls import build_usage_controls
from tests.random_refs import random_suffix

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


def subject() -> str:
    return f"test-{random_suffix()}"


def test_two_instances_admit_exactly_the_limit_in_a_parallel_burst(redis_url: str) -> None:
    async def main() -> int:
        stores = [RedisLimitStore(redis_url, timeout_seconds=2.0) for _ in range(2)]
        name, rate, quota = subject(), RateLimit(37, 3600), Quota(1000, "day")
        calls = [
            stores[n % 2].acquire(subject=name, rate_limit=rate, quota=quota) for n in range(120)
        ]
        results = await asyncio.gather(*calls)
        for store in stores:
            await store.aclose()
        assert not any(usage.degraded for usage in results)
        return sum(usage.allowed for usage in results)

    assert asyncio.run(main()) == 37


def test_quota_is_exact_across_instances_and_threads(redis_url: str) -> None:
    stores = [RedisLimitStore(redis_url, timeout_seconds=2.0) for _ in range(2)]
    name, quota, results = subject(), Quota(53, "month"), []

    def worker(store: RedisLimitStore) -> None:
        for _ in range(25):
            results.append(store.acquire_sync(subject=name, rate_limit=None, quota=quota))

    threads = [threading.Thread(target=worker, args=(stores[n % 2],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for store in stores:
        store.close()
    assert len(results) == 100 and not any(usage.degraded for usage in results)
    assert sum(usage.allowed for usage in results) == 53


def test_two_processes_sharing_redis_admit_exactly_the_limit(redis_url: str) -> None:
    name, start_at = subject(), time.time() + 1.5
    command = [sys.executable, "-m", "tests.integration.limits_burst", redis_url, name, "41"]
    processes = [
        subprocess.Popen(
            [*command, "80", str(start_at)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    counts = [int(process.communicate(timeout=60)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert sum(counts) == 41


def test_redis_decides_exactly_like_the_in_process_store(redis_url: str) -> None:
    """The same random sequence on an injected clock: identical decisions, field by field."""
    now = [time.time()]
    memory = InProcessLimitStore(clock=lambda: now[0])
    shared = RedisLimitStore(redis_url, clock=lambda: now[0], use_redis_time=False)
    name, address, rng = subject(), subject(), random.Random(5)
    rate, quota, guard = RateLimit(4, 10), Quota(30, "day"), Guard(address, RateLimit(3, 20))
    outcomes: set[tuple[bool, bool]] = set()
    try:
        for _ in range(200):
            now[0] += rng.choice([0.0, 0.5, 1.0, 3.0])
            draw = rng.random()
            if draw < 0.1:
                pair = [s.peek_sync(subject=name, rate_limit=rate) for s in (memory, shared)]
            elif draw < 0.4:  # a failed authentication from the address
                pair = [
                    s.acquire_sync(subject=address, rate_limit=guard.rate_limit, quota=None)
                    for s in (memory, shared)
                ]
            else:
                pair = [
                    s.acquire_sync(subject=name, rate_limit=rate, quota=quota, guard=guard)
                    for s in (memory, shared)
                ]
            assert pair[0] == pair[1]
            outcomes.add((pair[0].allowed, pair[0].blocked_by is not None))
    finally:
        shared.close()
    assert outcomes == {(True, False), (False, False), (False, True)}  # every path was taken


def test_failed_logins_are_throttled_across_instances(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, auth_failure_limit=5)
    first, second = build_usage_controls(settings), build_usage_controls(settings)
    address = f"198.51.100.{random.randrange(1, 250)}-{random_suffix()}"
    try:
        for n in range(5):
            (first if n % 2 else second).auth_throttle.record_failure_sync(address)
        with pytest.raises(RateLimited):
            first.auth_throttle.check_sync(address)
        with pytest.raises(RateLimited):
            asyncio.run(second.auth_throttle.record_failure(address))
        with pytest.raises(RateLimited):  # a valid key from there too, in the same call
            first.limiter.enforce_sync(
                key_id="key-valid", rate_limit=None, quota=None, address=address
            )
        second.auth_throttle.check_sync(address + "-other")
        first.limiter.enforce_sync(
            key_id="key-valid", rate_limit=None, quota=None, address=address + "-other"
        )
    finally:
        first.close()
        second.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there any more


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """Accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.fixture(params=["closed-port", "silent-listener"])
def dead_redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "closed-port":
        return f"redis://127.0.0.1:{closed_port()}/0"
    port = request.getfixturevalue("silent_listener")
    return f"redis://127.0.0.1:{port}/0"


def test_fail_open_admits_quickly_and_reports_it(dead_redis_url: str) -> None:
    reasons: list[str] = []
    store = RedisLimitStore(dead_redis_url, timeout_seconds=0.2, on_failure=reasons.append)
    limiter = UsageLimiter(store)

    async def main() -> None:
        started = time.monotonic()
        decisions = await limiter.enforce(key_id="key-x", rate_limit=RateLimit(1, 60), quota=None)
        assert decisions == () and time.monotonic() - started < 1.0
        started = time.monotonic()
        for _ in range(50):  # Redis is left alone for a while: no timeout per request
            await limiter.enforce(key_id="key-x", rate_limit=RateLimit(1, 60), quota=None)
        assert time.monotonic() - started < 0.1
        await store.aclose()

    asyncio.run(main())
    assert reasons == ["unreachable"] + ["skipped"] * 50
    assert store.failures == 51


def test_fail_closed_answers_503_quickly_sync_and_async(dead_redis_url: str) -> None:
    store = RedisLimitStore(
        dead_redis_url, timeout_seconds=0.2, failure_mode="closed", retry_interval_seconds=0
    )
    limiter = UsageLimiter(store)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        limiter.enforce_sync(key_id="key-x", rate_limit=None, quota=Quota(5, "day"))
    with pytest.raises(ServiceUnavailable):
        asyncio.run(limiter.enforce(key_id="key-x", rate_limit=None, quota=Quota(5, "day")))
    assert time.monotonic() - started < 2.0
    store.close()


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_outage_logs_one_clear_line() -> None:
    store = RedisLimitStore(
        f"redis://127.0.0.1:{closed_port()}/0", timeout_seconds=0.2, retry_interval_seconds=0
    )
    logger, handler = logging.getLogger("keyrack.limits"), ListHandler()
    logger.addHandler(handler)
    try:
        for _ in range(20):  # every one tries Redis (no pause), yet one line is written
            store.acquire_sync(subject="s", rate_limit=RateLimit(1, 1), quota=None)
    finally:
        logger.removeHandler(handler)
        store.close()
    lines = [record.getMessage() for record in handler.records]
    assert len(lines) == 1
    assert "Redis unreachable" in lines[0] and "failing open" in lines[0]
