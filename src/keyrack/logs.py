"""Logging configuration shared by the CLI and every server worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


def log_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for uvicorn and keyrack; uvicorn's own access log stays off (it would print
    query strings, which may carry a key a client misplaced)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "keyrack": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


class ThrottledLog:
    """Writes a recurring warning at most once per `interval` seconds, saying how many were
    held back, so an outage gives a clear line instead of one per request."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._held_back = 0

    def warning(self, message: str, *args: object) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._held_back += 1
                return
            held_back, self._held_back = self._held_back, 0
            self._next = now + self._interval
        suffix = f" ({held_back} similar warnings held back)" if held_back else ""
        self._logger.warning(message + suffix, *args)
