"""What the access-log layer, the metric recorders and /verify's telemetry cost per request, in
microseconds.

Run: .venv/bin/python bench/observability_cost.py  (add PROMETHEUS_MULTIPROC_DIR=<empty dir>
to measure multiprocess mode). In-process calls, no server: this isolates our own overhead.
The last lines drive the real `/verify` endpoint (warm cache, 100 keys) with its telemetry on
and off: the difference is everything instrumentation adds to a verification.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from common import issue_keys, runtime_for
from keyrack import metrics
from keyrack.api.asgi import AccessLog, request_id_header
from keyrack.api.verify import VerifyEndpoint
from keyrack.api.verify_telemetry import RefusalLog, VerifyTelemetry
from keyrack.service import keys as key_service

N = 20_000
REPEATS = 7  # the minimum of several runs: the least disturbed by other load on the machine
HEADERS = [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk"), (b"authorization", b"Bearer kr_x")]


async def raw_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def per_request(app: Any, path: str) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(_message: Any) -> None:
        return None

    started = time.perf_counter()
    for _ in range(N):
        scope = {"type": "http", "method": "GET", "path": path, "headers": HEADERS, "state": {}}
        await app(scope, receive, send)
    return (time.perf_counter() - started) / N * 1e6


def per_call(function: Any) -> float:
    started = time.perf_counter()
    for _ in range(N):
        function()
    return (time.perf_counter() - started) / N * 1e6


def best(run: Any) -> float:
    return min(run() for _ in range(REPEATS))


async def verify_requests(app: Any, keys: list[str]) -> float:
    """Microseconds of this thread's CPU per cached GET /verify through the raw-ASGI endpoint."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(_message: Any) -> None:
        return None

    scopes = [
        {
            "type": "http",
            "method": "GET",
            "path": "/verify",
            "query_string": b"",
            "headers": [*HEADERS[:2], (b"x-api-key", key.encode())],
            "client": ("127.0.0.1", 5000),
        }
        for key in keys
    ]
    started = time.thread_time()
    for _ in range(N // len(scopes)):
        for scope in scopes:
            await app(scope, receive, send)
    return (time.thread_time() - started) / (N // len(scopes) * len(scopes)) * 1e6


def inline_answers(app: VerifyEndpoint, keys: list[str]) -> float:
    """Microseconds of this thread's CPU per cached GET /verify answered inline (the path
    `keyrack serve`'s HTTP protocol takes), for comparison with the ASGI figures."""
    headers = [[*HEADERS[:2], (b"x-api-key", key.encode())] for key in keys]
    rounds = N // len(headers)
    started = time.thread_time()
    for _ in range(rounds):
        for fields in headers:
            app.answer_inline(b"/verify", fields)
    return (time.thread_time() - started) / (rounds * len(headers)) * 1e6


def verify_endpoint_cost() -> tuple[float, float, float, float]:
    """(telemetry on, telemetry off) per request through ASGI, then the same answered inline,
    each the best of REPEATS, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        runtime = runtime_for(f"sqlite:///{tmp}/keyrack.db", Path(tmp))
        key_service.create_org(uow=runtime.uow(write=True), org_id="bench")
        keys = issue_keys(runtime, "bench", 100, ["read"])
        assert runtime.verifier.cache is not None
        runtime.verifier.cache.reset(trusted=True)  # as once the change feed is connected
        on = VerifyEndpoint(
            raw_app,
            runtime.verifier,
            max_body_bytes=65536,
            telemetry=VerifyTelemetry(recorder=metrics.verify_recorder, refusals=RefusalLog()),
        )
        off = VerifyEndpoint(
            raw_app,
            runtime.verifier,
            max_body_bytes=65536,
            telemetry=VerifyTelemetry(recorder=None, refusals=None),
        )
        asyncio.run(verify_requests(on, keys))  # warm the cache and the prebuilt answers
        timings: dict[str, list[float]] = {"on": [], "off": [], "inline on": [], "inline off": []}
        for _ in range(REPEATS):
            timings["on"].append(asyncio.run(verify_requests(on, keys)))
            timings["off"].append(asyncio.run(verify_requests(off, keys)))
            timings["inline on"].append(inline_answers(on, keys))
            timings["inline off"].append(inline_answers(off, keys))
        runtime.close()
    return tuple(min(timings[name]) for name in timings)  # type: ignore[return-value]


def main() -> None:
    raw = best(lambda: asyncio.run(per_request(raw_app, "/verify")))
    logged = best(lambda: asyncio.run(per_request(AccessLog(raw_app), "/verify")))
    print(f"raw ASGI handler:                 {raw:6.2f} us/request")
    print(f"+ AccessLog, successful /verify:  {logged - raw:6.2f} us/request added")
    recorders = {
        "record_verification('VALID', t)": lambda: metrics.record_verification("VALID", 1e-4),
        "record_cache_lookup(hit=True)": lambda: metrics.record_cache_lookup(hit=True),
        "record_http(route, GET, 200, t)": lambda: metrics.record_http(
            "/orgs/{org_id}/api_keys", "GET", 200, 1e-3
        ),
    }
    recorders["VerifyRecorder.record(...)"] = lambda: metrics.verify_recorder.record(
        "VALID", 1e-4, cache_hit=True, now=0.0
    )
    recorders["request_id_header (generated)"] = lambda: request_id_header(HEADERS)
    for name, recorder in recorders.items():
        print(f"{name + ':':34}{best(lambda: per_call(recorder)):6.2f} us")  # noqa: B023
    on, off, inline_on, inline_off = verify_endpoint_cost()
    print(f"GET /verify hit, telemetry off:   {off:6.2f} us CPU/request (request id included)")
    print(f"GET /verify hit, telemetry on:    {on:6.2f} us CPU/request: +{on - off:.2f} us")
    print(f"  answered inline, telemetry off: {inline_off:6.2f} us CPU/request")
    print(
        f"  answered inline, telemetry on:  {inline_on:6.2f} us CPU/request: "
        f"+{inline_on - inline_off:.2f} us"
    )


if __name__ == "__main__":
    main()
