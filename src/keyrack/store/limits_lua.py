"""The Lua script behind the Redis limit store, and how its arguments and reply are laid out.

One call handles a batch of requests (one per subject, possibly the same subject twice), each
checked and counted in order, atomically: Redis runs a script to the end before anything else.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
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
# making log members unique; ARGV[3]: per request seven numbers, space-separated, requests
# comma-separated: rate limit (0: none), window ms, quota limit (0: none), quota expiry (Unix
# ms), 1 to only look (peek), guard limit (0: none), guard window ms; ARGV[4]: per request three
# key names, space-separated: its rate log (a sorted set of admissions scored in ms), quota
# counter and guard log (a rate log only looked at).
# (Numbers and key names are packed into one string each rather than passed as KEYS: encoding
# arguments is most of the client's cost per request. That is fine on one Redis, which this
# store needs anyway (see limits_redis.py), and never on Redis Cluster.)
# Reply: per request rate ok, rate count, oldest ms (-1: none), quota ok, quota used,
# guard ok, guard count, guard oldest ms; then now.
#
# Per rate-limited request: ZREMRANGEBYSCORE (entries at or before now - window leave the log),
# ZCARD, when admitted ZADD and PEXPIRE (the log expires one window after its last admission),
# then ZRANGE for the oldest entry unless the new one is the log's only entry. A guard: the
# same without ZADD and PEXPIRE, ZRANGE only when it blocks. A quota: GET, when admitted INCR,
# and PEXPIREAT only when INCR created the counter (its expiry follows from its name's period).
# Besides those commands Lua's allocations cost most (each string or table about a cheap
# command), hence: numbers parsed once per distinct group and passed as strings formatted once,
# the nonce alone naming a log's first entry of the call, the reply allocated at its full size.
# Reading the oldest entries first to skip ZREMRANGEBYSCORE measured slower; skipping PEXPIRE
# would need the key's expiry (an instance running an older script may have shortened it).
ACQUIRE_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local call, find, sub, format = redis.call, string.find, string.sub, string.format
local now_s = format('%d', now)
local numbers, names, nonce = ARGV[3], ARGV[4], ARGV[2]
-- A batch's requests mostly share their limits: each distinct group of numbers is parsed once,
-- into rate limit, window, its horizon, quota limit, quota expiry, peek, guard limit, horizon.
local specs = {}
local function spec_of(text)
  local _, _, rate, window, quota, expiry, peek, guard, guard_window =
    find(text, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  local spec = {
    tonumber(rate), window, format('%d', now - tonumber(window)), tonumber(quota), expiry,
    peek == '1', tonumber(guard), format('%d', now - tonumber(guard_window)),
  }
  specs[text] = spec
  return spec
end
local function window_count(key, horizon)
  call('ZREMRANGEBYSCORE', key, '-inf', horizon)
  return call('ZCARD', key)
end
local function oldest_of(key)
  return tonumber(call('ZRANGE', key, '0', '0', 'WITHSCORES')[2])
end
-- The reply holds 8 numbers per request and now: a table built from that many values is
-- allocated once (grown one by one, it is reallocated at every power of two). Each request's
-- numbers take at least 13 characters and a comma, so ARGV[3] has enough bytes to build it
-- from (string.byte returns up to about 8,000 values: batches up to 999 requests).
local requests = 0
if numbers ~= '' then
  local comma = 0
  repeat
    requests = requests + 1
    comma = find(numbers, ',', comma + 1, true)
  until comma == nil
end
local reply, n = {string.byte(numbers, 1, 8 * requests + 1)}, 0
local p, q = 1, 1
for i = 0, requests - 1 do
  local comma = find(numbers, ',', p, true) or #numbers + 1
  local text = sub(numbers, p, comma - 1)
  p = comma + 1
  local spec = specs[text] or spec_of(text)
  local rate_limit, quota_limit, guard_limit = spec[1], spec[4], spec[7]
  local space1 = find(names, ' ', q, true)
  local space2 = find(names, ' ', space1 + 1, true)
  local space3 = find(names, ' ', space2 + 1, true) or #names + 1
  local rate_key, quota_key, guard_key
  local rate_ok, rate_count, oldest, quota_ok, quota_used = 1, 0, -1, 1, 0
  local guard_ok, guard_count, guard_oldest = 1, 0, -1
  if guard_limit > 0 then
    guard_key = sub(names, space2 + 1, space3 - 1)
    guard_count = window_count(guard_key, spec[8])
    if guard_count >= guard_limit then guard_ok = 0 end
  end
  if rate_limit > 0 then
    rate_key = sub(names, q, space1 - 1)
    rate_count = window_count(rate_key, spec[3])
    if rate_count >= rate_limit then rate_ok = 0 end
  end
  if quota_limit > 0 then
    quota_key = sub(names, space1 + 1, space2 - 1)
    quota_used = tonumber(call('GET', quota_key) or '0')
    if quota_used >= quota_limit then quota_ok = 0 end
  end
  q = space3 + 1
  if guard_ok == 1 and rate_ok == 1 and quota_ok == 1 and not spec[6] then
    if rate_limit > 0 then
      -- Members only need to differ within a log, and the nonce is unique to the call: it
      -- names the call's first entry in a log, a later one (the same key again) adds its place.
      if call('ZADD', rate_key, now_s, nonce) == 0 then
        call('ZADD', rate_key, now_s, nonce .. '-' .. i)
      end
      call('PEXPIRE', rate_key, spec[2])
      rate_count = rate_count + 1
      -- The log was empty: the new entry is its oldest.
      if rate_count == 1 then oldest = now end
    end
    if quota_limit > 0 then
      quota_used = call('INCR', quota_key)
      -- Whoever created the counter gave it this same expiry.
      if quota_used == 1 then call('PEXPIREAT', quota_key, spec[5]) end
    end
  end
  if oldest == -1 and rate_count > 0 then oldest = oldest_of(rate_key) end
  if guard_ok == 0 then guard_oldest = oldest_of(guard_key) end
  reply[n + 1] = rate_ok
  reply[n + 2] = rate_count
  reply[n + 3] = oldest
  reply[n + 4] = quota_ok
  reply[n + 5] = quota_used
  reply[n + 6] = guard_ok
  reply[n + 7] = guard_count
  reply[n + 8] = guard_oldest
  n = n + 8
end
reply[n + 1] = now
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


class Nonces:
    """A nonce per script call: this process's random prefix and a counter. A random token per
    call would cost a `getrandom` system call each; a forked child draws a prefix of its own."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_NONCES = Nonces()


def script_call(
    requests: Sequence[ScriptRequest], *, now_ms: int | None
) -> tuple[list[str], list[int | str]]:
    names = " ".join(" ".join(request.keys) for request in requests)
    numbers = ",".join(request.numbers for request in requests)
    # The nonce (plus the position in the batch when a log takes several) makes every admission
    # a distinct log member.
    return [], ["" if now_ms is None else now_ms, _NONCES.next(), numbers, names]


def usages(requests: Sequence[ScriptRequest], reply: Sequence[int]) -> list[Usage]:
    now = int(reply[-1]) / 1000
    results = []
    for n, request in enumerate(requests):
        # Lua numbers come back as Redis integers, so already Python ints.
        rate_ok, rate_count, oldest_ms, quota_ok, quota_used, guard_ok, guard_count, guard_ms = (
            reply[8 * n : 8 * n + 8]
        )
        rate_limit, quota = request.rate_limit, request.quota
        decisions: tuple[Decision, ...] = ()
        if rate_limit is not None:
            oldest = oldest_ms / 1000 if oldest_ms >= 0 else None
            rate = rate_decision(
                rate_limit, allowed=bool(rate_ok), count=rate_count, oldest=oldest, now=now
            )
            decisions = (rate,)
        if quota is not None:
            used = quota_decision(quota, allowed=bool(quota_ok), used=quota_used, now=now)
            decisions = (*decisions, used)
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
        results.append(Usage(decisions, False, blocked_by))
    return results
