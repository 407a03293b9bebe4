"""Pure ASGI layers in front of the FastAPI app: dispatch, body limit, access log.

Written as raw ASGI rather than Starlette middleware because `BaseHTTPMiddleware` costs a large
share of throughput and these run on every request.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from keyrack import metrics
from keyrack.api.problems import PROBLEM_JSON, HttpProblem, encode, problem_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("keyrack.access")

# Successful answers here are counted, not logged one by one (verify runs on every platform call).
COUNTED_PATHS = frozenset({"/verify", "/healthz", "/readyz", "/metrics"})
# The verify path records its own, cheaper series (`keyrack.metrics.record_verification`).
UNMETERED_PATHS = frozenset({"/verify"})
# A client-supplied request id is echoed only when it is a short token (no log or header games).
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:+=/-]{1,128}")
# Something shaped like a key (prefix, underscore, 38 base62 characters) pasted into a path.
_KEY_LIKE = re.compile(r"[A-Za-z0-9]{1,16}_[A-Za-z0-9]{30,}")
# ... or sent as a request id, which is logged and stored with audit events: replaced.
_KEY_LIKE_BYTES = re.compile(_KEY_LIKE.pattern.encode())


async def send_problem(send: Send, status: int, code: str, detail: str) -> None:
    body = encode(problem_body(status, code, detail))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413, by Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await send_problem(send, 413, "CONTENT_TOO_LARGE", self._detail())
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HttpProblem(413, "CONTENT_TOO_LARGE", self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"the request body is larger than {self.max_bytes // 1024} KiB"


class AccessLog:
    """One JSON line per request (request id, org, key id, method, path without the query string,
    status, duration) and the HTTP metrics; header values are never written.

    `X-Request-ID` is honoured when it is a short token, generated otherwise, returned on every
    answer and kept in `scope["state"]["request_id"]` for handlers and the audit log. Handlers
    put the caller's `org_id` and `key_id` in `scope["state"]` too. Successful answers on
    `counted_paths` (verify, probes, scrapes) are only counted, in one summary line per
    `summary_seconds`; `unmetered_paths` (verify) record their own metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        counted_paths: frozenset[str] = COUNTED_PATHS,
        unmetered_paths: frozenset[str] = UNMETERED_PATHS,
        summary_seconds: float = 60.0,
        metered: bool = True,
    ) -> None:
        self.app = app
        self.metered = metered  # False: no HTTP metrics (KEYRACK_METRICS=false)
        self.counted_paths = counted_paths
        self.unmetered_paths = unmetered_paths
        self.summary_seconds = summary_seconds
        self._counts: dict[str, int] = {}
        self._window_started = time.perf_counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope["headers"]) or _new_request_id()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        request_id_header = (b"x-request-id", request_id.encode("ascii"))
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            finished = time.perf_counter()
            path: str = scope["path"]
            if self.metered and path not in self.unmetered_paths:
                metrics.record_http(
                    metrics.route_template(scope), scope["method"], status, finished - started
                )
            if status < 400 and path in self.counted_paths:
                self._count(path, finished)
            else:
                self._log(scope, state, status, finished - started)

    def _count(self, path: str, now: float) -> None:
        self._counts[path] = self._counts.get(path, 0) + 1
        elapsed = now - self._window_started
        if elapsed >= self.summary_seconds:
            counts, self._counts, self._window_started = self._counts, {}, now
            access_log.info(
                "successful requests counted",
                extra={"counts": counts, "seconds": round(elapsed, 1)},
            )

    def _log(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        access_log.log(
            logging.ERROR if status >= 500 else logging.INFO,
            "request",
            extra={
                "request_id": state["request_id"],
                "org_id": state.get("org_id"),
                "key_id": state.get("key_id"),
                "method": scope["method"],
                "path": _KEY_LIKE.sub("[redacted]", scope["path"]),
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": client[0] if client else None,
            },
        )


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("ascii") if _usable_request_id(value) else None
    return None


def _usable_request_id(value: bytes) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None and _KEY_LIKE_BYTES.search(value) is None


# A random per-process prefix and a counter: unique across workers and restarts, without a
# random-number syscall per request (request ids correlate log lines; they are not secrets).
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_REQUEST_ID_PREFIX_BYTES = f"{_REQUEST_ID_PREFIX}-".encode("ascii")
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}-{next(_request_numbers):x}"


def request_id_header(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The `X-Request-ID` answer header, as AccessLog gives it, for the lean verify path."""
    for name, value in headers:
        if name == b"x-request-id":
            if _usable_request_id(value):
                return (b"x-request-id", value)
            break
    # the same id as `_new_request_id`, formatted as bytes directly: half the cost on this path
    return (b"x-request-id", b"%s%x" % (_REQUEST_ID_PREFIX_BYTES, next(_request_numbers)))
