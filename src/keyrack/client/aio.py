"""`keyrack.AsyncClient`: the asyncio SDK on httpx (same calls and rules as `keyrack.Client`)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import httpx
from pydantic import BaseModel

from keyrack.client import operations as ops
from keyrack.client.core import (
    Call,
    Page,
    RetryPolicy,
    build_request,
    checked_base_url,
    finish,
)
from keyrack.client.models import (
    ApiKey,
    AuditEvent,
    CreatedApiKey,
    Policy,
    RevokeResult,
    VerifyResult,
)
from keyrack.client.operations import UNSET, QuotaArg, RateLimitArg, Unset

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class AsyncClient:
    """A keyrack server's management API and /verify.

    Failures raise `keyrack.KeyrackClientError` subclasses; `verify` instead returns a
    `VerifyResult` whose `valid` is False when the key is refused.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api_key = api_key
        self._retry = retry or RetryPolicy(max_retries=max_retries)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=checked_base_url(base_url), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call[T]) -> T:
        for attempt in itertools.count():
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.send(build_request(self._http, call, self._api_key))
            except httpx.TransportError as error:
                outcome = error
            delay = self._retry.delay_before_retry(call, attempt, outcome)
            if delay is None:
                return finish(call, outcome)
            await self._sleep(delay)
        raise AssertionError("unreachable: the retry policy bounds the attempts")

    async def _pages(self, call: Call[Page[M]]) -> AsyncIterator[M]:
        next_call: Call[Page[M]] | None = call
        while next_call is not None:
            page = await self._run(next_call)
            for item in page.items:
                yield item
            next_call = next_call.following(page.next_url) if page.next_url else None

    def list_keys(self, org_id: str, *, page_size: int | None = None) -> AsyncIterator[ApiKey]:
        """Every key of the organization, fetching pages as the iteration goes."""
        return self._pages(ops.list_keys(org_id, page_size=page_size))

    async def get_key(self, org_id: str, key_id: str) -> ApiKey:
        return await self._run(ops.get_key(org_id, key_id))

    async def create_key(
        self,
        org_id: str,
        *,
        name: str,
        permissions: Iterable[str],
        expires_at: datetime | None = None,
        rate_limit: RateLimitArg | None = None,
        quota: QuotaArg | None = None,
        idempotency_key: str | None = None,
    ) -> CreatedApiKey:
        """Create a key; the result's `.key` is the secret, returned this once."""
        return await self._run(
            ops.create_key(
                org_id,
                name=name,
                permissions=permissions,
                expires_at=expires_at,
                rate_limit=rate_limit,
                quota=quota,
                idempotency_key=idempotency_key,
            )
        )

    async def update_key(
        self,
        org_id: str,
        key_id: str,
        *,
        name: str | Unset = UNSET,
        permissions: Iterable[str] | Unset = UNSET,
        enabled: bool | Unset = UNSET,
        expires_at: datetime | Unset | None = UNSET,
        rate_limit: RateLimitArg | Unset | None = UNSET,
        quota: QuotaArg | Unset | None = UNSET,
    ) -> ApiKey:
        """Change the given fields; None clears `expires_at`, `rate_limit` or `quota`."""
        return await self._run(
            ops.update_key(
                org_id,
                key_id,
                name=name,
                permissions=permissions,
                enabled=enabled,
                expires_at=expires_at,
                rate_limit=rate_limit,
                quota=quota,
            )
        )

    async def rotate_key(
        self,
        org_id: str,
        key_id: str,
        *,
        grace_period_seconds: int = 0,
        idempotency_key: str | None = None,
    ) -> CreatedApiKey:
        """A new secret for the same key id; the old one works `grace_period_seconds` more."""
        return await self._run(
            ops.rotate_key(
                org_id,
                key_id,
                grace_period_seconds=grace_period_seconds,
                idempotency_key=idempotency_key,
            )
        )

    async def delete_key(self, org_id: str, key_id: str) -> None:
        await self._run(ops.delete_key(org_id, key_id))

    async def revoke_keys(
        self, org_id: str, *, key_ids: Iterable[str] | None = None, all_except_caller: bool = False
    ) -> RevokeResult:
        return await self._run(
            ops.revoke_keys(org_id, key_ids=key_ids, all_except_caller=all_except_caller)
        )

    def list_audit_events(
        self,
        org_id: str,
        *,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[AuditEvent]:
        return self._pages(
            ops.list_audit_events(
                org_id, action=action, since=since, until=until, page_size=page_size
            )
        )

    async def get_policy(self, org_id: str) -> Policy:
        return await self._run(ops.get_policy(org_id))

    async def set_policy(self, org_id: str, policy: Policy) -> Policy:
        return await self._run(ops.set_policy(org_id, policy))

    async def verify(self, key: str, *, permissions: Iterable[str] = ()) -> VerifyResult:
        """The server's verdict on `key`: `.valid` False with a `.code` when refused."""
        return await self._run(ops.verify(key, permissions=permissions))
