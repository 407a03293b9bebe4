"""The Redis limit store on a real Redis: exact across instances and processes, and failing
open or closed, quickly, when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from keyrack.domain.errors import RateLimited, ServiceUnavailable
from keyrack.domain.limits import Quota, RateLimit, quota_window
from keyrack.service.limits import Guard, LimitStore, Usage, UsageLimiter
from keyrack.settings import Settings
from keyrack.store.limits_lua import QUOTA_EXPIRY_SLACK_MS
from keyrack.store.limits_memory import InProcessLimitStore
from keyrack.store.limits_redis import EARLY_BATCH, RedisLimitStore
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


def test_window_edges_and_mass_expiry_decide_like_the_in_process_store(redis_url: str) -> None:
    """An entry exactly one window old has left the window, one 1/8 s younger has not; a full
    log whose entries all leave at once admits again (times in eighths of a second: exact in
    both stores' clocks)."""
    start = float(math.floor(time.time()))
    now = [start]
    memory = InProcessLimitStore(clock=lambda: now[0])
    shared = RedisLimitStore(redis_url, clock=lambda: now[0], use_redis_time=False)
    name, rate = subject(), RateLimit(40, 10)

    def both() -> Usage:
        pair = [s.acquire_sync(subject=name, rate_limit=rate, quota=None) for s in (memory, shared)]
        assert pair[0] == pair[1]
        return pair[1]

    try:
        assert all(both().allowed for _ in range(39))  # 39 entries at `start`
        now[0] = start + 9.875
        assert both().allowed  # the 40th
        assert not both().allowed  # full: none has left yet
        now[0] = start + 10  # the 39 at `start` leave together, exactly on the edge
        usage = both()
        assert usage.allowed and usage.decisions[0].remaining == 38
        assert usage.decisions[0].reset_seconds == 10  # when start + 9.875 leaves (rounded up)
        now[0] = start + 19.875  # the entry from start + 9.875 leaves, start + 10 stays
        usage = both()
        assert usage.allowed and usage.decisions[0].remaining == 38
        now[0] = start + 40  # all gone: a new log, its only entry the oldest
        usage = both()
        assert usage.allowed and usage.decisions[0].remaining == 39
        assert usage.decisions[0].reset_seconds == 10
    finally:
        shared.close()


def test_long_logs_trimmed_many_entries_at_a_time_decide_like_the_in_process_store(
    redis_url: str,
) -> None:
    """Logs of up to a hundred entries, of which a few or most leave the window at once (the
    Redis log then searches for the first entry still in it): identical decisions."""
    now = [float(math.floor(time.time()))]
    memory = InProcessLimitStore(clock=lambda: now[0])
    shared = RedisLimitStore(redis_url, clock=lambda: now[0], use_redis_time=False)
    name, rate, rng = subject(), RateLimit(100, 10), random.Random(11)
    remaining: set[int] = set()
    try:
        for _ in range(80):
            now[0] += rng.choice([0.015625, 0.125, 0.5, 2.0, 4.5, 9.0])
            for _ in range(rng.randint(1, 40)):  # a burst at one instant
                pair = [
                    s.acquire_sync(subject=name, rate_limit=rate, quota=None)
                    for s in (memory, shared)
                ]
                assert pair[0] == pair[1]
                remaining.add(pair[1].decisions[0].remaining)
    finally:
        shared.close()
    assert 0 in remaining and max(remaining) > 50  # full logs and nearly empty ones


def test_one_script_call_with_mixed_requests_decides_like_the_in_process_store(
    redis_url: str,
) -> None:
    """Requests with different limits, peeks, guards, quotas and repeated subjects answered in
    one script call (one event-loop turn), each in order, as the in-process store would."""
    now = [float(math.floor(time.time()))]
    memory = InProcessLimitStore(clock=lambda: now[0])
    shared = RedisLimitStore(redis_url, clock=lambda: now[0], use_redis_time=False)
    names, address = [subject() for _ in range(3)], subject()
    slow, fast, policy = RateLimit(3, 60), RateLimit(2, 1), RateLimit(2, 30)
    quota, guard = Quota(4, "day"), Guard(address, policy)
    calls: list[tuple[str, dict[str, Any]]] = []
    for n in range(6):
        calls.append(("acquire", {"subject": names[0], "rate_limit": slow, "quota": quota}))
        calls.append(("acquire", {"subject": names[1], "rate_limit": fast, "quota": None}))
        calls.append(("peek", {"subject": names[1], "rate_limit": fast}))
        if n in (1, 2):  # failed authentications from the address
            calls.append(("acquire", {"subject": address, "rate_limit": policy, "quota": None}))
        calls.append(
            ("acquire", {"subject": names[2], "rate_limit": slow, "quota": None, "guard": guard})
        )

    async def in_one_turn(store: LimitStore) -> list[Usage]:
        futures = [getattr(store, method)(**kwargs) for method, kwargs in calls]
        return list(await asyncio.gather(*futures))

    async def main() -> list[Usage]:
        try:
            expected = await in_one_turn(memory)
            assert await in_one_turn(shared) == expected
            # The same again a little later: some entries have left the 1 s window.
            now[0] += 1.5
            expected = await in_one_turn(memory)
            assert await in_one_turn(shared) == expected
        finally:
            await shared.aclose()
        return expected

    expected = asyncio.run(main())
    assert {usage.allowed for usage in expected} == {True, False}
    assert any(usage.blocked_by is not None for usage in expected)


def test_a_full_batch_of_one_key_counts_every_request(redis_url: str) -> None:
    """More requests for one key than a script call takes (`MAX_BATCH`): every admission is a
    distinct log entry, counted in order, and the limit holds exactly."""

    async def main() -> list[Usage]:
        store = RedisLimitStore(redis_url, timeout_seconds=2.0)
        name, rate = subject(), RateLimit(150, 60)
        try:
            calls = [store.acquire(subject=name, rate_limit=rate, quota=None) for _ in range(200)]
            return list(await asyncio.gather(*calls))
        finally:
            await store.aclose()

    results = asyncio.run(main())
    assert [usage.allowed for usage in results] == [True] * 150 + [False] * 50
    assert [usage.decisions[0].remaining for usage in results[:150]] == list(range(149, -1, -1))


def test_logs_and_quota_counters_expire_as_before(redis_url: str) -> None:
    """A rate log expires soon after its newest entry leaves the window (here, 1 s windows, within
    a quarter of a window); a quota counter at its period's end plus slack, set when created and
    kept by later admissions."""
    prefix = f"test-{random_suffix()}:"
    store = RedisLimitStore(redis_url, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    name, rate, quota = subject(), RateLimit(5, 1), Quota(10, "day")
    rate_key = f"{prefix}{{{name}}}:entries"
    window = quota_window("day", time.time())
    quota_key = f"{prefix}{{{name}}}:quota:{window.period_id}"
    quota_expiry_ms = window.end * 1000 + QUOTA_EXPIRY_SLACK_MS
    try:
        for _ in range(3):
            assert store.acquire_sync(subject=name, rate_limit=rate, quota=quota).allowed
            assert 1000 < client.pttl(rate_key) <= 1250
            left = quota_expiry_ms - time.time() * 1000
            assert left - 5000 < client.pttl(quota_key) <= left + 5000
        assert client.get(quota_key) == b"3"
        time.sleep(1.3)
        assert not client.exists(rate_key)
        assert client.exists(quota_key)
    finally:
        store.close()
        client.delete(rate_key, quota_key)
        client.close()


def test_a_log_expiry_is_set_once_per_step_and_always_outlives_its_newest_entry(
    redis_url: str,
) -> None:
    """Appends within one second (the step for windows of 8 s and more) leave the expiry the
    step's first append set, to two steps past it plus the window; the first append of the next
    step moves it on. (An injected clock, so the steps are exact; the test takes milliseconds of
    real time, in which the TTLs barely move.)"""
    start = float(math.floor(time.time()))
    now = [start]
    store = RedisLimitStore(redis_url, clock=lambda: now[0], use_redis_time=False)
    client = redis.Redis.from_url(redis_url)
    name, rate = subject(), RateLimit(100, 10)
    key = f"keyrack:limits:{{{name}}}:entries"
    ttls = []
    try:
        for offset in (0.1, 0.4, 0.9, 1.05, 1.5, 2.95):
            now[0] = start + offset
            assert store.acquire_sync(subject=name, rate_limit=rate, quota=None).allowed
            ttl = client.pttl(key) / 1000
            assert ttl > 10 - offset  # it outlives the newest entry (at `offset`)
            ttls.append(ttl)
        # set at 0.1 to 2 + 10 s (11.9 s from then); kept at 0.4 and 0.9; set at 1.05 to
        # 3 + 10 s; kept at 1.5; set at 2.95 to 4 + 10 s
        assert ttls == pytest.approx([11.9, 11.9, 11.9, 11.95, 11.95, 11.05], abs=0.05)
    finally:
        store.close()
        client.delete(key)
        client.close()


def test_an_instance_whose_clock_is_behind_appends_after_the_newest_entry(redis_url: str) -> None:
    """Instances with injected clocks, one 5 s ahead: entries stay in order (the later one is
    stamped with the newest entry's time), so none leaves the window early, and the log outlives
    them all."""
    start = float(math.floor(time.time())) + 0.5
    ahead = RedisLimitStore(redis_url, clock=lambda: start + 5, use_redis_time=False)
    behind = RedisLimitStore(redis_url, clock=lambda: start, use_redis_time=False)
    client = redis.Redis.from_url(redis_url)
    name, rate = subject(), RateLimit(3, 10)
    key = f"keyrack:limits:{{{name}}}:entries"
    try:
        for store in (ahead, behind, ahead, behind):  # one short log, then a long one
            store.acquire_sync(subject=name, rate_limit=rate, quota=None)
        assert client.lrange(key, 0, -1) == [str(int((start + 5) * 1000)).encode()] * 3
        assert client.pttl(key) > 14_000  # ahead's clock plus the window, seen from behind's
        refused = behind.acquire_sync(subject=name, rate_limit=rate, quota=None)
        assert not refused.allowed and refused.decisions[0].retry_after == 15
        assert client.llen(key) == 3  # the refused append was taken back
    finally:
        ahead.close()
        behind.close()
        client.delete(key)
        client.close()


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


def test_requests_gather_into_batches_while_earlier_ones_are_out(redis_url: str) -> None:
    """Group commit: while a script call is out, the next requests gather; once EARLY_BATCH
    have, they go too (two calls out at most), and the rest wait for the first answer. So a
    busy worker sends few, large batches, and Redis works on one while the worker serves the
    other's callers. Counts stay in order: Redis runs the calls in the order they were sent."""
    rate = RateLimit(limit=1000, window_seconds=60)

    async def main() -> list[int]:
        store = RedisLimitStore(redis_url, timeout_seconds=2.0)
        name = subject()
        await store.acquire(subject=name, rate_limit=rate, quota=None)  # connects
        pipeline = store._pipeline
        assert pipeline is not None
        sent: list[int] = []
        held: list[tuple[Any, Any]] = []
        call = pipeline.call

        def counted(args: Any, on_reply: Any) -> None:
            sent.append(str(args[1]).count(",") + 1)  # requests in this call
            if len(sent) <= 2:  # the first two answers are held until released
                call(args, lambda reply: held.append((on_reply, reply)))
            else:
                call(args, on_reply)

        pipeline.call = counted  # type: ignore[method-assign]
        first = store.acquire(subject=name, rate_limit=rate, quota=None)
        await asyncio.sleep(0)  # its batch goes out
        rest = []
        for _ in range(5):  # requests over five event-loop turns
            rest += [store.acquire(subject=name, rate_limit=rate, quota=None) for _ in range(10)]
            await asyncio.sleep(0)
        for _ in range(2000):  # both answers arrive (held), within two seconds
            if len(held) == 2:
                break
            await asyncio.sleep(0.001)
        assert sent == [1, EARLY_BATCH]  # the rest wait for an answer
        for on_reply, reply in held:
            on_reply(reply)
        usages = await asyncio.gather(first, *rest)
        assert all(usage.allowed for usage in usages)
        assert [u.decisions[0].remaining for u in usages] == list(range(998, 947, -1))
        await store.aclose()
        return sent

    assert asyncio.run(main()) == [1, EARLY_BATCH, 50 - EARLY_BATCH]


def test_a_failing_waiter_does_not_keep_the_others_of_its_batch_waiting(redis_url: str) -> None:
    async def main() -> list[Any]:
        store = RedisLimitStore(redis_url, timeout_seconds=2.0)
        name, rate = subject(), RateLimit(10, 60)
        got: list[Any] = []

        def broken(outcome: Any) -> None:
            raise RuntimeError("a bug in one waiter")

        store.acquire_then(broken, subject=name, rate_limit=rate, quota=None)
        store.acquire_then(got.append, subject=name, rate_limit=rate, quota=None)
        last = store.acquire(subject=name, rate_limit=rate, quota=None)
        got.append(await last)
        await store.aclose()
        return got

    first, last = asyncio.run(main())
    assert first.allowed and first.decisions[0].remaining == 8  # the broken one counted first
    assert last.allowed and last.decisions[0].remaining == 7


def test_a_kept_request_follows_its_key_s_new_limits_and_the_quota_s_new_day(
    redis_url: str,
) -> None:
    """`acquire_then` reuses a subject's part of the script call: a key given new limits (new
    objects, as the key cache hands out after a change) is checked against them at once, and a
    quota counts in the new day's period from the first request after midnight."""
    day_start = float(math.floor(time.time() / 86_400) * 86_400)
    now = [day_start + 86_399.5]  # half a second before midnight (UTC)

    async def main() -> list[tuple[bool, int]]:
        store = RedisLimitStore(redis_url, clock=lambda: now[0], use_redis_time=False)
        name, answers = subject(), []

        async def acquire(rate_limit: RateLimit | None, quota: Quota | None) -> None:
            done: asyncio.Future[Usage | BaseException] = asyncio.Future()
            store.acquire_then(done.set_result, subject=name, rate_limit=rate_limit, quota=quota)
            usage = await done
            assert isinstance(usage, Usage)
            answers.append((usage.allowed, usage.decisions[-1].remaining))

        for _ in range(3):
            await acquire(RateLimit(2, 60), None)  # the third is over the limit
        await acquire(RateLimit(3, 60), None)  # raised: a new object, checked at once
        quota = Quota(1, "day")
        await acquire(None, quota)
        await acquire(None, quota)  # the day's one request is used
        now[0] += 1  # past midnight: a new period, a new counter
        await acquire(None, quota)
        await store.aclose()
        return answers

    assert asyncio.run(main()) == [
        (True, 1), (True, 0), (False, 0), (True, 0), (True, 0), (False, 0), (True, 0),
    ]  # fmt: skip
