"""The Lua script behind the Redis limit store, and how its arguments and reply are laid out.

One call handles a batch of requests (one per subject, possibly the same subject twice), each
checked and counted in order, atomically: Redis runs a script to the end before anything else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from keyrack.domain.limits import (
    AUTH_FAILURE_POLICY,
    RATE_POLICY,
    Decision,
    Quota,
    RateLimit,
    quota_decision,
    quota_window,
    rate_decision,
)
from keyrack.service.limits import Guard, Usage

# ARGV[1]: now in ms, or "" for Redis TIME (one clock for every instance); ARGV[2]: per request
# seven numbers, space-separated, requests comma-separated: rate limit (0: none), window ms,
# quota limit (0: none), quota expiry (Unix ms), 1 to only look (peek), guard limit (0: none),
# guard window ms; ARGV[3]: per request three key names, space-separated: its rate log, quota
# counter and guard log (a rate log only looked at).
# (Numbers and key names are packed into one string each rather than passed as KEYS: encoding
# arguments is most of the client's cost per request. That is fine on one Redis, which this
# store needs anyway (see limits_redis.py), and never on Redis Cluster.)
# Reply: per request rate ok, rate count, oldest ms (-1: none), quota ok, quota used,
# guard ok, guard count, guard oldest ms; then now.
#
# A rate log is a list of its admissions' times in ms, oldest first: appended at the tail,
# trimmed at the head, it needs no unique members, no sorted-set index and no separate query
# for its oldest entry. Measured against the sorted set it replaced (bench/bench_limit_script.py
# as of commit 392af59): about the same Redis time per request (0.91-1.16 of it), a tenth of the
# memory per admission.
# Per rate-limited request: LRANGE of the first four entries (in a busy log about one leaves
# per request), LTRIM when some have left; when the request passes the other checks, RPUSH
# (whose answer is the count, so a long log needs no LLEN; an append over the limit is taken
# back with RPOP) and, unless the first four were the whole log, LINDEX of the entry before it
# (the newest, which the new entry must not precede). PEXPIRE only once per step of a log's
# appends (a second, or an eighth of a short window; see the script). Against the previous
# script (LLEN, LINDEX, RPUSH and PEXPIRE on every admission): 0.80-0.83 of its Redis time per
# request (bench/bench_limit_script.py).
# When the four have all left, LINDEX gallops and bisects to the first entry still in the window.
# A guard: the same without the writes, LLEN for a long log. A quota: GET, when admitted INCR,
# and PEXPIREAT only when INCR created the counter (its expiry follows from its name's period).
# Besides those commands Lua's allocations cost most (each string or table about a cheap
# command), hence: numbers parsed once per distinct group, the reply allocated at its full size.
ACQUIRE_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local call, find, sub, format = redis.call, string.find, string.sub, string.format
local floor = math.floor
local numbers, names = ARGV[2], ARGV[3]
local now_text = format('%d', now)  -- what an admission appends, formatted once per call
-- A batch's requests mostly share their limits: each distinct group of numbers is parsed once,
-- into rate limit, window, its horizon, quota limit, quota expiry, peek, guard limit, horizon,
-- and the rate log's expiry step (see below).
local specs = {}
local function spec_of(text)
  local _, _, rate, window, quota, expiry, peek, guard, guard_window =
    find(text, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  window = tonumber(window)
  local spec = {
    tonumber(rate), window, now - window, tonumber(quota), expiry,
    peek == '1', tonumber(guard), now - tonumber(guard_window), math.min(1000, floor(window / 8)),
  }
  specs[text] = spec
  return spec
end
-- Drops the entries at or before `horizon` (they have left the window); returns how many are
-- left (nil when more than three: not counted), the oldest of them (-1: none) and, when the
-- head showed the whole log, the newest.
local function trim(key, horizon)
  local head = call('LRANGE', key, 0, 3)
  local n = #head
  if n == 0 then return 0, -1 end
  local first = tonumber(head[1])
  if first > horizon then
    if n < 4 then return n, first, tonumber(head[n]) end
    return nil, first
  end
  local cut = 1  -- head[1..cut] have left
  while cut < n and tonumber(head[cut + 1]) <= horizon do cut = cut + 1 end
  if cut < n then
    call('LTRIM', key, cut, -1)
    if n < 4 then return n - cut, tonumber(head[cut + 1]), tonumber(head[n]) end
    return nil, tonumber(head[cut + 1])
  end
  if n < 4 then
    call('DEL', key)
    return 0, -1
  end
  -- All four have left: gallop from the head (indexes 9, 19, 39, ...) to an entry still in
  -- the window, then bisect (LINDEX near the head is cheap, in the middle of a long log not).
  local size = call('LLEN', key)
  local low, high = n, n  -- the entries before `low` have left; at the end, `high`'s has not
  while true do
    high = 2 * high + 1
    if high >= size - 1 then
      high = size - 1
      if tonumber(call('LINDEX', key, high)) <= horizon then
        call('DEL', key)  -- the newest has left too: all have
        return 0, -1
      end
      break
    end
    if tonumber(call('LINDEX', key, high)) > horizon then break end
    low = high + 1
  end
  while low < high do
    local middle = floor((low + high) / 2)
    if tonumber(call('LINDEX', key, middle)) > horizon then high = middle else low = middle + 1 end
  end
  call('LTRIM', key, low, -1)
  return size - low, tonumber(call('LINDEX', key, 0))
end
-- The reply holds 8 numbers per request and now: a table built from that many values is
-- allocated once (grown one by one, it is reallocated at every power of two). Each request's
-- numbers take at least 13 characters and a comma, so ARGV[2] has enough bytes to build it
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
  local rate_key, quota_key, newest
  local rate_ok, rate_count, oldest, quota_ok, quota_used = 1, 0, -1, 1, 0
  local guard_ok, guard_count, guard_oldest = 1, 0, -1
  if guard_limit > 0 then
    local guard_key, first = sub(names, space2 + 1, space3 - 1)
    guard_count, first = trim(guard_key, spec[8])
    guard_count = guard_count or call('LLEN', guard_key)
    if guard_count >= guard_limit then guard_ok, guard_oldest = 0, first end
  end
  if rate_limit > 0 then
    rate_key = sub(names, q, space1 - 1)
    rate_count, oldest, newest = trim(rate_key, spec[3])
    if rate_count and rate_count >= rate_limit then rate_ok = 0 end
  end
  if quota_limit > 0 then
    quota_key = sub(names, space1 + 1, space2 - 1)
    quota_used = tonumber(call('GET', quota_key) or '0')
    if quota_used >= quota_limit then quota_ok = 0 end
  end
  q = space3 + 1
  if guard_ok == 1 and rate_ok == 1 and quota_ok == 1 and not spec[6] then
    if rate_limit > 0 then
      -- Appended first: RPUSH answers the count that a long log's LLEN would have, and an
      -- append that went over the limit is taken back.
      local size = call('RPUSH', rate_key, now_text)
      if size > rate_limit then
        call('RPOP', rate_key)
        rate_ok, rate_count = 0, size - 1
      else
        rate_count = size
        local at = now
        if size == 1 then
          oldest = at  -- the log was empty: the new entry is its oldest
        else
          newest = newest or tonumber(call('LINDEX', rate_key, -2))
          -- At the newest entry's time if that is later than now (an instance whose clock is
          -- behind another's, or Redis's clock stepped back): the log stays in order, and no
          -- entry leaves the window before its time.
          if newest > at then
            at = newest
            call('LSET', rate_key, -1, format('%d', at))
          end
        end
        -- The log must outlive its newest entry's window. Its expiry is set in steps: to the
        -- end of the step after next plus the window, by the first entry of each step (1 s,
        -- or an eighth of a short window), so the rest of the step need not set it (the log
        -- lingers at most two steps; an append cannot move to an earlier step than the newest).
        -- A stamp later than now sets it too: this clock is behind the one that set it.
        local step = spec[9]
        if size == 1 or at ~= now or floor(newest / step) ~= floor(at / step) then
          call('PEXPIRE', rate_key, (floor(at / step) + 2) * step + spec[2] - now)
        end
      end
    end
    if rate_ok == 1 and quota_limit > 0 then
      quota_used = call('INCR', quota_key)
      -- Whoever created the counter gave it this same expiry.
      if quota_used == 1 then call('PEXPIREAT', quota_key, spec[5]) end
    end
  end
  if rate_limit > 0 and not rate_count then
    rate_count = call('LLEN', rate_key)  -- a long log of a request refused or only looked at
    if rate_count >= rate_limit then rate_ok = 0 end
  end
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

_new = tuple.__new__  # a named tuple from its fields, without its generated `__new__`

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
    day: int  # the day (since the epoch, local clock) its quota's period was named on

    @functools.cached_property
    def rate_only(self) -> RateLimit | None:
        """The rate limit when it is the only policy checked (the usual case)."""
        return self.rate_limit if self.quota is None and self.guard is None else None

    @functools.cached_property
    def names(self) -> str:
        """The keys as the script reads them (built once: a request object serves a key's
        every request)."""
        return " ".join(self.keys)


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
    day = quota_day(now) if quota is not None else 0
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
    # `:entries`: earlier builds kept `:log` lists (expiry set on every append, which this
    # script relies on being set in steps) and, before those, `:rate` sorted sets. An instance
    # still running an older script shares nothing with this one while a deployment rolls:
    # each counts on its own.
    guard_key = f"{prefix}{{{guard.subject}}}:entries" if guard else f"{tag}:guard-none"
    return ScriptRequest(
        keys=(f"{tag}:entries", f"{tag}:quota:{period_id}", guard_key),
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
        day=day,
    )


def quota_day(now: float) -> int:
    """The day whose quota periods a request at `now` counts in (see `script_request`)."""
    return math.floor(now / 86_400)


def script_call(
    requests: Sequence[ScriptRequest], *, now_ms: int | None
) -> tuple[list[str], list[int | str]]:
    names = " ".join([request.names for request in requests])
    numbers = ",".join([request.numbers for request in requests])
    return [], ["" if now_ms is None else now_ms, numbers, names]


def usages(requests: Sequence[ScriptRequest], reply: Sequence[int]) -> list[Usage]:
    now = int(reply[-1]) / 1000
    results = []
    # Lua numbers come back as Redis integers, so already Python ints; eight per request.
    fields = iter(reply)
    eights = zip(requests, *[fields] * 8, strict=False)  # the reply's last number is `now`
    for request, rate_ok, count, oldest_ms, quota_ok, used, guard_ok, guards, guard_ms in eights:
        rate_limit = request.rate_only
        if rate_limit is not None and rate_ok == 1 and oldest_ms >= 0:
            # The usual answer, a rate limit alone that admits: `rate_decision`'s arithmetic
            # inlined, the tuples built without their Python constructors (this runs for every
            # limited request; tests/unit/test_limits_lua.py holds it to `rate_decision`).
            limit, window = rate_limit.limit, rate_limit.window_seconds
            reset = math.ceil(oldest_ms / 1000 + window - now - 1e-9)
            remaining = limit - count
            decision = _new(
                Decision,
                (RATE_POLICY, True, limit, remaining if remaining > 0 else 0,
                 reset if reset > 0 else 0, window, None),
            )  # fmt: skip
            results.append(_new(Usage, ((decision,), False, None)))
            continue
        rate_limit, quota = request.rate_limit, request.quota
        decisions: tuple[Decision, ...] = ()
        if rate_limit is not None:
            oldest = oldest_ms / 1000 if oldest_ms >= 0 else None
            rate = rate_decision(rate_limit, rate_ok == 1, count, oldest, now)
            decisions = (rate,)
        if quota is not None:
            counted = quota_decision(quota, allowed=bool(quota_ok), used=used, now=now)
            decisions = (*decisions, counted)
        blocked_by = None
        if request.guard is not None and not guard_ok:
            blocked_by = rate_decision(
                request.guard.rate_limit,
                allowed=False,
                count=guards,
                oldest=guard_ms / 1000,
                now=now,
                policy=AUTH_FAILURE_POLICY,
            )
        results.append(Usage(decisions, False, blocked_by))
    return results
