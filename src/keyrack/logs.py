"""Logging configuration shared by the CLI and every server worker: one JSON object per line."""

from __future__ import annotations

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
