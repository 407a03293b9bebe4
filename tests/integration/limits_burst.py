"""A burst from one OS process against the shared Redis store; prints how many were admitted.

Usage: python -m tests.integration.limits_burst URL SUBJECT LIMIT CALLS START_AT
(START_AT: a Unix time, so that several processes fire together).
"""

from __future__ import annotations

import asyncio
import sys
import time

from keyrack.domain.limits import Quota, RateLimit
from keyrack.store.limits_redis import RedisLimitStore


async def burst(url: str, subject: str, limit: int, calls: int, start_at: float) -> int:
    store = RedisLimitStore(url, timeout_seconds=2.0)
    rate = RateLimit(limit=limit, window_seconds=3600)
    quota = Quota(limit=limit + 1000, period="month")
    await store.acquire(subject="warm-up", rate_limit=None, quota=None)  # connect first
    await asyncio.sleep(max(0.0, min(5.0, start_at - time.time())))
    results = await asyncio.gather(
        *(store.acquire(subject=subject, rate_limit=rate, quota=quota) for _ in range(calls))
    )
    await store.aclose()
    if any(usage.degraded for usage in results):
        raise SystemExit("redis was unreachable during the burst")
    return sum(usage.allowed for usage in results)


if __name__ == "__main__":
    url, subject, limit, calls, start_at = sys.argv[1:6]
    print(asyncio.run(burst(url, subject, int(limit), int(calls), float(start_at))))
