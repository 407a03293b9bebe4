"""The Lua script behind the Redis limit store, and how its arguments and reply are laid out.

One call handles a batch of requests (one per subject, possibly the same subject twice), each
checked and counted in order, atomically: Redis runs a script to the end before anything else.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from keyrack.domain.limits import (
    AUTH_FAILURE_POLICY,
    Decision,
    Quota,
    RateLimit,
    quota_decision,
    quota_window,
    rate_decision,
)
from keyrack.service.limits import Guard, Usage

# ARGV[1]: now in ms, or "" for Redis TIME (one clock for every instance); ARGV[2]: a nonce
# making log members unique; ARGV[3]: per request seven numbers, space-separated: rate limit
# (0: none), window ms, quota limit (0: none), quota expiry (Unix ms), 1 to only look (peek),
# guard limit (0: none), guard window ms; ARGV[4]: per request three key names,
# space-separated: its rate log (a sorted set of admissions scored in ms), quota counter and
# guard log (a rate log only looked at).
# (Numbers and key names are packed into one string each rather than passed as KEYS: encoding
# arguments is most of the client's cost per request. That is fine on one Redis, which this
# store needs anyway (see limits_redis.py), and never on Redis Cluster.)
# Reply: per request rate ok, rate count, oldest ms (-1: none), quota ok, quota used,
# guard ok, guard count, guard oldest ms; then now.
ACQUIRE_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local numbers = {}
for word in string.gmatch(ARGV[3], '%S+') do numbers[#numbers + 1] = tonumber(word) end
local names = {}
for word in string.gmatch(ARGV[4], '%S+') do names[#names + 1] = word end
local function window_count(key, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  return redis.call('ZCARD', key)
end
local function oldest_of(key, count)
  if count == 0 then return -1 end
  return tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
end
local reply = {}
for i = 0, #names / 3 - 1 do
  local rate_key, quota_key, guard_key = names[3 * i + 1], names[3 * i + 2], names[3 * i + 3]
  local a = 7 * i
  local rate_limit, window = numbers[a + 1], numbers[a + 2]
  local quota_limit, quota_expiry, peek = numbers[a + 3], numbers[a + 4], numbers[a + 5]
  local guard_limit, guard_window = numbers[a + 6], numbers[a + 7]
  local rate_ok, rate_count, quota_ok, quota_used = 1, 0, 1, 0
  local guard_ok, guard_count = 1, 0
  if guard_limit > 0 then
    guard_count = window_count(guard_key, guard_window)
    if guard_count >= guard_limit then guard_ok = 0 end
  end
  if rate_limit > 0 then
    rate_count = window_count(rate_key, window)
    if rate_count >= rate_limit then rate_ok = 0 end
  end
  if quota_limit > 0 then
    quota_used = tonumber(redis.call('GET', quota_key) or '0')
    if quota_used >= quota_limit then quota_ok = 0 end
  end
  if guard_ok == 1 and rate_ok == 1 and quota_ok == 1 and peek ~= 1 then
    if rate_limit > 0 then
      redis.call('ZADD', rate_key, now, ARGV[2] .. '-' .. i)
      redis.call('PEXPIRE', rate_key, window)
      rate_count = rate_count + 1
    end
    if quota_limit > 0 then
      quota_used = redis.call('INCR', quota_key)
      redis.call('PEXPIREAT', quota_key, string.format('%d', quota_expiry))
    end
  end
  reply[#reply + 1] = rate_ok
  reply[#reply + 1] = rate_count
  reply[#reply + 1] = oldest_of(rate_key, rate_count)
  reply[#reply + 1] = quota_ok
  reply[#reply + 1] = quota_used
  reply[#reply + 1] = guard_ok
  reply[#reply + 1] = guard_count
  reply[#reply + 1] = guard_ok == 1 and -1 or oldest_of(guard_key, guard_count)
end
reply[#reply + 1] = now
return reply
"""

# Quota counters outlive their period by this much, so a late request still finds them.
QUOTA_EXPIRY_SLACK_MS = 3_600_000


@dataclass(frozen=True)
class ScriptRequest:
    """One request's part of a script call."""

    keys: tuple[str, str, str]
    numbers: str
    rate_limit: RateLimit | None
    quota: Quota | None
    guard: Guard | None


def script_request(
    *,
    prefix: str,
    subject: str,
    rate_limit: RateLimit | None,
    quota: Quota | None,
    peek: bool,
    now: float,
    guard: Guard | None = None,
) -> ScriptRequest:
    """Quota periods are named from the local clock `now` (a drifting instance may count a
    request at a period boundary in the neighbouring period)."""
    day = math.floor(now / 86_400) if quota is not None else 0
    return _script_request(prefix, subject, rate_limit, quota, peek, guard, day)


# A key asks with the same arguments on every request (its quota's period changes once a day at
# most), so each request's part of the script call is built once and reused.
@functools.lru_cache(maxsize=65_536)
def _script_request(
    prefix: str,
    subject: str,
    rate_limit: RateLimit | None,
    quota: Quota | None,
    peek: bool,
    guard: Guard | None,
    day: int,
) -> ScriptRequest:
    period_id, expires_ms = "none", 0
    if quota is not None:
        window = quota_window(quota.period, day * 86_400)
        period_id, expires_ms = window.period_id, int(window.end * 1000) + QUOTA_EXPIRY_SLACK_MS
    tag = f"{prefix}{{{subject}}}"
    guard_key = f"{prefix}{{{guard.subject}}}:rate" if guard else f"{tag}:guard-none"
    return ScriptRequest(
        keys=(f"{tag}:rate", f"{tag}:quota:{period_id}", guard_key),
        numbers=(
            f"{rate_limit.limit if rate_limit else 0} "
            f"{rate_limit.window_seconds * 1000 if rate_limit else 0} "
            f"{quota.limit if quota else 0} {expires_ms} {1 if peek else 0} "
            f"{guard.rate_limit.limit if guard else 0} "
            f"{guard.rate_limit.window_seconds * 1000 if guard else 0}"
        ),
        rate_limit=rate_limit,
        quota=quota,
        guard=guard,
    )


def script_call(
    requests: Sequence[ScriptRequest], *, now_ms: int | None
) -> tuple[list[str], list[int | str]]:
    names = " ".join(" ".join(request.keys) for request in requests)
    numbers = " ".join(request.numbers for request in requests)
    # The nonce plus the position in the batch makes every admission a distinct log member.
    return [], ["" if now_ms is None else now_ms, secrets.token_hex(8), numbers, names]


def usages(requests: Sequence[ScriptRequest], reply: Sequence[int]) -> list[Usage]:
    now = int(reply[-1]) / 1000
    results = []
    for n, request in enumerate(requests):
        # Lua numbers come back as Redis integers, so already Python ints.
        rate_ok, rate_count, oldest_ms, quota_ok, quota_used, guard_ok, guard_count, guard_ms = (
            reply[8 * n : 8 * n + 8]
        )
        decisions: list[Decision] = []
        if request.rate_limit is not None:
            decisions.append(
                rate_decision(
                    request.rate_limit,
                    allowed=bool(rate_ok),
                    count=rate_count,
                    oldest=oldest_ms / 1000 if oldest_ms >= 0 else None,
                    now=now,
                )
            )
        if request.quota is not None:
            decisions.append(
                quota_decision(request.quota, allowed=bool(quota_ok), used=quota_used, now=now)
            )
        blocked_by = None
        if request.guard is not None and not guard_ok:
            blocked_by = rate_decision(
                request.guard.rate_limit,
                allowed=False,
                count=guard_count,
                oldest=guard_ms / 1000,
                now=now,
                policy=AUTH_FAILURE_POLICY,
            )
        results.append(Usage(decisions=tuple(decisions), blocked_by=blocked_by))
    return results
