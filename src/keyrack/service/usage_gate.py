"""Usage controls as every entry point applies them: the failed-authentication throttle by
client address, then the authenticated key's rate limit and quota.

Keys without limits cost nothing here while no address is blocked: the shared store (Redis) is
asked only about failures and limited keys. Which addresses are blocked is remembered in the
process (`_blocked`, until the block ends) from the store's own answers: every failure is
counted in the store, so a guesser gets blocked on any instance it reaches after at most one
more failure there, and a valid key from a blocked address is then refused too (a 200 among
the 429s would tell the guesser which guess was right).
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
from keyrack.service.limits import BLOCKED_DETAIL, AuthFailureThrottle, UsageLimiter

log = logging.getLogger("keyrack.limits")

# Refusals that count as a failed authentication. A request without any key (MISSING) is not a
# guess: counting it would block every browser behind one NAT that opens a protected page.
COUNTED_FAILURES = frozenset({"MALFORMED", "NOT_FOUND", "EXPIRED", "DISABLED"})
THROTTLED = "THROTTLED"  # the audit reason for a known key refused from a blocked address
MAX_BLOCKED_ADDRESSES = 100_000


class UsageGate:
    def __init__(
        self,
        *,
        limiter: UsageLimiter,
        throttle: AuthFailureThrottle,
        audit: AuthFailureLog | None = None,
        on_decision: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limiter = limiter
        self.throttle = throttle
        self._audit = audit
        self._on_decision = on_decision or (lambda _decision: None)
        self._clock = clock
        self._blocked: dict[str, float] = {}  # address -> when its block ends (POSIX seconds)
        self._lock = threading.Lock()
        self._warn = ThrottledLog(log)

    @property
    def any_blocked(self) -> bool:
        """Cheap test for the hot path: only then is the client address worth computing."""
        return bool(self._blocked)

    def refusal_for(self, address: str | None) -> RateLimited | None:
        """The 429 for an address this process knows to be blocked, else None."""
        if address is None:
            return None
        until = self._blocked.get(address)
        if until is None:
            return None
        wait = math.ceil(until - self._clock())
        if wait <= 0:
            with self._lock:
                self._blocked.pop(address, None)
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
        with self._lock:
            if len(self._blocked) >= MAX_BLOCKED_ADDRESSES:
                now = self._clock()
                self._blocked = {a: t for a, t in self._blocked.items() if t > now}
                if len(self._blocked) >= MAX_BLOCKED_ADDRESSES:
                    self._blocked.clear()  # bounded; the store still has every failure
            self._blocked[address] = self._clock() + max(1, seconds)

    def _counted(self, address: str, decisions: tuple[Decision, ...]) -> None:
        """A failure that filled the address's window blocks it from the next request on."""
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
            raise self._refused(refusal, address=address, key=key, request_id=request_id) from None

    def failed_sync(
        self, *, code: str, address: str | None, key: VerifiedKey | None, request_id: str | None
    ) -> None:
        if address is None or code not in COUNTED_FAILURES:
            return
        try:
            self._counted(address, self.throttle.record_failure_sync(address))
        except RateLimited as refusal:
            raise self._refused(refusal, address=address, key=key, request_id=request_id) from None

    # -- authenticated keys

    async def admit(
        self, *, key: VerifiedKey, address: str | None, request_id: str | None = None
    ) -> tuple[Decision, ...]:
        """Count one request of a limited key, checking the address's block in the same store
        call. Raises `RateLimited` or `UsageExceeded`; returns the decisions for the
        `RateLimit` headers (none for a key without limits)."""
        if not key.limited:
            return ()
        try:
            decisions = await self.limiter.enforce(
                key_id=key.key_id, rate_limit=key.rate_limit, quota=key.quota, address=address
            )
        except LimitExceeded as refusal:
            raise self._refused(refusal, address=address, key=key, request_id=request_id) from None
        self._on_decision("allowed")
        return decisions

    def admit_sync(
        self, *, key: VerifiedKey, address: str | None, request_id: str | None = None
    ) -> tuple[Decision, ...]:
        if not key.limited:
            return ()
        try:
            decisions = self.limiter.enforce_sync(
                key_id=key.key_id, rate_limit=key.rate_limit, quota=key.quota, address=address
            )
        except LimitExceeded as refusal:
            raise self._refused(refusal, address=address, key=key, request_id=request_id) from None
        self._on_decision("allowed")
        return decisions
