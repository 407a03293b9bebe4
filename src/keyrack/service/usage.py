"""`last_used_at` tracking: remembered on the request path, written in batches off it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

log = logging.getLogger("keyrack.usage")

StampWriter = Callable[[Sequence[tuple[str, datetime]]], None]


class LastUsedRecorder:
    """`seen` is one dict assignment; a background thread writes what was seen every
    `interval_seconds`, so each key gets at most one write per interval per process."""

    def __init__(self, *, write: StampWriter, interval_seconds: float = 5.0) -> None:
        self.interval_seconds = interval_seconds
        self._write = write
        self._pending: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def seen(self, key_id: str, now: float) -> None:
        self._pending[key_id] = now

    def flush(self) -> int:
        """Write what was seen since the last flush; returns how many keys were written."""
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        stamps = [
            (key_id, datetime.fromtimestamp(used_at, UTC).replace(microsecond=0))
            for key_id, used_at in pending.items()
        ]
        try:
            self._write(stamps)
        except Exception:
            for key_id, used_at in pending.items():  # keep them for the next attempt
                self._pending.setdefault(key_id, used_at)
            raise
        return len(stamps)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="keyrack-last-used", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        self._flush_logged()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as error:  # noqa: BLE001 - the writer thread must survive a DB outage
            log.warning("could not write last_used_at: %s", type(error).__name__)
