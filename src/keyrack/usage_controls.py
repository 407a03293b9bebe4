"""Builds the usage controls (limit store, per-key limiter, failed-login throttle) from settings."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from keyrack.service.limits import AuthFailureThrottle, LimitStore, UsageLimiter
from keyrack.settings import Settings
from keyrack.store.limits_memory import InProcessLimitStore
from keyrack.store.limits_redis import RedisLimitStore


@dataclass
class UsageControls:
    store: LimitStore
    limiter: UsageLimiter
    auth_throttle: AuthFailureThrottle
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network]

    async def aclose(self) -> None:
        await self.store.aclose()

    def close(self) -> None:
        self.store.close()


def make_limit_store(
    settings: Settings, *, on_failure: Callable[[str], None] | None = None
) -> LimitStore:
    """Redis when `KEYRACK_REDIS_URL` is set (shared by every instance), else in-process."""
    if settings.redis_url:
        return RedisLimitStore(
            settings.redis_url,
            timeout_seconds=settings.redis_timeout_seconds,
            failure_mode=settings.limits_failure_mode,
            on_failure=on_failure,
        )
    return InProcessLimitStore()


def build_usage_controls(
    settings: Settings, *, on_failure: Callable[[str], None] | None = None
) -> UsageControls:
    """`on_failure(reason)` is the metrics hook: called once per request decided without Redis
    (`reason` is "unreachable" for a failed attempt, "skipped" while Redis is left alone)."""
    store = make_limit_store(settings, on_failure=on_failure)
    auth_throttle = AuthFailureThrottle(
        store,
        limit=settings.auth_failure_limit,
        window_seconds=settings.auth_failure_window_seconds,
    )
    return UsageControls(
        store=store,
        limiter=UsageLimiter(store, auth_throttle=auth_throttle),
        auth_throttle=auth_throttle,
        trusted_proxies=list(settings.trusted_proxies),
    )
