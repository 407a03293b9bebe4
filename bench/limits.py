"""The usage limiter's own cost, in-process and on Redis, async (as /verify will call it).

Reference for the later `/verify` benchmark: what one `UsageLimiter.enforce` with a rate limit,
a quota and the caller address's failed-login block adds per request.
Run: `.venv/bin/python bench/limits.py [--redis-url URL]` (default `KEYRACK_REDIS_URL`, else
redis://127.0.0.1:6379/0; without Redis only in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

from keyrack.domain.limits import Quota, RateLimit
from keyrack.service.limits import AuthFailureThrottle, LimitStore, UsageLimiter
from keyrack.store.limits_memory import InProcessLimitStore
from keyrack.store.limits_redis import RedisLimitStore

RATE = RateLimit(limit=100_000, window_seconds=1)  # generous: measure the admitted path
QUOTA = Quota(limit=10**9, period="month")
KEYS = 1_000
ADDRESS = "192.0.2.10"  # the caller's failed-login block is checked in the same call


async def sequential(
    limiter: UsageLimiter, calls: int, run: str
) -> tuple[float, float, list[float]]:
    """Calls one after another: calls/s, this process's CPU µs per call, per-call latencies."""
    latencies = []
    cpu = time.process_time()
    started = time.perf_counter()
    for n in range(calls):
        before = time.perf_counter()
        await limiter.enforce(
            key_id=f"key-{run}-{n % KEYS}", rate_limit=RATE, quota=QUOTA, address=ADDRESS
        )
        latencies.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    return calls / elapsed, (time.process_time() - cpu) / calls * 1e6, latencies


async def concurrent(
    limiter: UsageLimiter, calls: int, tasks: int, run: str
) -> tuple[float, float]:
    """`tasks` callers at once (as concurrent requests in one worker would be): calls/s and
    this process's CPU µs per call."""

    async def caller(offset: int) -> None:
        for n in range(calls // tasks):
            await limiter.enforce(
                key_id=f"key-{run}-{(offset + n) % KEYS}",
                rate_limit=RATE,
                quota=QUOTA,
                address=ADDRESS,
            )

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(caller(t * 7) for t in range(tasks)))
    done = calls // tasks * tasks
    return done / (time.perf_counter() - started), (time.process_time() - cpu) / done * 1e6


async def noop_baseline(calls: int) -> float:
    async def nothing() -> None:
        return None

    started = time.perf_counter()
    for _ in range(calls):
        await nothing()
    return calls / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] * 1e6


async def measure(name: str, store: LimitStore, calls: int, rows: list[str]) -> None:
    limiter = UsageLimiter(store, auth_throttle=AuthFailureThrottle(store))
    run = uuid.uuid4().hex[:8]
    await sequential(limiter, min(calls, 2_000), run + "w")  # warm up (connections, script)
    rate, cpu, latencies = await sequential(limiter, calls, run)
    rows.append(
        f"| {name}, sequential | {rate:,.0f} | {cpu:.1f} "
        f"| {statistics.median(latencies) * 1e6:.1f} | {pct(latencies, 0.99):.1f} |"
    )
    rate32, cpu32 = await concurrent(limiter, calls, 32, run)
    rows.append(f"| {name}, 32 concurrent callers | {rate32:,.0f} | {cpu32:.1f} | | |")
    await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("KEYRACK_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--calls", type=int, default=100_000, help="in-process calls")
    parser.add_argument("--redis-calls", type=int, default=10_000)
    args = parser.parse_args()
    rows = [
        "| limiter (rate limit + monthly quota + address block, 1,000 keys) | calls/s "
        "| CPU µs/call | p50 µs | p99 µs |",
        "|---|---|---|---|---|",
        f"| baseline: an empty `await` | {await noop_baseline(args.calls):,.0f} | | | |",
    ]
    await measure("in-process", InProcessLimitStore(), args.calls, rows)
    redis_store = RedisLimitStore(args.redis_url, timeout_seconds=1.0, failure_mode="closed")
    try:
        await measure("Redis (Lua, loopback)", redis_store, args.redis_calls, rows)
    except Exception as error:
        rows.append(f"| Redis: not measured ({type(error).__name__}: {error}) | | | | |")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
