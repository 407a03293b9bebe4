"""Failed management authentications, written to the audit log in bursts.

A key that belongs to an org but is refused (expired, disabled, rotated out, lacking a
permission) is counted in memory per org, key, reason and minute; a background thread writes one
`auth.failed` event per such burst. The request path only updates a dict under a lock, so a flood
of failures costs no database write per request, and the memory is bounded by `max_buckets`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from keyrack.domain.audit import AUTH_FAILED, AuditEvent
from keyrack.domain.model import utcnow
from keyrack.store.uow import UnitOfWork

log = logging.getLogger("keyrack.audit")
MAX_IPS_PER_BURST = 10


@dataclass
class _Burst:
    first_at: datetime
    last_at: datetime
    count: int = 0
    client_ips: list[str] = field(default_factory=list)
    request_id: str | None = None


BucketKey = tuple[str, str, str, datetime]  # org id, key id, reason, minute


class AuthFailureLog:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        *,
        flush_seconds: float = 15.0,
        max_buckets: int = 10_000,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._uow_factory = uow_factory
        self._flush_seconds = flush_seconds
        self._max_buckets = max_buckets
        self._clock = clock
        self._bursts: dict[BucketKey, _Burst] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def note(
        self,
        *,
        org_id: str,
        key_id: str,
        reason: str,
        client_ip: str | None = None,
        request_id: str | None = None,
    ) -> None:
        now = self._clock()
        bucket = (org_id, key_id, reason, now.replace(second=0))
        with self._lock:
            burst = self._bursts.get(bucket)
            if burst is None:
                if len(self._bursts) >= self._max_buckets:
                    self.dropped += 1
                    return
                burst = self._bursts[bucket] = _Burst(first_at=now, last_at=now)
            burst.count += 1
            burst.last_at = now
            burst.request_id = request_id or burst.request_id
            known_ip = client_ip in burst.client_ips
            if client_ip and not known_ip and len(burst.client_ips) < MAX_IPS_PER_BURST:
                burst.client_ips.append(client_ip)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="keyrack-auth-failures", daemon=True
                )
                self._thread.start()

    def flush(self, *, everything: bool = False) -> int:
        """Write the bursts whose minute is over (all of them with `everything`)."""
        cutoff = self._clock().replace(second=0)
        with self._lock:
            ready = {k: v for k, v in self._bursts.items() if everything or k[3] < cutoff}
            for bucket in ready:
                del self._bursts[bucket]
        if not ready:
            return 0
        try:
            with self._uow_factory() as uow:
                for (org_id, key_id, reason, minute), burst in ready.items():
                    uow.repo.add_audit_event(_event(org_id, key_id, reason, minute, burst))
                uow.commit()
        except Exception:  # noqa: BLE001 - a failed write must not kill the flusher
            log.warning("could not write %d failed-authentication bursts; retrying", len(ready))
            with self._lock:
                for bucket, burst in ready.items():
                    self._bursts.setdefault(bucket, burst)
            return 0
        return len(ready)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush(everything=True)

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()


def _event(org_id: str, key_id: str, reason: str, minute: datetime, burst: _Burst) -> AuditEvent:
    return AuditEvent(
        org_id=org_id,
        occurred_at=burst.last_at,
        action=AUTH_FAILED,
        actor_key_id=key_id,
        target=key_id,
        client_ip=burst.client_ips[0] if burst.client_ips else None,
        request_id=burst.request_id,
        details={
            "reason": reason,
            "count": burst.count,
            "minute": minute.isoformat(),
            "first_at": burst.first_at.isoformat(),
            "last_at": burst.last_at.isoformat(),
            "client_ips": burst.client_ips,
        },
    )
