"""What `/verify` reports about its answers: batched metrics, and refusals logged sparingly.

A successful verification is only counted (`keyrack_verifications_total{code="VALID"}`), never
logged: verify runs on every request of the platform. A refusal is logged at most once per
interval per code, with how many like it were held back, so a client hammering with a revoked key
(or a database outage) gives one line every few seconds instead of one per request. Lines carry
the request id, the key's org and id when the key was found, the method and the client address,
never the presented key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from keyrack.api.asgi import Scope
from keyrack.metrics import VerifyRecorder
from keyrack.service.key_cache import VerifiedKey

log = logging.getLogger("keyrack.verify")

VALID = "VALID"


class RefusalLog:
    """One line per refusal code per `interval` seconds; the codes come from a fixed set, so the
    bookkeeping stays a handful of entries."""

    def __init__(
        self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def refused(
        self,
        code: str,
        status: int,
        *,
        key: VerifiedKey | None,
        request_id: bytes,
        scope: Scope,
        error: Exception | None = None,
    ) -> None:
        now = self._clock()
        if now < self._next.get(code, float("-inf")):
            self._held_back[code] = self._held_back.get(code, 0) + 1
            return
        self._next[code] = now + self.interval
        held_back = self._held_back.pop(code, 0)
        level = logging.ERROR if status >= 500 else logging.INFO
        if not log.isEnabledFor(level):
            return
        client = scope.get("client")
        log.log(
            level,
            "verification refused",
            extra={
                "code": code,
                "status": status,
                "request_id": request_id.decode("ascii"),
                "org_id": key.org_id if key else None,
                "key_id": key.key_id if key else None,
                "method": scope["method"],
                "client": client[0] if client else None,
                "held_back": held_back,  # refusals with this code since its last line
                "error": type(error).__name__ if error is not None else None,
            },
        )


class VerifyTelemetry:
    """Both reports behind one call from the endpoint; `recorder` None turns metrics off
    (`KEYRACK_METRICS=false`), `refusals` None turns refusal logging off."""

    def __init__(self, *, recorder: VerifyRecorder | None, refusals: RefusalLog | None) -> None:
        self.recorder = recorder
        self.refusals = refusals

    def valid_hit(self, started: float) -> None:
        """`answered` for a valid key found in the cache (nothing to log), with less work."""
        if self.recorder is not None:
            self.recorder.record_valid_hit(started)

    def answered(
        self,
        code: str,
        status: int,
        started: float,
        cache_hit: bool | None,
        key: VerifiedKey | None,
        request_id: tuple[bytes, bytes],
        scope: Scope,
        error: Exception | None = None,
    ) -> None:
        """One answer sent; `started` is its `time.perf_counter()` at arrival, `request_id` its
        `X-Request-ID` header; `cache_hit` None when no cache lookup happened."""
        recorder = self.recorder
        if recorder is not None:
            now = time.perf_counter()
            recorder.record(code, now - started, cache_hit, now)
        if code != VALID and self.refusals is not None:
            self.refusals.refused(
                code, status, key=key, request_id=request_id[1], scope=scope, error=error
            )
