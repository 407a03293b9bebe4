"""The Redis store's reading of the limit script's reply (no Redis needed: replies are built by
hand), in particular its inlined path for an admitted rate limit."""

from __future__ import annotations

import random

from keyrack.domain.limits import Quota, RateLimit, quota_decision, rate_decision
from keyrack.service.limits import Guard, Usage
from keyrack.store.limits_lua import ScriptRequest, script_request, usages

NOW_MS = 1_795_000_000_123


def request(
    rate: RateLimit | None, quota: Quota | None = None, guard: Guard | None = None
) -> ScriptRequest:
    return script_request(
        prefix="p:", subject="s", rate_limit=rate, quota=quota, peek=False, now=NOW_MS / 1000,
        guard=guard,
    )  # fmt: skip


def test_an_admitted_rate_limit_reads_exactly_as_rate_decision_says() -> None:
    """The inlined arithmetic (the usual reply) against `rate_decision`, over random logs: counts
    up to and past the limit, oldest entries anywhere in the window and on its edges, and a
    clock reading behind the oldest entry."""
    rng = random.Random(11)
    for _ in range(5000):
        rate = RateLimit(rng.randint(1, 100_000), rng.choice([1, 7, 60, 3600, 86_400]))
        count = rng.randint(1, rate.limit + 2)
        window_ms = rate.window_seconds * 1000
        oldest_ms = NOW_MS - rng.choice(
            [0, 1, 999, 1000, 1001, window_ms - 1, window_ms, rng.randrange(window_ms), -5000]
        )
        now_ms = NOW_MS + rng.choice([0, 0, 1, 499])
        reply = [1, count, oldest_ms, 1, 0, 1, 0, -1, now_ms]
        [usage] = usages([request(rate)], reply)
        expected = rate_decision(rate, True, count, oldest_ms / 1000, now_ms / 1000)
        assert usage == Usage((expected,), False, None)
        assert type(usage) is Usage and type(usage.decisions[0]) is type(expected)


def test_refusals_quotas_guards_and_empty_logs_take_the_general_path() -> None:
    rate, quota = RateLimit(5, 60), Quota(100, "day")
    guard = Guard("auth-failures:198.51.100.7", RateLimit(3, 60))
    now = NOW_MS / 1000
    requests = [request(rate), request(rate), request(None, quota), request(rate, guard=guard)]
    reply = [
        *(0, 5, NOW_MS - 10_000, 1, 0, 1, 0, -1),  # refused by its rate limit
        *(1, 0, -1, 1, 0, 1, 0, -1),  # an empty log (a peek)
        *(1, 0, -1, 1, 42, 1, 0, -1),  # a quota alone
        *(1, 1, NOW_MS, 1, 0, 0, 3, NOW_MS - 1000),  # blocked by the guard
        NOW_MS,
    ]
    refused, empty, counted, blocked = usages(requests, reply)
    assert refused == Usage((rate_decision(rate, False, 5, now - 10, now),))
    assert not refused.allowed and refused.decisions[0].retry_after == 50
    assert empty == Usage((rate_decision(rate, True, 0, None, now),))
    assert counted == Usage((quota_decision(quota, allowed=True, used=42, now=now),))
    assert not blocked.allowed and blocked.blocked_by is not None
    assert blocked.blocked_by.retry_after == 59
