"""The Redis limit store: one Lua script checks and counts atomically, so any number of
keyrack instances sharing one Redis together never admit more than a limit.

Time comes from Redis (`TIME` inside the script) so instances with drifting clocks still share
one sliding window; quota periods are named from the local clock (at a period boundary a
drifting instance may count a request in the neighbouring period).

When Redis cannot be reached within the timeout the configured failure mode decides: `open`
admits unchecked (`Usage.degraded`), `closed` raises `ServiceUnavailable` (503). After a
failure Redis is left alone for `retry_interval` seconds, so an outage costs each request
nothing rather than a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from keyrack.domain.errors import ServiceUnavailable
from keyrack.domain.limits import (
    Decision,
    Quota,
    RateLimit,
    quota_decision,
    quota_window,
    rate_decision,
)
from keyrack.logs import ThrottledLog
from keyrack.service.limits import Usage

FailureMode = Literal["open", "closed"]
log = logging.getLogger("keyrack.limits")

# KEYS: rate log (sorted set of admissions scored by ms), quota counter.
# ARGV: rate limit (0: none), window ms, unique member, quota limit (0: none),
#       quota expiry (Unix ms), "1" to only look (peek), now ms ("" to use Redis TIME).
# Returns: rate ok, rate count, oldest ms (-1: none), quota ok, quota used, now ms.
ACQUIRE_LUA = """
local now
if ARGV[7] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[7])
end
local rate_limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local quota_limit = tonumber(ARGV[4])
local rate_ok, rate_count, quota_ok, quota_used = 1, 0, 1, 0
if rate_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  rate_count = redis.call('ZCARD', KEYS[1])
  if rate_count >= rate_limit then rate_ok = 0 end
end
if quota_limit > 0 then
  quota_used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if quota_used >= quota_limit then quota_ok = 0 end
end
if rate_ok == 1 and quota_ok == 1 and ARGV[6] ~= '1' then
  if rate_limit > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    rate_count = rate_count + 1
  end
  if quota_limit > 0 then
    quota_used = redis.call('INCR', KEYS[2])
    redis.call('PEXPIREAT', KEYS[2], ARGV[5])
  end
end
local oldest = -1
if rate_count > 0 then
  oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
end
return {rate_ok, rate_count, oldest, quota_ok, quota_used, now}
"""

# Quota counters outlive their period by this much, so a late request still finds them.
QUOTA_EXPIRY_SLACK_MS = 3_600_000


class RedisLimitStore:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 0.25,
        failure_mode: FailureMode = "open",
        retry_interval_seconds: float = 1.0,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        use_redis_time: bool = True,
        prefix: str = "keyrack:limits:",
    ) -> None:
        self._url = url
        self._timeout = timeout_seconds
        self.failure_mode: FailureMode = failure_mode
        self._retry_interval = retry_interval_seconds
        self._on_failure = on_failure
        self._clock = clock
        self._use_redis_time = use_redis_time
        self._prefix = prefix
        self._warn = ThrottledLog(log)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._async: tuple[redis.asyncio.Redis, Any] | None = None
        self._sync: tuple[redis.Redis, Any] | None = None
        self.failures = 0

    # -- the LimitStore interface

    async def acquire(
        self, *, subject: str, rate_limit: RateLimit | None, quota: Quota | None
    ) -> Usage:
        return await self._run_async(subject, rate_limit, quota, peek=False)

    def acquire_sync(
        self, *, subject: str, rate_limit: RateLimit | None, quota: Quota | None
    ) -> Usage:
        return self._run_sync(subject, rate_limit, quota, peek=False)

    async def peek(self, *, subject: str, rate_limit: RateLimit) -> Usage:
        return await self._run_async(subject, rate_limit, None, peek=True)

    def peek_sync(self, *, subject: str, rate_limit: RateLimit) -> Usage:
        return self._run_sync(subject, rate_limit, None, peek=True)

    async def aclose(self) -> None:
        if self._async is not None:
            client, self._async = self._async[0], None
            await client.aclose()
        self.close()

    def close(self) -> None:
        if self._sync is not None:
            client, self._sync = self._sync[0], None
            client.close()

    # -- internals

    def _script_args(
        self, subject: str, rate_limit: RateLimit | None, quota: Quota | None, *, peek: bool
    ) -> tuple[list[str], list[str | int]]:
        now = self._clock()
        period_id, expires_ms = "none", 0
        if quota is not None:
            window = quota_window(quota.period, now)
            period_id, expires_ms = window.period_id, int(window.end * 1000) + QUOTA_EXPIRY_SLACK_MS
        tag = f"{self._prefix}{{{subject}}}"  # one hash slot per subject (Redis Cluster)
        keys = [f"{tag}:rate", f"{tag}:quota:{period_id}"]
        args: list[str | int] = [
            rate_limit.limit if rate_limit else 0,
            rate_limit.window_seconds * 1000 if rate_limit else 0,
            secrets.token_hex(8),
            quota.limit if quota else 0,
            expires_ms,
            "1" if peek else "0",
            "" if self._use_redis_time else int(now * 1000),
        ]
        return keys, args

    @staticmethod
    def _usage(reply: list[int], rate_limit: RateLimit | None, quota: Quota | None) -> Usage:
        rate_ok, rate_count, oldest_ms, quota_ok, quota_used, now_ms = (int(x) for x in reply)
        now = now_ms / 1000
        decisions: list[Decision] = []
        if rate_limit is not None:
            decisions.append(
                rate_decision(
                    rate_limit,
                    allowed=bool(rate_ok),
                    count=rate_count,
                    oldest=oldest_ms / 1000 if oldest_ms >= 0 else None,
                    now=now,
                )
            )
        if quota is not None:
            decisions.append(
                quota_decision(quota, allowed=bool(quota_ok), used=quota_used, now=now)
            )
        return Usage(decisions=tuple(decisions))

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _unavailable(self, reason: str, error: BaseException | None) -> Usage:
        """Apply the failure mode; counted, reported to the metrics hook, logged sparingly."""
        with self._lock:
            self.failures += 1
            if error is not None:
                self._down_until = time.monotonic() + self._retry_interval
        if self._on_failure is not None:
            self._on_failure(reason)
        if error is not None:
            self._warn.warning(
                "usage limits: Redis unreachable (%s: %s); failing %s for the next %.1fs",
                type(error).__name__,
                error,
                self.failure_mode,
                self._retry_interval,
            )
        if self.failure_mode == "open":
            return Usage(degraded=True)
        raise ServiceUnavailable("usage limits cannot be checked right now; retry shortly")

    def _async_script(self) -> Any:
        if self._async is None:
            client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=AsyncRetry(NoBackoff(), 0),
            )
            self._async = (client, client.register_script(ACQUIRE_LUA))
        return self._async[1]

    def _sync_script(self) -> Any:
        with self._lock:
            if self._sync is None:
                client = redis.Redis.from_url(
                    self._url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=Retry(NoBackoff(), 0),
                )
                self._sync = (client, client.register_script(ACQUIRE_LUA))
            return self._sync[1]

    async def _run_async(
        self, subject: str, rate_limit: RateLimit | None, quota: Quota | None, *, peek: bool
    ) -> Usage:
        if self._is_down():
            return self._unavailable("skipped", None)
        keys, args = self._script_args(subject, rate_limit, quota, peek=peek)
        try:
            # A hard ceiling on top of the socket timeouts (connect, then a possible NOSCRIPT
            # reload, each get their own timeout).
            async with asyncio.timeout(self._timeout * 3):
                reply = await self._async_script()(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            return self._unavailable("unreachable", error)
        return self._usage(reply, rate_limit, quota)

    def _run_sync(
        self, subject: str, rate_limit: RateLimit | None, quota: Quota | None, *, peek: bool
    ) -> Usage:
        if self._is_down():
            return self._unavailable("skipped", None)
        keys, args = self._script_args(subject, rate_limit, quota, peek=peek)
        try:
            reply = self._sync_script()(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            return self._unavailable("unreachable", error)
        return self._usage(reply, rate_limit, quota)
