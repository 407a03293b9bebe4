"""What the access-log layer and the metric recorders cost per request, in microseconds.

Run: .venv/bin/python bench/observability_cost.py  (add PROMETHEUS_MULTIPROC_DIR=<empty dir>
to measure multiprocess mode). In-process calls, no server: this isolates our own overhead.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from keyrack import metrics
from keyrack.api.asgi import AccessLog

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
    for name, recorder in recorders.items():
        print(f"{name + ':':34}{best(lambda: per_call(recorder)):6.2f} us")  # noqa: B023


if __name__ == "__main__":
    main()
