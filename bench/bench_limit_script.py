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

# The script as it was before (commit 9f09ac4, src/keyrack/store/limits_lua.py); it took all
# numbers space-separated, without commas between requests.
BEFORE = """
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
            if name == "before":
                args[2] = str(args[2]).replace(",", " ")
            pipe.eval(SCRIPTS[name], 0, *args)
        return pipe.execute()

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


SETTLE_LUA = """
for n = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do
  for p = 4, #ARGV do
    local key = ARGV[p] .. '{key-' .. n .. '}:rate'
    for _ = 1, tonumber(ARGV[3]) do redis.call('ZSCORE', key, '') end
  end
end
"""


def seed(bench: Bench, keys: int, entries: int, start_ms: int, span_ms: int) -> None:
    """`entries` admissions per log, evenly spread over the last `span_ms` (the whole window:
    the oldest are about to expire). The two copies are written key by key in turn (whichever
    set is written later runs ~5% faster otherwise, memory layout presumably)."""
    window_ms = RATE.window_seconds * 1000
    pipe = bench.client.pipeline(transaction=False)
    for n in range(keys):
        offset = n * span_ms / entries / keys  # keys expire their entries in turn
        mapping = {
            f"seed-{k}": start_ms - span_ms + 1 + int(offset + k * span_ms / entries)
            for k in range(entries)
        }
        for name in SCRIPTS if n % 2 == 0 else reversed(SCRIPTS):
            request = ScriptRequestSpec(f"key-{n}", RATE).request(bench.prefix(name), start_ms)
            pipe.zadd(request.keys[0], mapping)
            pipe.pexpire(request.keys[0], window_ms)
        if n % 100 == 99:
            pipe.execute()
    pipe.execute()
    # A ZADD of many members grows the log's member hash table step by step, and Redis then
    # moves its entries to the larger table one bucket per later operation: unsettled, it would
    # add ~30% to every script's cost. A real log has long finished that (it grows one entry at
    # a time), so the benchmark settles it first with enough lookups.
    prefixes = [bench.prefix(name) for name in SCRIPTS]
    for first in range(0, keys, 100):
        bench.client.eval(SETTLE_LUA, 0, first, min(keys, first + 100), entries, *prefixes)


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
    finally:
        bench.cleanup()
        client.close()


if __name__ == "__main__":
    main()
