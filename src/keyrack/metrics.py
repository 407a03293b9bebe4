"""Prometheus metrics: every series keyrack exports (prefixed `keyrack_`), with cheap recorders.

Labels take values from small fixed sets only (codes, route templates, methods, statuses), so the
number of series stays bounded whatever clients send. Recorders for the verify path use children
bound once at import: recording is then one lock and one add, no label lookup.

With several uvicorn workers set `PROMETHEUS_MULTIPROC_DIR` (`keyrack serve --workers N` does so
itself): every worker then writes to memory-mapped files in that directory and `/metrics` adds
them up, so any worker answers for all of them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
import time
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event

MULTIPROC_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"

# `*_created` timestamps double the series count and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

VERIFY_CODES = (
    "VALID",
    "MISSING",
    "MALFORMED",
    "NOT_FOUND",
    "EXPIRED",
    "DISABLED",
    "INSUFFICIENT_PERMISSIONS",
    "RATE_LIMITED",
    "USAGE_EXCEEDED",
    # answers that are not about a key: a bad request, or the database unavailable
    "METHOD_NOT_ALLOWED",
    "CONTENT_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "MALFORMED_JSON",
    "INVALID_INPUT",
    "SERVICE_UNAVAILABLE",
    "INTERNAL_ERROR",
)
# "throttled": refused because the client address failed to authenticate too often.
RATE_LIMIT_DECISIONS = ("allowed", "rate_limited", "usage_exceeded", "throttled")
LIMIT_STORE_FAILURES = ("unreachable", "skipped")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"

# Sub-millisecond buckets for verify (a cache hit takes tens of microseconds), wider for the rest.
VERIFY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

verifications = Counter(
    "keyrack_verifications_total", "Key verifications by outcome code", ["code"]
)
verify_duration = Histogram(
    "keyrack_verify_duration_seconds", "Time to answer a verification", buckets=VERIFY_BUCKETS
)
verify_cache_lookups = Counter(
    "keyrack_verify_cache_lookups_total",
    "Verify cache lookups by result; hit ratio = hit / (hit + miss)",
    ["result"],
)
rate_limit_decisions = Counter(
    "keyrack_rate_limit_decisions_total", "Rate-limit and quota decisions", ["decision"]
)
limit_store_failures = Counter(
    "keyrack_limit_store_failures_total",
    "Requests decided without the limit store (Redis): unreachable, or skipped while it is down;"
    " KEYRACK_LIMITS_FAILURE_MODE says whether they were admitted or answered 503",
    ["reason"],
)
database_errors = Counter(
    "keyrack_database_errors_total", "Database errors by SQLAlchemy error class", ["error"]
)
revocation_feed_connected = Gauge(
    "keyrack_revocation_feed_connected",
    "1 while the key change feed is connected (0: the verify cache is bypassed); "
    "with several workers the lowest of the live workers",
    multiprocess_mode="livemin",
)
http_requests = Counter(
    "keyrack_http_requests_total",
    "HTTP requests by route template, method and status (verify has its own series)",
    ["route", "method", "status"],
)
http_duration = Histogram(
    "keyrack_http_request_duration_seconds",
    "HTTP request latency by route template and method",
    ["route", "method"],
    buckets=HTTP_BUCKETS,
)

_VERIFY_OUTCOMES = {code: verifications.labels(code=code) for code in VERIFY_CODES}
_CACHE_HIT = verify_cache_lookups.labels(result="hit")
_CACHE_MISS = verify_cache_lookups.labels(result="miss")
_RATE_LIMIT = {decision: rate_limit_decisions.labels(decision) for decision in RATE_LIMIT_DECISIONS}


def record_verification(code: str, seconds: float) -> None:
    """One verify answer; `code` is one of VERIFY_CODES (anything else is counted as OTHER)."""
    counter = _VERIFY_OUTCOMES.get(code)
    if counter is None:
        counter = verifications.labels(code="OTHER")
    counter.inc()
    verify_duration.observe(seconds)


def record_cache_lookup(*, hit: bool) -> None:
    (_CACHE_HIT if hit else _CACHE_MISS).inc()


def record_rate_limit(decision: str) -> None:
    """`decision` is one of RATE_LIMIT_DECISIONS."""
    _RATE_LIMIT[decision].inc()


def record_limit_store_failure(reason: str) -> None:
    """The usage controls' `on_failure` hook; `reason` is one of LIMIT_STORE_FAILURES."""
    limit_store_failures.labels(reason if reason in LIMIT_STORE_FAILURES else "other").inc()


def record_database_error(error: BaseException) -> None:
    """A database error outside SQLAlchemy (raw sqlite3 or psycopg), labelled by its class."""
    database_errors.labels(type(error).__name__).inc()


def record_revocation_feed(*, connected: bool) -> None:
    revocation_feed_connected.set(1 if connected else 0)


class VerifyRecorder:
    """Counts `/verify` answers in plain integers and hands the totals to prometheus_client at
    most once per `interval` seconds, and before every exposition.

    Hand-written because each prometheus_client `inc`/`observe` takes a lock (and in multiprocess
    mode writes a memory-mapped file): about 2 us per verification single-process and 6 us with
    workers, against a cache hit of 30-50 us that is over the 5% budget. Here a verification is
    a few integer additions and one `bisect`. Not thread-safe by design: it is only used on the
    event loop's thread (the `/verify` endpoint and the `/metrics` handler both run there).
    """

    def __init__(self, *, interval: float = 1.0) -> None:
        self.interval = interval
        self._codes: dict[str, int] = {}
        self._buckets = [0] * (len(VERIFY_BUCKETS) + 1)  # the last one is +Inf
        self._seconds = 0.0
        self._hits = 0
        self._misses = 0
        self._valid_hits = 0  # VALID answers from the cache, counted apart: the hot path
        self._admitted = 0  # requests of keys with limits let through (rate-limit decisions)
        self._flush_due: float | None = None  # while something is pending

    def record(self, code: str, seconds: float, cache_hit: bool | None, now: float) -> None:
        """One answer; `cache_hit` None when no cache lookup happened (no or malformed key);
        `now` is `time.perf_counter()`, which the caller has just read anyway."""
        codes = self._codes
        codes[code] = codes.get(code, 0) + 1
        if cache_hit is not None:
            if cache_hit:
                self._hits += 1
            else:
                self._misses += 1
        self._observe(seconds, now)

    def record_valid_hit(self, started: float) -> None:
        """`record(VALID, ..., True, ...)` for an answer that began at `perf_counter()` value
        `started`, with less work: the commonest answer."""
        now = time.perf_counter()
        self._valid_hits += 1
        self._observe(now - started, now)

    def record_admitted(self) -> None:
        """`record_rate_limit("allowed")`, batched: a key with limits let through (on every
        such request, from the event loop's thread only)."""
        self._admitted += 1
        if self._flush_due is None:  # else a flush is due anyway
            self._pending(time.perf_counter())

    def _observe(self, seconds: float, now: float) -> None:
        self._buckets[bisect_left(VERIFY_BUCKETS, seconds)] += 1
        self._seconds += seconds
        self._pending(now)

    def _pending(self, now: float) -> None:
        if self._flush_due is None:
            self._flush_due = now + self.interval
            # An idle worker must not sit on its counts: flush them without waiting for a request.
            with contextlib.suppress(RuntimeError):  # no running loop: the next record flushes
                asyncio.get_running_loop().call_later(self.interval, self.flush)
        elif now >= self._flush_due:
            self.flush()

    def flush(self) -> None:
        if self._flush_due is None:
            return
        codes, self._codes = self._codes, {}
        buckets, self._buckets = self._buckets, [0] * len(self._buckets)
        seconds, self._seconds = self._seconds, 0.0
        hits, misses, self._hits, self._misses = self._hits, self._misses, 0, 0
        if self._valid_hits:
            codes["VALID"] = codes.get("VALID", 0) + self._valid_hits
            hits += self._valid_hits
            self._valid_hits = 0
        admitted, self._admitted = self._admitted, 0
        self._flush_due = None
        if admitted:
            _RATE_LIMIT["allowed"].inc(admitted)
        for code, count in codes.items():
            counter = _VERIFY_OUTCOMES.get(code) or verifications.labels(code="OTHER")
            counter.inc(count)
        _add_observations(verify_duration, buckets, seconds)
        if hits:
            _CACHE_HIT.inc(hits)
        if misses:
            _CACHE_MISS.inc(misses)


def _add_observations(histogram: Histogram, buckets: list[int], total: float) -> None:
    """Adds pre-bucketed observations. prometheus_client has no public bulk `observe`, so this
    uses the per-bucket values `observe` itself updates (`_buckets`, `_sum`);
    tests/unit/test_verify_telemetry.py compares the result with `observe` to catch a change."""
    for index, count in enumerate(buckets):
        if count:
            histogram._buckets[index].inc(count)
    histogram._sum.inc(total)


# The /verify endpoint's recorder; one per process, like the metrics it feeds.
verify_recorder = VerifyRecorder()


def record_http(route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "OTHER"
    http_requests.labels(route, method, str(status)).inc()
    http_duration.labels(route, method).observe(seconds)


# Mounted apps and plain Starlette routes: FastAPI records only its own routes in scope["route"].
UNTEMPLATED_ROUTES = ("/ui/", "/docs-assets/", "/openapi.json")


def route_template(scope: dict[str, Any] | Any) -> str:
    """The matched route's template (`/orgs/{org_id}/api_keys`), never the raw path."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    requested: str = scope["path"]
    for prefix in UNTEMPLATED_ROUTES:
        if requested.startswith(prefix):
            return prefix
    return UNMATCHED_ROUTE


def watch_database_errors(engine: Engine) -> None:
    """Counts every error SQLAlchemy reports for this engine, connection failures included."""

    def on_error(context: Any) -> None:
        database_errors.labels(type(context.sqlalchemy_exception).__name__).inc()

    event.listen(engine, "handle_error", on_error)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric: of all workers in multiprocess mode."""
    verify_recorder.flush()
    if os.environ.get(MULTIPROC_DIR_VAR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def use_multiprocess_directory(workers: int) -> None:
    """With several workers and no `PROMETHEUS_MULTIPROC_DIR` set, point it at a fresh temporary
    directory, removed when this (the supervising) process exits. A directory given by the
    operator is used as is; they should empty it between runs."""
    if workers <= 1 or os.environ.get(MULTIPROC_DIR_VAR):
        return
    directory = tempfile.mkdtemp(prefix="keyrack-metrics-")
    os.environ[MULTIPROC_DIR_VAR] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
