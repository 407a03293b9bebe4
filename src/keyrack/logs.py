"""Logging configuration shared by the CLI and every server worker: one JSON object per line."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

# uvicorn adds an ANSI-coloured copy of its messages for terminals; JSON lines do not want it.
_NOT_FIELDS = [*RESERVED_ATTRS, "color_message"]


def log_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for uvicorn and keyrack, writing JSON lines (python-json-logger) to stderr.

    uvicorn's own access log stays off: it would print query strings, which may carry a key a
    client misplaced. `keyrack.access` (see `api/asgi.py:AccessLog`) writes one line per request
    instead, with request id, org, key id, method, path, status and duration.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "datefmt": "%Y-%m-%dT%H:%M:%S%z",
                "reserved_attrs": _NOT_FIELDS,
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
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
