"""A bounded load driver: N client threads run operations and record every outcome."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

AUTHENTICATED = (200, 403)  # 403: the key is valid, it only lacks a permission


def bearer(secret: str) -> dict[str, str]:
    """Headers presenting `secret`, overriding the client's own key."""
    return {"Authorization": f"Bearer {secret}"}


def authenticates(client: httpx.Client, org_id: str, secret: str) -> bool:
    """Whether `secret` is accepted as a key (phase 2 switches this to /verify once it lands)."""
    response = client.get(f"/orgs/{org_id}/api_keys", params={"limit": 1}, headers=bearer(secret))
    assert response.status_code in (*AUTHENTICATED, 401), response.text
    return response.status_code in AUTHENTICATED


@dataclass
class Outcomes:
    """What the clients saw; thread-safe."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    # 5xx other than 503 (a documented, retryable answer): never acceptable.
    server_errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, response: httpx.Response) -> None:
        with self._lock:
            self.statuses[(operation, response.status_code)] += 1
            if response.status_code >= 500 and response.status_code != 503:
                self.server_errors.append(f"{operation} {response.status_code} {response.text}")

    def record_transport_error(self, operation: str) -> None:
        with self._lock:
            self.transport_errors[operation] += 1

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def count(self, operation: str, status: int) -> int:
        return self.statuses[(operation, status)]


def run_clients(
    clients: int,
    work: Callable[[int, threading.Event], None],
    *,
    seconds: float,
    stop: threading.Event | None = None,
) -> None:
    """Run `work(client_index, stop)` on `clients` threads until `seconds` pass or `stop` is set;
    `work` must return soon after `stop` is set. Exceptions from any client are re-raised."""
    stop = stop or threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            futures = [pool.submit(work, index, stop) for index in range(clients)]
            for future in futures:
                future.result(timeout=seconds + 60)
    finally:
        stop.set()
        timer.cancel()


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> float:
    """Poll `condition` until true; returns how long it took, fails after `timeout` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
