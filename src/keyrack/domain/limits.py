"""Usage limits a key can carry (stored and shown here; enforcing them is the verify path's job)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from keyrack.domain.errors import InvalidInput

MAX_RATE_LIMIT = 10**9
MAX_WINDOW_SECONDS = 86_400
MAX_QUOTA = 10**12
QUOTA_PERIODS = ("day", "month")


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window_seconds: int

    def as_dict(self) -> dict[str, int]:
        return {"limit": self.limit, "window_seconds": self.window_seconds}


@dataclass(frozen=True)
class Quota:
    limit: int
    period: Literal["day", "month"]

    def as_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "period": self.period}


def _bounded_int(value: object, low: int, high: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"must be an integer from {low} to {high}", field=field)
    return value


def _object(value: object, fields: set[str], field: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise InvalidInput("must be an object or null", field=field)
    unknown = sorted(set(value) - fields)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=f"{field}.{unknown[0]}")
    missing = sorted(fields - set(value))
    if missing:
        raise InvalidInput("field required", field=f"{field}.{missing[0]}")
    return value


def parse_rate_limit(value: object, *, field: str = "rate_limit") -> RateLimit | None:
    if value is None:
        return None
    data = _object(value, {"limit", "window_seconds"}, field)
    return RateLimit(
        limit=_bounded_int(data["limit"], 1, MAX_RATE_LIMIT, f"{field}.limit"),
        window_seconds=_bounded_int(
            data["window_seconds"], 1, MAX_WINDOW_SECONDS, f"{field}.window_seconds"
        ),
    )


def parse_quota(value: object, *, field: str = "quota") -> Quota | None:
    if value is None:
        return None
    data = _object(value, {"limit", "period"}, field)
    period = data["period"]
    if period not in QUOTA_PERIODS:
        raise InvalidInput("must be 'day' or 'month'", field=f"{field}.period")
    return Quota(
        limit=_bounded_int(data["limit"], 1, MAX_QUOTA, f"{field}.limit"),
        period="day" if period == "day" else "month",
    )
