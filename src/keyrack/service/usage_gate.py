"""Usage controls as every entry point applies them: the failed-authentication throttle by
client address, then the authenticated key's rate limit and quota.

Keys without limits cost no store (Redis) call here unless their address failed to
authenticate on this process within the throttle's window. Every failure is counted in the
shared store; from its answers each process remembers, until they expire, the addresses it saw
fail (`_suspects`: a valid key from one is checked against the store before it passes) and those
it knows to be blocked (`_blocked`: refused without asking). So a guesser is blocked on every
instance it guesses through, and a valid key from a blocked address is refused too (a 200 among
the 429s would tell the guesser which guess was right); keys from other addresses pass.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from keyrack.domain.errors import LimitExceeded, RateLimited, UsageExceeded
from keyrack.domain.limits import AUTH_FAILURE_POLICY, Decision
from keyrack.logs import ThrottledLog
from keyrack.service.auth_failures import AuthFailureLog
from keyrack.service.key_cache import VerifiedKey
from keyrack.service.limits import (
    BLOCKED_DETAIL,
    AuthFailureThrottle,
    Usage,
    UsageCallback,
    UsageLimiter,
    raise_if_refused,
)

log = logging.getLogger("keyrack.limits")

# Refusals that count as a failed authentication. A request without any key (MISSING) is not a
# guess: counting it would block every browser behind one NAT that opens a protected page.
COUNTED_FAILURES = frozenset({"MALFORMED", "NOT_FOUND", "EXPIRED", "DISABLED"})
THROTTLED = "THROTTLED"  # the audit reason for a known key refused from a blocked address
MAX_ADDRESSES = 100_000


class _ExpiringAddresses:
    """Address -> the POSIX time its entry ends; bounded (the store keeps the truth)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def __bool__(self) -> bool:
        """Whether any entry is current; expired ones are swept at most once a second, so an
        address that never comes back stops costing the hot path soon after its entry ends."""
        if not self._until:
            return False
        now = self._clock()
        if now >= self._next_sweep:
            with self._lock:
                self._next_sweep = now + 1.0
                self._until = {a: t for a, t in self._until.items() if t > now}
        return bool(self._until)

    def add(self, address: str, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            if len(self._until) >= MAX_ADDRESSES:
                self._until = {a: t for a, t in self._until.items() if t > now}
                if len(self._until) >= MAX_ADDRESSES:
                    self._until.clear()
            self._until[address] = max(self._until.get(address, 0.0), now + seconds)

    def seconds_left(self, address: str) -> float:
        """How long `address` stays listed (0 when it is not)."""
        until = self._until.get(address)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            with self._lock:
                self._until.pop(address, None)
            return 0.0
        return left


class UsageGate:
    def __init__(
        self,
        *,
        limiter: UsageLimiter,
        throttle: AuthFailureThrottle,
        audit: AuthFailureLog | None = None,
        on_decision: Callable[[str], None] | None = None,
        on_admitted: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`on_decision` hears every decision by name; `on_admitted`, when given, hears the
        "allowed" ones of the async path instead (the event loop's thread: it may batch)."""
        self.limiter = limiter
        self.throttle = throttle
        self._audit = audit
        self._on_decision = on_decision or (lambda _decision: None)
        self._on_admitted = on_admitted or (lambda: self._on_decision("allowed"))
        self._clock = clock
        self._blocked = _ExpiringAddresses(clock)
        self._suspects = _ExpiringAddresses(clock)
        self._warn = ThrottledLog(log)

    @property
    def any_blocked(self) -> bool:
        """Cheap test for the hot path: only then is the client address worth computing."""
        return bool(self._blocked)

    @property
    def any_watched(self) -> bool:
        """Whether any address failed here recently (blocked ones included)."""
        return bool(self._suspects) or bool(self._blocked)

    def refusal_for(self, address: str | None) -> RateLimited | None:
        """The 429 for an address this process knows to be blocked, else None."""
        if address is None:
            return None
        wait = math.ceil(self._blocked.seconds_left(address))
        if wait <= 0:
            return None
        policy = self.throttle.policy
        decision = Decision(
            policy=AUTH_FAILURE_POLICY,
            allowed=False,
            limit=policy.limit,
            remaining=0,
            reset_seconds=wait,
            window_seconds=policy.window_seconds,
            retry_after=wait,
        )
        return RateLimited(BLOCKED_DETAIL, decisions=(decision,))

    def throttled(
        self, refusal: RateLimited, *, address: str, key: VerifiedKey | None, request_id: str | None
    ) -> RateLimited:
        """Record a refusal of `address` (audit log when a known key was presented, else a
        log line at most every 10 s) and return it to raise."""
        self._on_decision("throttled")
        if key is not None and self._audit is not None:
            self._audit.note(
                org_id=key.org_id,
                key_id=key.key_id,
                reason=THROTTLED,
                client_ip=address,
                request_id=request_id,
            )
        else:
            self._warn.warning(
                "failed authentications: %s is over %d per %d s; answering 429",
                address,
                self.throttle.policy.limit,
                self.throttle.policy.window_seconds,
            )
        return refusal

    def _remember(self, address: str, refusal: LimitExceeded) -> bool:
        """Remember the block if `refusal` is the address's; True if it was."""
        waits = [
            d.retry_after
            for d in refusal.decisions
            if d.policy == AUTH_FAILURE_POLICY and d.retry_after is not None
        ]
        if not waits:
            return False
        self._block(address, max(waits))
        return True

    def _block(self, address: str, seconds: int) -> None:
        self._blocked.add(address, max(1, seconds))

    def _counted(self, address: str, decisions: tuple[Decision, ...]) -> None:
        """A failure makes the address a suspect for the window; one that filled the window
        blocks it from the next request on."""
        self._suspects.add(address, self.throttle.policy.window_seconds)
        for decision in decisions:
            if decision.remaining == 0:
                self._block(address, decision.reset_seconds)

    def _refused(
        self,
        refusal: LimitExceeded,
        *,
        address: str | None,
        key: VerifiedKey | None,
        request_id: str | None,
    ) -> LimitExceeded:
        if address is not None and self._remember(address, refusal):
            assert isinstance(refusal, RateLimited)
            return self.throttled(refusal, address=address, key=key, request_id=request_id)
        self._on_decision(
            "usage_exceeded" if isinstance(refusal, UsageExceeded) else "rate_limited"
        )
        return refusal

    # -- failed authentications

    async def failed(
        self, *, code: str, address: str | None, key: VerifiedKey | None, request_id: str | None
    ) -> None:
        """Count a refused authentication; raises `RateLimited` when the address is blocked."""
        if address is None or code not in COUNTED_FAILURES:
            return
        try:
            self._counted(address, await self.throttle.record_failure(address))
        except RateLimited as refusal:
            self._suspects.add(address, self.throttle.policy.window_seconds)
            raise self._refused(refusal, address=address, key=key, request_id=request_id) from None

    def failed_sync(
        self, *, code: str, address: str | None, key: VerifiedKey | None, request_id: str | None
    ) -> None:
        if address is None or code not in COUNTED_FAILURES:
            return
        try:
            self._counted(address, self.throttle.record_failure_sync(address))
        except RateLimited as refusal:
            self._suspects.add(address, self.throttle.policy.window_seconds)
            raise self._refused(refusal, address=address, key=key, request_id=request_id) from None

    # -- authenticated keys

    async def admit(
        self, *, key: VerifiedKey, address: str | None, request_id: str | None = None
    ) -> tuple[Decision, ...]:
        """Count one request of a limited key, checking the address's block in the same store
        call. Raises `RateLimited` or `UsageExceeded`; returns the decisions for the
        `RateLimit` headers (none for a key without limits). A key without limits from an
        address that failed here recently is checked against the store's count of failures."""
        if not key.limited:
            if address is not None and self._suspects.seconds_left(address):
                try:
                    await self.throttle.check(address)
                except RateLimited as refusal:
                    raise self._refused(
                        refusal, address=address, key=key, request_id=request_id
                    ) from None
            return ()
        pending = self.limiter.request(
            key_id=key.key_id, rate_limit=key.rate_limit, quota=key.quota, address=address
        )
        assert pending is not None  # a limited key always asks the store
        return self.admitted(key, await pending, address=address, request_id=request_id)

    def admission(self, key: VerifiedKey, then: UsageCallback) -> None:
        """`admit`'s store call for a limited key from an address nobody watches (`any_watched`
        false), answered through `then` (see `LimitStore.acquire_then`); `admitted` reads the
        usage. For the inline verify path, which waits with a callback rather than a task."""
        self.limiter.request_then(
            then, key_id=key.key_id, rate_limit=key.rate_limit, quota=key.quota
        )

    def admitted(
        self,
        key: VerifiedKey,
        usage: Usage,
        *,
        address: str | None = None,
        request_id: str | None = None,
    ) -> tuple[Decision, ...]:
        """The decisions of a limited key's admitted request; raises `RateLimited` or
        `UsageExceeded` (recorded as `admit` does)."""
        if not usage.allowed:
            try:
                raise_if_refused(usage)
            except LimitExceeded as refusal:
                raise self._refused(
                    refusal, address=address, key=key, request_id=request_id
                ) from None
        self._on_admitted()
        return usage.decisions

    def admit_sync(
        self, *, key: VerifiedKey, address: str | None, request_id: str | None = None
    ) -> tuple[Decision, ...]:
        if not key.limited:
            if address is not None and self._suspects.seconds_left(address):
                try:
                    self.throttle.check_sync(address)
                except RateLimited as refusal:
                    raise self._refused(
                        refusal, address=address, key=key, request_id=request_id
                    ) from None
            return ()
        try:
            decisions = self.limiter.enforce_sync(
                key_id=key.key_id, rate_limit=key.rate_limit, quota=key.quota, address=address
            )
        except LimitExceeded as refusal:
            raise self._refused(refusal, address=address, key=key, request_id=request_id) from None
        self._on_decision("allowed")
        return decisions
