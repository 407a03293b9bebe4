"""Usage limits as use cases: enforce a key's rate limit and quota, throttle failed logins.

Both run on a `LimitStore` (in-process or Redis, see `keyrack.store.limits_*`), in an async
flavour for the verify path and a sync one for management handlers running in threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from keyrack.domain.errors import RateLimited, UsageExceeded
from keyrack.domain.limits import (
    AUTH_FAILURE_POLICY,
    RATE_POLICY,
    Decision,
    Quota,
    RateLimit,
)

DEFAULT_AUTH_FAILURE_LIMIT = 100
DEFAULT_AUTH_FAILURE_WINDOW_SECONDS = 60
BLOCKED_DETAIL = "too many failed authentications from this address; retry later"


class Usage(NamedTuple):
    """What a store answered: one decision per policy that applies, in the order rate, quota.

    `degraded` is true when the store could not be reached and the configured failure mode
    let the request through unchecked (then there are no decisions to report). A named tuple,
    as `Decision`, for every limited request builds one.
    """

    decisions: tuple[Decision, ...] = ()
    degraded: bool = False
    blocked_by: Decision | None = None  # the guard that refused, if one did

    @property
    def allowed(self) -> bool:
        if self.blocked_by is not None:
            return False
        # A loop rather than all() over a generator: twice as fast, and it runs per request.
        for decision in self.decisions:  # noqa: SIM110
            if not decision.allowed:
                return False
        return True


@dataclass(frozen=True)
class Guard:
    """Checked (never counted) in the same atomic step as an `acquire`: while `subject`'s log
    is full under `rate_limit`, the request is refused and counts against nothing."""

    subject: str
    rate_limit: RateLimit


# What `acquire_then` hands its callback: the usage, or the error the store met (for example
# `ServiceUnavailable` when limits fail closed).
UsageCallback = Callable[[Usage | BaseException], None]


class LimitStore(Protocol):
    """Counts admitted requests per subject. `acquire` checks every given policy and, only if
    all allow, counts the request against all of them, atomically (several instances sharing
    one store together never admit more than a limit)."""

    # Futures rather than coroutines: a store resolves them itself (Redis, when the reply
    # comes) or at once (in-process), and the inline verify path waits on them with a callback
    # instead of a task.
    def acquire(
        self,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        guard: Guard | None = None,
    ) -> asyncio.Future[Usage]: ...

    def acquire_then(
        self,
        then: UsageCallback,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
    ) -> None:
        """`acquire` for a caller on the event loop that waits with a callback: `then` is
        called from the loop, never before this returns (no future, no loop turn of its own:
        the inline verify path)."""
        ...

    def acquire_sync(
        self,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        guard: Guard | None = None,
    ) -> Usage: ...

    def peek(self, *, subject: str, rate_limit: RateLimit) -> asyncio.Future[Usage]:
        """The rate decision as if a request came now, without counting one."""
        ...

    def peek_sync(self, *, subject: str, rate_limit: RateLimit) -> Usage: ...

    async def health(self) -> str | None:
        """For readiness: None when there is nothing outside the process to reach, else "ok" or
        "unreachable" (answered within the store's timeout)."""
        ...

    async def aclose(self) -> None: ...

    def close(self) -> None: ...


def raise_if_refused(usage: Usage) -> tuple[Decision, ...]:
    """The decisions of an admitted request; raises `RateLimited` or `UsageExceeded` else."""
    if usage.allowed:
        return usage.decisions
    if usage.blocked_by is not None:
        raise RateLimited(BLOCKED_DETAIL, decisions=(usage.blocked_by,))
    refused = {d.policy for d in usage.decisions if not d.allowed}
    if RATE_POLICY in refused and len(refused) == 1:
        raise RateLimited("the API key's rate limit is reached", decisions=usage.decisions)
    # A used-up quota outlasts any rate window, so it is the reason worth reporting.
    raise UsageExceeded("the API key's usage quota is used up", decisions=usage.decisions)


class UsageLimiter:
    """Per-key rate limits and quotas, and (given the throttle) the caller address's block,
    all in one store call per request."""

    def __init__(self, store: LimitStore, auth_throttle: AuthFailureThrottle | None = None) -> None:
        self.store = store
        self.auth_throttle = auth_throttle

    def _guard(self, address: str | None) -> Guard | None:
        if address is None or self.auth_throttle is None:
            return None
        return self.auth_throttle.guard(address)

    async def enforce(
        self,
        *,
        key_id: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        address: str | None = None,
    ) -> tuple[Decision, ...]:
        """Count one request of an authenticated `key_id`, coming from `address`; the decisions
        feed `limit_headers` on success.

        Raises `RateLimited` (the key's rate limit, or `address` is blocked after too many
        failed authentications) or `UsageExceeded`: 429, with the decisions for the headers."""
        pending = self.request(key_id=key_id, rate_limit=rate_limit, quota=quota, address=address)
        return () if pending is None else raise_if_refused(await pending)

    def request(
        self,
        *,
        key_id: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        address: str | None = None,
    ) -> asyncio.Future[Usage] | None:
        """`enforce`'s store call (None when there is nothing to check); `raise_if_refused`
        reads its answer."""
        guard = self._guard(address)
        if rate_limit is None and quota is None and guard is None:
            return None
        return self.store.acquire(
            subject=f"key:{key_id}", rate_limit=rate_limit, quota=quota, guard=guard
        )

    def request_then(
        self,
        then: UsageCallback,
        *,
        key_id: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
    ) -> None:
        """`request` for a key with limits from an address nobody watches, answered through
        `then` (see `LimitStore.acquire_then`)."""
        self.store.acquire_then(then, subject=f"key:{key_id}", rate_limit=rate_limit, quota=quota)

    def enforce_sync(
        self,
        *,
        key_id: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        address: str | None = None,
    ) -> tuple[Decision, ...]:
        guard = self._guard(address)
        if rate_limit is None and quota is None and guard is None:
            return ()
        usage = self.store.acquire_sync(
            subject=f"key:{key_id}", rate_limit=rate_limit, quota=quota, guard=guard
        )
        return raise_if_refused(usage)


class AuthFailureThrottle:
    """Failed authentications per client address: once `limit` failures fall within
    `window_seconds`, that address gets 429 until the oldest of them leaves the window.

    Keyed by address only, so valid keys presented from other addresses are never affected.
    A request without a known address (no client in the ASGI scope) is not throttled.
    """

    def __init__(
        self,
        store: LimitStore,
        *,
        limit: int = DEFAULT_AUTH_FAILURE_LIMIT,
        window_seconds: int = DEFAULT_AUTH_FAILURE_WINDOW_SECONDS,
    ) -> None:
        self.store = store
        self.policy = RateLimit(limit=limit, window_seconds=window_seconds)

    @staticmethod
    def _subject(address: str) -> str:
        return f"auth-failures:{address}"

    def guard(self, address: str) -> Guard:
        return Guard(subject=self._subject(address), rate_limit=self.policy)

    def _relabel(self, usage: Usage) -> tuple[Decision, ...]:
        return tuple(d._replace(policy=AUTH_FAILURE_POLICY) for d in usage.decisions)

    def _raise_if_blocked(self, usage: Usage) -> None:
        if not usage.allowed:
            raise RateLimited(BLOCKED_DETAIL, decisions=self._relabel(usage))

    async def check(self, address: str | None) -> None:
        """Before authenticating: raises `RateLimited` if the address is over the threshold."""
        if address is not None:
            self._raise_if_blocked(
                await self.store.peek(subject=self._subject(address), rate_limit=self.policy)
            )

    def check_sync(self, address: str | None) -> None:
        if address is not None:
            self._raise_if_blocked(
                self.store.peek_sync(subject=self._subject(address), rate_limit=self.policy)
            )

    async def record_failure(self, address: str | None) -> tuple[Decision, ...]:
        """After a failed authentication: raises `RateLimited` when the address is blocked
        (answer 429 instead of 401). Failures past the threshold are not stored: the address
        is blocked anyway, and the log stays bounded. Returns the counted failure's decision
        (`remaining` 0: this failure filled the window, the address is blocked from now)."""
        if address is None:
            return ()
        usage = await self.store.acquire(
            subject=self._subject(address), rate_limit=self.policy, quota=None
        )
        self._raise_if_blocked(usage)
        return self._relabel(usage)

    def record_failure_sync(self, address: str | None) -> tuple[Decision, ...]:
        if address is None:
            return ()
        usage = self.store.acquire_sync(
            subject=self._subject(address), rate_limit=self.policy, quota=None
        )
        self._raise_if_blocked(usage)
        return self._relabel(usage)
