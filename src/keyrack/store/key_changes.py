"""Listening for key changes made by other processes: PostgreSQL LISTEN, or SQLite's change feed.

Both run in a daemon thread and report through two callbacks: `on_changes(key_ids)` for changed
keys, and `on_feed(connected)` when the feed starts (after which nothing can be missed: the cache
is cleared and trusted again) or is lost (the cache must stop trusting itself).

SQLite has no NOTIFY, so writers push each change as a row of `key_changes` in the same
transaction as the change, and every process tails that table by id. This is sound because
SQLite has one writer at a time: ids are assigned in commit order and a committed row is never
followed by a smaller id, so "every row with id > cursor" misses nothing, and a rolled-back
change publishes nothing. The tail is cheap: `PRAGMA data_version` (read from the WAL index in
shared memory) says whether any other connection committed since the last look; only then is the
table queried. The look happens every `poll_seconds` (default 0.1 s), so other workers reject a
revoked key within about that, well under the documented 1 s bound.

A PostgreSQL connection can also go silent without any error (a dead NAT entry, a firewall
dropping packets): LISTEN would then wait forever while the cache trusts itself. TCP keepalives
and tcp_user_timeout (`engine.TCP_LIVENESS`) catch a dead peer host; a watchdog catches the
rest: the listener answers a `SELECT 1` every ~0.5 s, and when none has come back for
`LIVENESS_SECONDS` the feed is reported lost and the socket shut down, which ends the stuck call
and starts a reconnection.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from keyrack import metrics
from keyrack.store.engine import TCP_LIVENESS
from keyrack.store.repository import KEY_CHANGES_CHANNEL

log = logging.getLogger("keyrack.key_changes")

OnChanges = Callable[[list[str]], None]
OnFeed = Callable[[bool], None]

LIVENESS_SECONDS = 2.0


class _Listener(ABC):
    """The thread, stop flag and reconnection loop both listeners share."""

    name = "keyrack-key-changes"

    def __init__(
        self,
        *,
        on_changes: OnChanges,
        on_feed: OnFeed,
        poll_seconds: float = 0.1,
        retry_seconds: float = 0.5,
    ) -> None:
        self.on_changes = on_changes
        self.on_feed = on_feed
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.connected = threading.Event()
        self._feed_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.listen()
            except Exception as error:  # noqa: BLE001 - any failure means: reconnect
                if not self.stopping:
                    log.warning("key change feed lost (%s); reconnecting", type(error).__name__)
                    metrics.record_database_error(error)
            self.feed_lost()
            self._stop.wait(self.retry_seconds)

    def feed_started(self) -> None:
        with self._feed_lock:
            self.on_feed(True)
            self.connected.set()
            metrics.record_revocation_feed(connected=True)

    def feed_lost(self) -> None:
        """Reported once per loss, whether the listener or a watchdog notices it first."""
        with self._feed_lock:
            if self.connected.is_set():
                self.connected.clear()
                metrics.record_revocation_feed(connected=False)
                self.on_feed(False)

    @abstractmethod
    def listen(self) -> None:
        """Connect, call `feed_started`, then deliver changes until stopped or broken."""


class PostgresKeyChangeListener(_Listener):
    """LISTEN on a dedicated autocommit connection; NOTIFY is sent by `publish_key_changes`."""

    def __init__(
        self,
        database_url: str,
        *,
        on_changes: OnChanges,
        on_feed: OnFeed,
        liveness_seconds: float = LIVENESS_SECONDS,
    ) -> None:
        super().__init__(on_changes=on_changes, on_feed=on_feed)
        self.conninfo = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self.liveness_seconds = liveness_seconds
        self._alive_at = time.monotonic()
        self._socket_fd: int | None = None
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name=f"{self.name}-watchdog", daemon=True
            )
            self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        self._shut_down_socket()  # a stuck call would otherwise hold `stop` for its join timeout
        super().stop()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
            self._watchdog = None

    def listen(self) -> None:
        with psycopg.connect(
            make_conninfo(self.conninfo, **TCP_LIVENESS),
            autocommit=True,
            connect_timeout=3,
            application_name=self.name,
        ) as connection:
            self._socket_fd = connection.pgconn.socket
            try:
                connection.execute(f"LISTEN {KEY_CHANGES_CHANNEL}")
                self._alive_at = time.monotonic()
                self.feed_started()
                while not self.stopping:
                    for notice in connection.notifies(timeout=self.poll_seconds * 5):
                        self.on_changes(notice.payload.split(","))
                    connection.execute("SELECT 1")  # a dead connection raises here: reconnect
                    self._alive_at = time.monotonic()
            finally:
                self._socket_fd = None

    def _watch(self) -> None:
        while not self._stop.wait(self.liveness_seconds / 4):
            silent = time.monotonic() - self._alive_at
            if self.connected.is_set() and silent > self.liveness_seconds:
                log.warning("key change feed silent for %.1fs; reconnecting", silent)
                self.feed_lost()
                self._shut_down_socket()

    def _shut_down_socket(self) -> None:
        """Shut the connection's socket from outside: the listener's blocked read returns, and
        psycopg raises, so the reconnection loop takes over. `fromfd` duplicates the descriptor,
        so closing our copy leaves psycopg's own to psycopg."""
        fd = self._socket_fd
        if fd is None:
            return
        try:
            with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)
        except OSError:
            return  # already closed: the listener is reconnecting anyway


class SqliteKeyChangeTail(_Listener):
    """Tails the `key_changes` table of one SQLite file (see the module docstring)."""

    def __init__(self, database_path: str, *, on_changes: OnChanges, on_feed: OnFeed) -> None:
        super().__init__(on_changes=on_changes, on_feed=on_feed)
        self.database_path = database_path

    def listen(self) -> None:
        connection = sqlite3.connect(self.database_path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA busy_timeout=30000")
            # data_version before the cursor: a commit in between is then both below the cursor
            # (covered by the cache reset below) and seen as a new version (harmlessly re-read).
            version = self._data_version(connection)
            cursor = self._last_id(connection)
            self.feed_started()  # from here on every change has id > cursor
            while not self._stop.wait(self.poll_seconds):
                current = self._data_version(connection)
                if current == version:
                    continue
                version = current
                rows = connection.execute(
                    "SELECT id, key_id FROM key_changes WHERE id > ? ORDER BY id", (cursor,)
                ).fetchall()
                if rows:
                    cursor = rows[-1][0]
                    self.on_changes([key_id for _, key_id in rows])
        finally:
            connection.close()

    @staticmethod
    def _last_id(connection: sqlite3.Connection) -> int:
        row = connection.execute("SELECT COALESCE(MAX(id), 0) FROM key_changes").fetchone()
        return int(row[0])

    @staticmethod
    def _data_version(connection: sqlite3.Connection) -> int:
        return int(connection.execute("PRAGMA data_version").fetchone()[0])


KeyChangeListener = _Listener


def key_change_listener(
    database_url: str, *, on_changes: OnChanges, on_feed: OnFeed
) -> KeyChangeListener:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return SqliteKeyChangeTail(url.database or "", on_changes=on_changes, on_feed=on_feed)
    return PostgresKeyChangeListener(database_url, on_changes=on_changes, on_feed=on_feed)
