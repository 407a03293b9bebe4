"""The in-process limit store: exact and thread-safe within one process (the embedded default).

Hand-written: the `limits` package has a moving window but neither calendar-month quotas nor
one atomic check-all-then-count-all of a rate limit and a quota together, which the Redis
store does in Lua; both stores must decide identically, so they share `domain.limits`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from keyrack.domain.limits import (
    AUTH_FAILURE_POLICY,
    Decision,
    Quota,
    RateLimit,
    quota_decision,
    quota_window,
    rate_decision,
)
from keyrack.service.limits import Guard, Usage, UsageCallback
from keyrack.store.event_loop import RunningLoop

SWEEP_INTERVAL_SECONDS = 30.0


@dataclass
class _Log:
    window_seconds: float
    admitted: deque[float] = field(default_factory=deque)

    def trim(self, now: float) -> None:
        # Entries at or before `now - window` have left the window (same rule as the Lua).
        horizon = now - self.window_seconds
        while self.admitted and self.admitted[0] <= horizon:
            self.admitted.popleft()


@dataclass
class _Count:
    used: int
    ends_at: float


class InProcessLimitStore:
    """Sliding-window logs and calendar quota counters in dictionaries under one lock."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._loop = RunningLoop()  # the event loop of `acquire`
        self._logs: dict[str, _Log] = {}
        self._quotas: dict[tuple[str, str], _Count] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL_SECONDS

    def acquire_sync(
        self,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        guard: Guard | None = None,
    ) -> Usage:
        now = self._clock()
        with self._lock:
            self._sweep(now)
            blocked_by = self._blocked_by(guard, now) if guard else None
            log = self._log(subject, rate_limit, now) if rate_limit else None
            count = self._count(subject, quota, now) if quota else None
            rate_ok = log is None or rate_limit is None or len(log.admitted) < rate_limit.limit
            quota_ok = count is None or quota is None or count.used < quota.limit
            if blocked_by is None and rate_ok and quota_ok:
                if log is not None:
                    log.admitted.append(now)
                if count is not None:
                    count.used += 1
            decisions: list[Decision] = []
            if rate_limit is not None and log is not None:
                decisions.append(
                    rate_decision(
                        rate_limit,
                        allowed=rate_ok,
                        count=len(log.admitted),
                        oldest=log.admitted[0] if log.admitted else None,
                        now=now,
                    )
                )
            if quota is not None and count is not None:
                decisions.append(quota_decision(quota, allowed=quota_ok, used=count.used, now=now))
        return Usage(decisions=tuple(decisions), blocked_by=blocked_by)

    def _blocked_by(self, guard: Guard, now: float) -> Decision | None:
        log = self._logs.get(guard.subject)
        if log is None:
            return None
        log.trim(now)
        if len(log.admitted) < guard.rate_limit.limit:
            return None
        return rate_decision(
            guard.rate_limit,
            allowed=False,
            count=len(log.admitted),
            oldest=log.admitted[0],
            now=now,
            policy=AUTH_FAILURE_POLICY,
        )

    def peek_sync(self, *, subject: str, rate_limit: RateLimit) -> Usage:
        now = self._clock()
        with self._lock:
            log = self._logs.get(subject)
            if log is not None:
                log.trim(now)
            admitted = log.admitted if log is not None else deque()
            decision = rate_decision(
                rate_limit,
                allowed=len(admitted) < rate_limit.limit,
                count=len(admitted),
                oldest=admitted[0] if admitted else None,
                now=now,
            )
        return Usage(decisions=(decision,))

    def acquire(
        self,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        guard: Guard | None = None,
    ) -> asyncio.Future[Usage]:
        # Never blocks for long (a short critical section, no I/O): answered at once, in a
        # future already resolved, without a thread hop.
        return self._resolved(
            self.acquire_sync(subject=subject, rate_limit=rate_limit, quota=quota, guard=guard)
        )

    def acquire_then(
        self,
        then: UsageCallback,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
    ) -> None:
        usage = self.acquire_sync(subject=subject, rate_limit=rate_limit, quota=quota)
        self._loop.get().call_soon(then, usage)  # never before returning, as promised

    def peek(self, *, subject: str, rate_limit: RateLimit) -> asyncio.Future[Usage]:
        return self._resolved(self.peek_sync(subject=subject, rate_limit=rate_limit))

    def _resolved(self, usage: Usage) -> asyncio.Future[Usage]:
        loop = self._loop.get()
        future: asyncio.Future[Usage] = loop.create_future()
        future.set_result(usage)
        return future

    async def health(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None

    def close(self) -> None:
        return None

    def size(self) -> int:
        """Subjects held (logs plus quota counters): what the periodic sweep keeps bounded."""
        with self._lock:
            return len(self._logs) + len(self._quotas)

    def _log(self, subject: str, rate_limit: RateLimit, now: float) -> _Log:
        log = self._logs.get(subject)
        if log is None:
            log = self._logs[subject] = _Log(window_seconds=rate_limit.window_seconds)
        log.window_seconds = rate_limit.window_seconds
        log.trim(now)
        return log

    def _count(self, subject: str, quota: Quota, now: float) -> _Count:
        window = quota_window(quota.period, now)
        slot = (subject, window.period_id)
        count = self._quotas.get(slot)
        if count is None:
            count = self._quotas[slot] = _Count(used=0, ends_at=window.end)
        return count

    def _sweep(self, now: float) -> None:
        """Drop idle logs and ended periods now and then, so memory follows active keys only."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_SECONDS
        for subject in list(self._logs):
            log = self._logs[subject]
            log.trim(now)
            if not log.admitted:
                del self._logs[subject]
        for slot in [slot for slot, count in self._quotas.items() if count.ends_at <= now]:
            del self._quotas[slot]
