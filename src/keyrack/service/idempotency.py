"""Idempotent POSTs (IETF httpapi-idempotency-key draft, Stripe's behaviour).

A request first claims its key in a short transaction of its own, so that a concurrent retry
sees the claim and gets 409; the use case then stores the sealed response in the same
transaction as its effect (a created key is never without its stored response, or vice versa).
A claim left behind by a crashed process is taken over after `STALE_CLAIM`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyrack.domain.errors import IdempotencyInFlight, IdempotencyKeyReused, InvalidInput
from keyrack.domain.model import CreatedKey, utcnow
from keyrack.service.sealing import ResponseSealer
from keyrack.store.idempotency_queries import COMPLETED, IdempotencyScope
from keyrack.store.uow import UnitOfWork

RETENTION = timedelta(hours=24)
STALE_CLAIM = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


def check_idempotency_key(value: str) -> str:
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not value.isascii() or not value.isprintable():
        raise InvalidInput(
            f"must be 1-{MAX_KEY_LENGTH} printable ASCII characters", field="Idempotency-Key"
        )
    return value


def request_fingerprint(method: str, path: str, body: object) -> str:
    """SHA-256 of the method, path and canonical JSON body: what "the same request" means."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotentRequest:
    scope: IdempotencyScope
    fingerprint: str
    sealer: ResponseSealer
    render: Callable[[CreatedKey], dict[str, Any]]

    @property
    def _binding(self) -> str:
        scope = self.scope
        return f"{scope.org_id}\n{scope.caller_key_id}\n{scope.idempotency_key}"

    def complete(self, uow: UnitOfWork, created: CreatedKey) -> None:
        """Store the response inside the use case's own transaction, before it commits."""
        sealed = self.sealer.seal(self.render(created), bound_to=self._binding)
        uow.repo.complete_idempotency(self.scope, response_status=200, sealed_body=sealed)

    def open(self, sealed: str) -> dict[str, Any] | None:
        return self.sealer.open(sealed, bound_to=self._binding)


def claim(
    *, uow: UnitOfWork, request: IdempotentRequest, now: datetime | None = None
) -> dict[str, Any] | None:
    """None: this request now owns the key and must `complete` or `release` it.
    A dict: the first response, to be replayed as it is."""
    now = now or utcnow()
    scope = request.scope
    with uow:
        uow.repo.purge_idempotency(org_id=scope.org_id, now=now)  # lazy clean-up, one org
        record = uow.repo.get_idempotency(scope)
        if record is not None:
            if record.request_hash != request.fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used with a different request"
                )
            if record.status == COMPLETED and record.sealed_body is not None:
                body = request.open(record.sealed_body)
                if body is not None:
                    return body
            elif now - record.created_at < STALE_CLAIM:
                raise IdempotencyInFlight(
                    "a request with this Idempotency-Key is still in progress; retry shortly"
                )
            uow.repo.release_idempotency(scope)  # abandoned, or sealed under an old pepper
        claimed = uow.repo.claim_idempotency(
            scope, request_hash=request.fingerprint, now=now, expires_at=now + RETENTION
        )
        if not claimed:
            raise IdempotencyInFlight(
                "a request with this Idempotency-Key is still in progress; retry shortly"
            )
        uow.commit()
    return None


def release(*, uow: UnitOfWork, request: IdempotentRequest) -> None:
    """Drop the claim of a request that failed, so that a corrected retry can run."""
    with uow:
        uow.repo.release_idempotency(request.scope)
        uow.commit()
