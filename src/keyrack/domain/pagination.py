"""Opaque keyset cursors: a page resumes strictly after the last item the client saw."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from keyrack.domain.errors import InvalidInput

MIN_PAGE = 1
MAX_PAGE = 1000
DEFAULT_PAGE = 100


def check_limit(limit: int) -> int:
    if not MIN_PAGE <= limit <= MAX_PAGE:
        raise InvalidInput(f"must be from {MIN_PAGE} to {MAX_PAGE}", field="limit")
    return limit


def _encode(value: object) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput("is not a cursor this API returned", field="cursor") from None


def key_cursor(created_at: datetime, key_id: str) -> str:
    """Position after a key in (created_at, id) order."""
    return _encode([int(created_at.timestamp()), key_id])


def parse_key_cursor(cursor: str) -> tuple[datetime, str]:
    value = _decode(cursor)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or not isinstance(value[1], str)
    ):
        raise InvalidInput("is not a cursor this API returned", field="cursor")
    try:
        created_at = datetime.fromtimestamp(value[0], UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidInput("is not a cursor this API returned", field="cursor") from None
    return created_at, value[1]


def event_cursor(event_id: int) -> str:
    """Position after an audit event in newest-first order."""
    return _encode([event_id])


def parse_event_cursor(cursor: str) -> int:
    value = _decode(cursor)
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], int):
        raise InvalidInput("is not a cursor this API returned", field="cursor")
    return value[0]
