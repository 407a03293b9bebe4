"""The PostgreSQL change feed notices a connection that goes silent without a reset.

Such a connection (a dead NAT entry, a firewall dropping packets) raises no error: without a
liveness check the listener would wait forever and the cache would go on trusting itself,
accepting revoked keys. The fault proxy's "silence" mode keeps the LISTEN connection open and
passes nothing either way; the listener must report the feed lost within a few seconds, and
be back, delivering changes, by itself once traffic flows again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from keyrack.store.key_changes import PostgresKeyChangeListener
from keyrack.store.repository import KEY_CHANGES_CHANNEL
from tests.random_refs import random_org_id
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.load import wait_until

DETECTION_BOUND_SECONDS = 4.0
RECOVERY_BOUND_SECONDS = 10.0


class FeedRecorder:
    """What the listener reported: feed transitions and delivered key ids (thread-safe)."""

    def __init__(self) -> None:
        self.feed: list[bool] = []
        self.changed: set[str] = set()
        self._lock = threading.Lock()

    def on_feed(self, connected: bool) -> None:
        with self._lock:
            self.feed.append(connected)

    def on_changes(self, key_ids: list[str]) -> None:
        with self._lock:
            self.changed.update(key_ids)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FaultProxy]:
    url = make_url(postgres_url)
    with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


def notify(postgres_url: str, key_id: str) -> None:
    conninfo = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("SELECT pg_notify(%s, %s)", (KEY_CHANGES_CHANNEL, key_id))


def delivered(recorder: FeedRecorder, postgres_url: str) -> bool:
    key_id = f"key-{random_org_id('feed')}"
    notify(postgres_url, key_id)
    try:
        wait_until(lambda: key_id in recorder.changed, timeout=2, interval=0.02)
    except AssertionError:
        return False
    return True


def test_a_silent_feed_is_detected_and_recovers(postgres_url: str, proxy: FaultProxy) -> None:
    recorder = FeedRecorder()
    proxied = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    listener = PostgresKeyChangeListener(
        proxied.render_as_string(hide_password=False),
        on_changes=recorder.on_changes,
        on_feed=recorder.on_feed,
    )
    listener.start()
    try:
        wait_until(listener.connected.is_set, timeout=10, interval=0.02)
        assert delivered(recorder, postgres_url)
        proxy.cut("silence")
        detected = wait_until(lambda: not listener.connected.is_set(), timeout=10, interval=0.02)
        assert recorder.feed[-1] is False  # the cache was told to stop trusting itself
        assert detected < DETECTION_BOUND_SECONDS, f"silent feed trusted for {detected:.2f}s"
        proxy.restore()
        started = time.monotonic()
        wait_until(listener.connected.is_set, timeout=RECOVERY_BOUND_SECONDS, interval=0.02)
        assert delivered(recorder, postgres_url)
        recovered = time.monotonic() - started
        assert recorder.feed == [True, False, True]
        print(
            f"FIGURE silent change feed: lost after {detected:.2f}s, "
            f"delivering again {recovered:.2f}s after the restore"
        )
    finally:
        listener.stop()
