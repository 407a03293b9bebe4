"""Redis's own cost of the limit script, before and after a change, side by side in one run.

Both scripts are loaded into one Redis (default database 12) and driven with identical batches
on identical copies of the same logs, alternating chunk by chunk, on an injected clock; Redis's
time per request comes from INFO commandstats, diffed around each chunk (never reset: others
may be reading it). The scripts are sent with EVAL rather than EVALSHA so that other processes'
EVALSHA traffic on a shared Redis does not count (EVAL's extra work, hashing the script, happens
before Redis starts timing the command); a chunk during which anyone else ran EVAL is left out
and reported. Like bench_limits_http.py: rate limit 100,000 per 60 s, no quota, 1,000 keys in
rotation, each log already holding hundreds of entries (`--rate` requests per second spread over
`--keys` keys). Every reply of the after script must equal the before script's; a short mixed
run (tight limits, quotas, guards, peeks, repeated subjects, time jumps onto window edges) is
compared the same way first.

    .venv/bin/python bench/bench_limit_script.py [--regime steady|growing] [--calls 3000]

(`--keys 4 --rate 4000`: a few busy keys, each several times in every batch.)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

import redis

from keyrack.domain.limits import Quota, RateLimit
from keyrack.service.limits import Guard
from keyrack.store.limits_lua import ACQUIRE_LUA, ScriptRequest, script_call, script_request

# The script as it was before (commit 392af59, src/keyrack/store/limits_lua.py): each admitted
# request's log entry counted with LLEN, its expiry set with PEXPIRE, and the log's newest entry
# read before it is appended.
BEFORE = """
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
-- A batch's requests mostly share their limits: each distinct group of numbers is parsed once,
-- into rate limit, window, its horizon, quota limit, quota expiry, peek, guard limit, horizon.
local specs = {}
local function spec_of(text)
  local _, _, rate, window, quota, expiry, peek, guard, guard_window =
    find(text, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  local spec = {
    tonumber(rate), tonumber(window), now - tonumber(window), tonumber(quota), expiry,
    peek == '1', tonumber(guard), now - tonumber(guard_window),
  }
  specs[text] = spec
  return spec
end
-- Drops the entries at or before `horizon` (they have left the window); returns how many are
-- left and the oldest of them (-1: none).
local function trim(key, horizon)
  local head = call('LRANGE', key, 0, 3)
  local n = #head
  if n == 0 then return 0, -1 end
  local first = tonumber(head[1])
  if first > horizon then
    if n < 4 then return n, first end
    return call('LLEN', key), first
  end
  local cut = 1  -- head[1..cut] have left
  while cut < n and tonumber(head[cut + 1]) <= horizon do cut = cut + 1 end
  if cut < n then
    call('LTRIM', key, cut, -1)
    if n < 4 then return n - cut, tonumber(head[cut + 1]) end
    return call('LLEN', key), tonumber(head[cut + 1])
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
  local rate_key, quota_key
  local rate_ok, rate_count, oldest, quota_ok, quota_used = 1, 0, -1, 1, 0
  local guard_ok, guard_count, guard_oldest = 1, 0, -1
  if guard_limit > 0 then
    local first
    guard_count, first = trim(sub(names, space2 + 1, space3 - 1), spec[8])
    if guard_count >= guard_limit then guard_ok, guard_oldest = 0, first end
  end
  if rate_limit > 0 then
    rate_key = sub(names, q, space1 - 1)
    rate_count, oldest = trim(rate_key, spec[3])
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
      -- At now, or at the newest entry's time if that is later (an instance whose clock is
      -- behind another's, or Redis's clock stepped back): the log stays in order, and no
      -- entry leaves the window before its time.
      local at = now
      if rate_count > 0 then
        local newest = tonumber(call('LINDEX', rate_key, -1))
        if newest > at then at = newest end
      else
        oldest = at  -- the log was empty: the new entry is its oldest
      end
      call('RPUSH', rate_key, format('%d', at))
      call('PEXPIRE', rate_key, at - now + spec[2])
      rate_count = rate_count + 1
    end
    if quota_limit > 0 then
      quota_used = call('INCR', quota_key)
      -- Whoever created the counter gave it this same expiry.
      if quota_used == 1 then call('PEXPIREAT', quota_key, spec[5]) end
    end
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

SCRIPTS = {"before": BEFORE, "after": ACQUIRE_LUA}
RATE = RateLimit(limit=100_000, window_seconds=60)


class Bench:
    def __init__(self, client: redis.Redis, run: str, batch: int) -> None:
        self.client, self.run, self.batch = client, run, batch

    def prefix(self, name: str) -> str:
        return f"bench-limit-script:{self.run}:{name}:"

    def calls(
        self, name: str, calls: Sequence[tuple[int, Sequence[ScriptRequestSpec]]]
    ) -> list[list[int]]:
        pipe = self.client.pipeline(transaction=False)
        for now_ms, specs in calls:
            requests = [spec.request(self.prefix(name), now_ms) for spec in specs]
            args = script_call(requests, now_ms=now_ms)[1]
            pipe.eval(SCRIPTS[name], 0, *args)
        return pipe.execute()

    def bytes_per_entry(self, name: str, keys: int) -> float:
        """MEMORY USAGE of the rate logs over their entries (a sample of 20 keys)."""
        total_bytes = total_entries = 0
        for n in range(0, keys, max(1, keys // 20)):
            key = ScriptRequestSpec(f"key-{n}", RATE).request(self.prefix(name), 0).keys[0]
            total_bytes += self.client.memory_usage(key, samples=0) or 0
            total_entries += self.client.llen(key)
        return total_bytes / max(1, total_entries)

    def cleanup(self) -> None:
        for key in self.client.scan_iter(f"bench-limit-script:{self.run}:*", count=1000):
            self.client.unlink(key)


class ScriptRequestSpec:
    """One request, independent of the script's key prefix."""

    def __init__(
        self,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None = None,
        peek: bool = False,
        guard: str | None = None,
        guard_limit: RateLimit | None = None,
    ) -> None:
        self.subject, self.rate_limit, self.quota, self.peek = subject, rate_limit, quota, peek
        self.guard, self.guard_limit = guard, guard_limit

    def request(self, prefix: str, now_ms: int) -> ScriptRequest:
        guard = None
        if self.guard is not None and self.guard_limit is not None:
            guard = Guard(self.guard, self.guard_limit)
        return script_request(
            prefix=prefix,
            subject=self.subject,
            rate_limit=self.rate_limit,
            quota=self.quota,
            peek=self.peek,
            now=now_ms / 1000,
            guard=guard,
        )


def eval_stats(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_eval", {"calls": 0, "usec": 0})
    return int(stats["calls"]), int(stats["usec"])


def mixed_check(bench: Bench, start_ms: int, calls: int) -> None:
    """Tight limits, quotas, guards, peeks, repeated subjects, logs under two windows and time
    jumps landing exactly on window edges: the after script must answer exactly like the before
    script."""
    rng = random.Random(7)
    rate, quota, guard_limit = RateLimit(5, 2), Quota(60, "day"), RateLimit(3, 5)
    other_rate = RateLimit(4, 3)  # the same logs under another window now and then
    now, sequence = start_ms, []
    for _ in range(calls):
        now += rng.choice([0, 1, 250, 999, 1000, 1999, 2000, 2001, 5000, 30_000])
        specs = []
        for _ in range(rng.randint(1, 16)):
            subject, address = f"k{rng.randrange(12)}", f"a{rng.randrange(4)}"
            draw = rng.random()
            if draw < 0.1:
                specs.append(ScriptRequestSpec(subject, rate, peek=True))
            elif draw < 0.35:  # a failed authentication from the address
                specs.append(ScriptRequestSpec(address, guard_limit))
            elif draw < 0.45:
                specs.append(ScriptRequestSpec(subject, None, quota))
            elif draw < 0.55:
                specs.append(ScriptRequestSpec(subject, other_rate))
            else:
                specs.append(
                    ScriptRequestSpec(subject, rate, quota, guard=address, guard_limit=guard_limit)
                )
        sequence.append((now, specs))
    replies = {name: bench.calls(name, sequence) for name in SCRIPTS}
    assert replies["after"] == replies["before"], "the scripts decided differently"
    refused = sum(reply[8 * n] == 0 for reply in replies["after"] for n in range(len(reply) // 8))
    print(f"mixed check: {calls} calls, identical replies ({refused} rate refusals among them)")


def seed(bench: Bench, keys: int, entries: int, start_ms: int, span_ms: int) -> None:
    """`entries` admissions per log, evenly spread over the last `span_ms` (the whole window:
    the oldest are about to expire). The two copies are written key by key in turn (whichever
    set is written later runs ~5% faster otherwise, memory layout presumably)."""
    window_ms = RATE.window_seconds * 1000
    pipe = bench.client.pipeline(transaction=False)
    for n in range(keys):
        offset = n * span_ms / entries / keys  # keys expire their entries in turn
        times = [
            start_ms - span_ms + 1 + int(offset + k * span_ms / entries) for k in range(entries)
        ]
        for name in SCRIPTS if n % 2 == 0 else reversed(SCRIPTS):
            request = ScriptRequestSpec(f"key-{n}", RATE).request(bench.prefix(name), start_ms)
            pipe.rpush(request.keys[0], *times)  # oldest first
            pipe.pexpire(request.keys[0], window_ms)
        if n % 100 == 99:
            pipe.execute()
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calls", type=int, default=3000, help="script calls per script")
    parser.add_argument("--chunk", type=int, default=250, help="calls per measured chunk")
    parser.add_argument("--rate", type=int, default=10_000, help="simulated requests per second")
    parser.add_argument(
        "--regime",
        choices=["steady", "growing"],
        default="steady",
        help="steady: each log spans the whole window, so about one entry leaves it per request;"
        " growing: the logs span half the window and nothing leaves it during the run (like the"
        " first minute of bench_limits_http.py)",
    )
    options = parser.parse_args()
    client = redis.Redis.from_url(options.redis_url)
    bench = Bench(client, f"{time.time_ns()}", options.batch)
    start_ms = int(time.time() * 1000)
    entries = options.rate * RATE.window_seconds // options.keys
    try:
        mixed_check(bench, start_ms - 3_600_000, 400)
        window_ms = RATE.window_seconds * 1000
        seed(
            bench,
            options.keys,
            entries,
            start_ms,
            window_ms if options.regime == "steady" else window_ms // 2,
        )
        step_ms = options.batch * 1000 / options.rate
        sequence = [
            (
                start_ms + round(c * step_ms),
                [
                    ScriptRequestSpec(f"key-{(c * options.batch + j) % options.keys}", RATE)
                    for j in range(options.batch)
                ],
            )
            for c in range(options.calls)
        ]
        pairs: list[dict[str, float]] = []  # us per request, per chunk, for both scripts
        disturbed = 0
        for number, first in enumerate(range(0, options.calls, options.chunk)):
            chunk = sequence[first : first + options.chunk]
            replies, spent = {}, {}
            # Alternate which goes first, so a drifting machine load favours neither.
            for name in list(SCRIPTS) if number % 2 == 0 else list(reversed(SCRIPTS)):
                calls_before, usec_before = eval_stats(client)
                replies[name] = bench.calls(name, chunk)
                calls_after, usec_after = eval_stats(client)
                if calls_after - calls_before == len(chunk):  # else someone else's EVAL ran
                    spent[name] = (usec_after - usec_before) / len(chunk) / options.batch
            assert replies["after"] == replies["before"], "the scripts decided differently"
            if len(spent) == len(SCRIPTS):
                pairs.append(spent)
            else:
                disturbed += 1
        print(
            f"{options.calls} calls of {options.batch} requests per script over {options.keys} "
            f"keys, {entries} entries per log ({options.regime}), rate limit "
            f"{RATE.limit}/{RATE.window_seconds}s"
            + (f" ({disturbed} disturbed chunks left out)" if disturbed else "")
        )
        for name in SCRIPTS:
            runs = [pair[name] for pair in pairs]
            print(
                f"{name:<7} {statistics.median(runs):6.2f} us per request in Redis "
                f"(median of {len(runs)} chunks; min {min(runs):.2f}, max {max(runs):.2f})"
            )
        ratios = [pair["after"] / pair["before"] for pair in pairs]
        print(f"after / before {statistics.median(ratios):.2f} (median of chunk pairs)")
        print(
            "memory per log entry: "
            + ", ".join(
                f"{name} {bench.bytes_per_entry(name, options.keys):.0f} B" for name in SCRIPTS
            )
        )
    finally:
        bench.cleanup()
        client.close()


if __name__ == "__main__":
    main()
