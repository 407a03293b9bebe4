"""Remote-mode plumbing: shared options, exit codes, one-line errors, and parsing option values."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn

import typer

from keyrack.client import (
    ApiError,
    BadRequest,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    KeyrackClientError,
    NotFound,
    Quota,
    RateLimit,
    RateLimited,
    Unauthorized,
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="KEYRACK_URL",
        help="Talk to this keyrack server (e.g. http://127.0.0.1:8000) instead of the database",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key", envvar="KEYRACK_API_KEY", help="Admin API key for --url", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]

# Exit codes scripts can rely on; 0-7 are shared with local mode (README).
EXIT_UNEXPECTED = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_AUTH = 5
EXIT_UNAVAILABLE = 6
EXIT_UNREACHABLE = 8
EXIT_RATE_LIMITED = 9

EXIT_BY_ERROR: tuple[tuple[type[KeyrackClientError], int], ...] = (
    (BadRequest, EXIT_INVALID),
    (NotFound, EXIT_NOT_FOUND),
    (Conflict, EXIT_CONFLICT),
    (Unauthorized, EXIT_AUTH),
    (Forbidden, EXIT_AUTH),
    (RateLimited, EXIT_RATE_LIMITED),
    (ConnectionFailed, EXIT_UNREACHABLE),
)


def fail(message: str, code: int) -> NoReturn:
    # One line, whatever the server's detail holds.
    print("error: " + " ".join(message.split()), file=sys.stderr)
    raise typer.Exit(code)


def exit_code_for(error: KeyrackClientError) -> int:
    if isinstance(error, ApiError) and error.status == 503:
        return EXIT_UNAVAILABLE
    return next((code for kind, code in EXIT_BY_ERROR if isinstance(error, kind)), EXIT_UNEXPECTED)


def message_for(error: KeyrackClientError) -> str:
    if isinstance(error, ApiError):
        return f"{error.detail} ({error.code}, HTTP {error.status})"
    return str(error)


@contextmanager
def connect(url: str, key: str | None, *, need_key: bool = True) -> Iterator[Client]:
    """A client for the server at `url`; any SDK failure inside becomes one line and an exit."""
    if need_key and not key:
        fail("remote mode needs an admin key: pass --key or set KEYRACK_API_KEY", EXIT_INVALID)
    try:
        with Client(url, api_key=key, timeout=10.0, max_retries=2) as client:
            yield client
    except KeyrackClientError as error:
        fail(message_for(error), exit_code_for(error))
    except ValueError as error:  # the SDK's argument checks (e.g. an update with no change)
        fail(str(error), EXIT_INVALID)


def require_url(url: str | None, command: str) -> str:
    if not url:
        fail(f"`{command}` talks to a server: pass --url or set KEYRACK_URL", EXIT_INVALID)
    return url


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(value: str, option: str, *, past: bool = False) -> datetime:
    """An RFC 3339 timestamp (`2030-01-01T00:00:00Z`) or a duration (`30d`, `12h`) from now,
    into the future, or into the past when `past` (`--since 7d`)."""
    match = _DURATION.match(value.strip())
    if match:
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return datetime.now(UTC) + timedelta(seconds=-seconds if past else seconds)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option}: expected a time like 2030-01-01T00:00:00Z or a duration like 30d", 2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_none(value: str) -> bool:
    return value.strip().lower() in ("none", "null", "")


def parse_rate_limit(value: str, option: str) -> RateLimit | None:
    """`LIMIT/WINDOW_SECONDS`, e.g. `100/60`, or `none`."""
    if is_none(value):
        return None
    limit, _, window = value.partition("/")
    if not (limit.strip().isdigit() and window.strip().isdigit()):
        fail(f"{option}: expected LIMIT/WINDOW_SECONDS like 100/60, or none", EXIT_INVALID)
    return RateLimit(limit=int(limit), window_seconds=int(window))


def parse_quota(value: str, option: str) -> Quota | None:
    """`LIMIT/day` or `LIMIT/month`, or `none`."""
    if is_none(value):
        return None
    limit, _, period = value.partition("/")
    if not limit.strip().isdigit() or period.strip() not in ("day", "month"):
        fail(f"{option}: expected LIMIT/day or LIMIT/month like 10000/day, or none", EXIT_INVALID)
    return Quota(limit=int(limit), period="day" if period.strip() == "day" else "month")


def parse_optional_int(value: str, option: str) -> int | None:
    if is_none(value):
        return None
    if not value.strip().isdigit():
        fail(f"{option}: expected a whole number or none", EXIT_INVALID)
    return int(value)
