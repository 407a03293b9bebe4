"""The Redis limit store: one Lua script checks and counts atomically, so any number of
keyrack instances sharing one Redis together never admit more than a limit.

Time comes from Redis (`TIME` inside the script) so instances with drifting clocks still share
one sliding window; quota periods are named from the local clock (at a period boundary a
drifting instance may count a request in the neighbouring period).

Requests waiting in one event-loop turn share one script call (see `MAX_BATCH` and
`EARLY_BATCH`), and a request's key and address live under different hash tags, so this needs
one Redis (with replicas if wanted), not Redis Cluster. Async use is from one event loop (a
server worker's); its script calls travel pipelined on one connection of their own
(`redis_pipeline.py`) unless the URL needs redis-py (TLS); sync use goes through redis-py.

When Redis cannot be reached within the timeout the configured failure mode decides: `open`
admits unchecked (`Usage.degraded`), `closed` raises `ServiceUnavailable` (503). After a
failure Redis is left alone for `retry_interval` seconds, so an outage costs each request
nothing rather than a timeout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from keyrack.domain.errors import ServiceUnavailable
from keyrack.domain.limits import Quota, RateLimit
from keyrack.logs import ThrottledLog
from keyrack.service.limits import Guard, Usage, UsageCallback
from keyrack.store import redis_pipeline
from keyrack.store.event_loop import RunningLoop
from keyrack.store.limits_lua import (
    ACQUIRE_LUA,
    ScriptRequest,
    quota_day,
    script_call,
    script_request,
    usages,
)

FailureMode = Literal["open", "closed"]
log = logging.getLogger("keyrack.limits")

Batch = list[tuple[ScriptRequest, UsageCallback]]

# Requests go to Redis together, in one script call: the cost of a round trip (encoding,
# syscalls, parsing, and Redis's own per-call work) is paid once per batch. While a batch is
# out, the next one gathers (group commit): the busier the server, the larger the batches,
# and an idle one sends at once.
MAX_BATCH = 128

# ... but once EARLY_BATCH requests have gathered behind a batch that is out, they go too
# rather than wait for its answer (at most two batches out; what gathers behind both waits for
# the first answer). With one batch out at a time, a worker whose callers were all waiting on
# it sat idle for the rest of each round trip: with 32 connections it was busy 0.87-0.90 of a
# core, now 0.97-0.99, and the throughput with a rate limit went from 0.66-0.74 of the
# unlimited to 0.71-0.81 (bench/bench_limits_http.py, docs/PERFORMANCE.md). Sending whatever
# had gathered at once instead made batches of a few requests, costlier for Redis.
EARLY_BATCH = 8

# Subjects whose last script request is kept for the next (see `acquire_then`); past this many,
# the lot is dropped and rebuilt from use (a bound, not an LRU: rebuilding one costs a few us).
MAX_KEPT_REQUESTS = 65_536


class RedisLimitStore:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 0.25,
        failure_mode: FailureMode = "open",
        retry_interval_seconds: float = 1.0,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        use_redis_time: bool = True,
        prefix: str = "keyrack:limits:",
    ) -> None:
        self._url = url
        self._timeout = timeout_seconds
        self.failure_mode: FailureMode = failure_mode
        self._retry_interval = retry_interval_seconds
        self._on_failure = on_failure
        self._clock = clock
        self._use_redis_time = use_redis_time
        self._prefix = prefix
        self._warn = ThrottledLog(log)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._async: tuple[redis.asyncio.Redis, Any] | None = None
        self._sync: tuple[redis.Redis, Any] | None = None
        self._loop = RunningLoop()  # the one event loop using it
        self._pending: Batch = []
        self._kept: dict[str, ScriptRequest] = {}  # by subject, for `acquire_then`
        self._batches_out = 0  # sent and not yet settled
        self._in_flight: set[asyncio.Future[None]] = set()
        # Plain connections use the hand-written pipeline (see redis_pipeline.py); TLS and
        # other options keep redis-py.
        self._pipelined = redis_pipeline.supports(url)
        self._pipeline: redis_pipeline.ScriptPipeline | None = None
        self._connecting: asyncio.Future[redis_pipeline.ScriptPipeline] | None = None
        self.failures = 0

    # -- the LimitStore interface

    def acquire(
        self,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        guard: Guard | None = None,
    ) -> asyncio.Future[Usage]:
        # The batch's future itself, not a coroutine around it: one await less per request.
        return self._run_async(self._request(subject, rate_limit, quota, guard=guard))

    def acquire_then(
        self,
        then: UsageCallback,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
    ) -> None:
        # Called straight from the reply's handler, with the batch's other callbacks.
        # A key asks with the same limits on every request, so its part of the script call is
        # kept by subject and reused while the limits are the very same objects (the key cache
        # hands out one set per cached key) and a quota's period is still that day's.
        request = self._kept.get(subject)
        if (
            request is None
            or request.rate_limit is not rate_limit
            or request.quota is not quota
            or (quota is not None and request.day != quota_day(self._clock()))
        ):
            request = self._request(subject, rate_limit, quota)
            if len(self._kept) >= MAX_KEPT_REQUESTS:
                self._kept.clear()
            self._kept[subject] = request
        self._enqueue(request, then)

    def acquire_sync(
        self,
        *,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        guard: Guard | None = None,
    ) -> Usage:
        return self._run_sync(self._request(subject, rate_limit, quota, guard=guard))

    def peek(self, *, subject: str, rate_limit: RateLimit) -> asyncio.Future[Usage]:
        return self._run_async(self._request(subject, rate_limit, None, peek=True))

    def peek_sync(self, *, subject: str, rate_limit: RateLimit) -> Usage:
        return self._run_sync(self._request(subject, rate_limit, None, peek=True))

    async def health(self) -> str | None:
        """A PING within the deadline of a script call; an answer also ends the pause after a
        failure, so limits are enforced again from the next request on."""
        try:
            self._async_script()
            assert self._async is not None
            async with asyncio.timeout(self._timeout * 3):
                await self._async[0].ping()
        except (RedisError, OSError, TimeoutError):
            return "unreachable"
        with self._lock:
            self._down_until = 0.0
        return "ok"

    async def aclose(self) -> None:
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            pipeline.close()
        if self._async is not None:
            client, self._async = self._async[0], None
            await client.aclose()
        self.close()

    def close(self) -> None:
        if self._sync is not None:
            client, self._sync = self._sync[0], None
            client.close()

    # -- internals

    def _request(
        self,
        subject: str,
        rate_limit: RateLimit | None,
        quota: Quota | None,
        *,
        peek: bool = False,
        guard: Guard | None = None,
    ) -> ScriptRequest:
        return script_request(
            prefix=self._prefix,
            subject=subject,
            rate_limit=rate_limit,
            quota=quota,
            peek=peek,
            now=self._clock(),
            guard=guard,
        )

    def _now_ms(self) -> int | None:
        return None if self._use_redis_time else int(self._clock() * 1000)

    def _is_down(self) -> bool:
        # Reads the clock only after a failure: this runs on every request.
        return bool(self._down_until) and time.monotonic() < self._down_until

    def _unavailable(self, reason: str, error: BaseException | None) -> Usage:
        """Apply the failure mode; counted, reported to the metrics hook, logged sparingly."""
        with self._lock:
            self.failures += 1
            if error is not None:
                self._down_until = time.monotonic() + self._retry_interval
        if self._on_failure is not None:
            self._on_failure(reason)
        if error is not None:
            self._warn.warning(
                "usage limits: Redis unreachable (%s: %s); failing %s for the next %.1fs",
                type(error).__name__,
                error,
                self.failure_mode,
                self._retry_interval,
            )
        if self.failure_mode == "open":
            return Usage(degraded=True)
        raise ServiceUnavailable("usage limits cannot be checked right now; retry shortly")

    def _async_script(self) -> Any:
        if self._async is None:
            client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=AsyncRetry(NoBackoff(), 0),
            )
            self._async = (client, client.register_script(ACQUIRE_LUA))
        return self._async[1]

    def _sync_script(self) -> Any:
        with self._lock:
            if self._sync is None:
                client = redis.Redis.from_url(
                    self._url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=Retry(NoBackoff(), 0),
                )
                self._sync = (client, client.register_script(ACQUIRE_LUA))
            return self._sync[1]

    def _run_async(self, request: ScriptRequest) -> asyncio.Future[Usage]:
        """A future resolved by `_send` (whose call to Redis has a deadline) with the usage, or
        with the failure mode's answer when Redis cannot be reached."""
        future: asyncio.Future[Usage] = self._loop.get().create_future()
        self._enqueue(request, functools.partial(_settle_future, future))
        return future

    def _enqueue(self, request: ScriptRequest, then: UsageCallback) -> None:
        """`then` gets the usage, or the failure mode's answer, from the event loop, never
        before this returns."""
        if self._is_down():
            self._loop.get().call_soon(then, self._unavailable_outcome("skipped", None))
            return
        pending = self._pending
        pending.append((request, then))
        if len(pending) == 1:
            if not self._batches_out:
                self._loop.get().call_soon(self._send_pending)
        elif len(pending) >= EARLY_BATCH and self._batches_out == 1:
            self._send_pending()  # early (see EARLY_BATCH); `then` still runs from the loop

    def _unavailable_outcome(
        self, reason: str, error: BaseException | None
    ) -> Usage | ServiceUnavailable:
        try:
            return self._unavailable(reason, error)
        except ServiceUnavailable as refusal:
            return refusal

    def _send_pending(self) -> None:
        """Send what is waiting, in batches of at most MAX_BATCH."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._batches_out += 1
            self._send_batch(batch)

    def _send_batch(self, batch: Batch) -> None:
        pipeline = self._pipeline
        if pipeline is not None and pipeline.connected:
            self._call(pipeline, batch)  # the usual case: no task, no await
            return
        task = asyncio.ensure_future(self._send(batch))
        self._in_flight.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._in_flight.discard)

    def _call(self, pipeline: redis_pipeline.ScriptPipeline, batch: Batch) -> None:
        requests = [request for request, _ in batch]
        _, args = script_call(requests, now_ms=self._now_ms())
        pipeline.call(args, lambda reply: self._settle(batch, requests, reply))

    async def _connected_pipeline(self) -> redis_pipeline.ScriptPipeline:
        """The pipeline, connected once for all the batches that wait for it."""
        if self._pipeline is not None and self._pipeline.connected:
            return self._pipeline
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(
                redis_pipeline.ScriptPipeline.open(self._url, ACQUIRE_LUA, timeout=self._timeout)
            )
        connecting = self._connecting
        try:
            self._pipeline = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        return self._pipeline

    async def _send(self, batch: Batch) -> None:
        requests = [request for request, _ in batch]
        try:
            if self._pipelined:
                self._call(await self._connected_pipeline(), batch)
                return
            keys, args = script_call(requests, now_ms=self._now_ms())
            # A hard ceiling on top of the socket timeouts (connect, then a possible NOSCRIPT
            # reload, each get their own timeout).
            async with asyncio.timeout(self._timeout * 3):
                reply = await self._async_script()(keys=keys, args=args)
        except Exception as error:  # noqa: BLE001 - handed to every caller waiting on it
            reply = error
        self._settle(batch, requests, reply)

    def _settle(self, batch: Batch, requests: list[ScriptRequest], reply: Any) -> None:
        """Answer each request's waiter from the script's reply (or the error instead), then
        send what gathered meanwhile, if nothing else is out or enough gathered (EARLY_BATCH).
        (Sending first, so that Redis works on the next batch while these answers are written,
        was measured and left the worker waiting longer on the 2-core benchmark machine, where
        Redis then takes the core that wrk needs to send the next requests:
        docs/PERFORMANCE.md.)"""
        try:
            self._resolve(batch, requests, reply)
        finally:
            self._batches_out -= 1
            pending = self._pending
            if pending and (
                not self._batches_out or (self._batches_out == 1 and len(pending) >= EARLY_BATCH)
            ):
                self._send_pending()

    def _resolve(self, batch: Batch, requests: list[ScriptRequest], reply: Any) -> None:
        outcomes: Sequence[Usage | BaseException] = ()
        if not isinstance(reply, Exception):
            try:
                outcomes = usages(requests, reply)
            except Exception as error:  # noqa: BLE001 - a reply of the wrong shape
                reply = error
            else:
                self._down_until = 0.0  # Redis answers: no pause to check any more
        if isinstance(reply, RedisError | OSError | TimeoutError):
            outcomes = [self._unavailable_outcome("unreachable", reply) for _ in batch]
        elif isinstance(reply, Exception):
            outcomes = [reply] * len(batch)
        for (_, then), outcome in zip(batch, outcomes, strict=True):
            try:
                then(outcome)
            except Exception as error:  # noqa: BLE001 - the other waiters still get theirs
                # the type only, as elsewhere on the verify path: a message could hold a key
                log.error(
                    "usage limits: a waiting request's callback failed (%s)", type(error).__name__
                )

    def _run_sync(self, request: ScriptRequest) -> Usage:
        if self._is_down():
            return self._unavailable("skipped", None)
        try:
            keys, args = script_call([request], now_ms=self._now_ms())
            reply = self._sync_script()(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            return self._unavailable("unreachable", error)
        return usages([request], reply)[0]


def _settle_future(future: asyncio.Future[Usage], outcome: Usage | BaseException) -> None:
    if future.done():  # cancelled: its caller is gone
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
