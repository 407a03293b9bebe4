"""Rate limit and quota rules, calendar periods, decisions and the RateLimit header fields."""

from __future__ import annotations

from datetime import UTC, datetime

import http_sfv
import pytest

from keyrack.api.problems import from_error
from keyrack.api.verify_wire import admitted_answer, header_lines, limit_fields
from keyrack.domain.errors import InvalidInput, RateLimited, UsageExceeded
from keyrack.domain.limits import (
    Quota,
    RateLimit,
    effective_limits,
    limit_headers,
    quota_decision,
    quota_window,
    rate_decision,
)


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"limit": 0, "window_seconds": 60}, "rate_limit.limit"),
        ({"limit": True, "window_seconds": 60}, "rate_limit.limit"),
        ({"limit": "5", "window_seconds": 60}, "rate_limit.limit"),
        ({"limit": 5, "window_seconds": 0}, "rate_limit.window_seconds"),
        ({"limit": 5, "window_seconds": 86_401}, "rate_limit.window_seconds"),
        ({"limit": 100_001, "window_seconds": 1}, "rate_limit.limit"),
        ({"limit": 5}, "rate_limit.window_seconds"),
        ({"limit": 5, "window_seconds": 1, "burst": 2}, "rate_limit.burst"),
        ([5, 60], "rate_limit"),
    ],
)
def test_invalid_rate_limits_name_the_field(value: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RateLimit.parse(value)
    assert caught.value.field == field
    assert caught.value.errors[0]["field"] == field


def test_parse_uses_the_given_field_name() -> None:
    with pytest.raises(InvalidInput) as caught:
        Quota.parse({"limit": 5, "period": "week"}, field="default_quota")
    assert caught.value.field == "default_quota.period"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"limit": 0, "period": "day"}, "quota.limit"),
        ({"limit": 10, "period": "year"}, "quota.period"),
        ({"limit": 10, "period": None}, "quota.period"),
        ({"period": "day"}, "quota.limit"),
        ("1000/day", "quota"),
    ],
)
def test_invalid_quotas_name_the_field(value: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Quota.parse(value)
    assert caught.value.field == field


def test_valid_shapes_round_trip_and_null_means_none() -> None:
    assert RateLimit.parse({"limit": 5, "window_seconds": 60}) == RateLimit(5, 60)
    assert Quota.parse({"limit": 10, "period": "month"}) == Quota(10, "month")
    assert RateLimit.parse(None) is None and Quota.parse(None) is None
    assert RateLimit(5, 60).to_json() == {"limit": 5, "window_seconds": 60}
    assert Quota(10, "day").to_json() == {"limit": 10, "period": "day"}


def test_key_settings_win_over_org_defaults() -> None:
    own, default = RateLimit(5, 1), RateLimit(50, 1)
    assert effective_limits(
        rate_limit=own, quota=None, default_rate_limit=default, default_quota=Quota(9, "day")
    ) == (own, Quota(9, "day"))
    assert effective_limits(
        rate_limit=None, quota=None, default_rate_limit=None, default_quota=None
    ) == (None, None)


def test_day_window_is_the_utc_calendar_day() -> None:
    window = quota_window("day", ts(2024, 3, 9, 23, 59, 59))
    assert window.period_id == "2024-03-09"
    assert window.start == ts(2024, 3, 9) and window.end == ts(2024, 3, 10)
    assert quota_window("day", ts(2024, 3, 10)).period_id == "2024-03-10"


@pytest.mark.parametrize(
    ("moment", "period_id", "days"),
    [
        ((2024, 2, 29, 12), "2024-02", 29),
        ((2023, 2, 1, 0), "2023-02", 28),
        ((2024, 12, 31, 23), "2024-12", 31),
        ((2024, 4, 30, 23), "2024-04", 30),
    ],
)
def test_month_window_follows_the_calendar(
    moment: tuple[int, ...], period_id: str, days: int
) -> None:
    window = quota_window("month", ts(*moment))
    assert window.period_id == period_id
    assert window.seconds == days * 86_400
    assert quota_window("month", window.end).start == window.end  # next month starts there


def test_rate_decision_reports_remaining_and_when_room_returns() -> None:
    now = 1_000.0
    ok = rate_decision(RateLimit(3, 10), allowed=True, count=2, oldest=now - 4.5, now=now)
    assert (ok.allowed, ok.remaining, ok.reset_seconds, ok.retry_after) == (True, 1, 6, None)
    refused = rate_decision(RateLimit(3, 10), allowed=False, count=3, oldest=now - 9.9, now=now)
    assert (refused.remaining, refused.retry_after, refused.reset_seconds) == (0, 1, 1)


def test_quota_decision_resets_at_the_period_end() -> None:
    now = ts(2024, 5, 31, 23, 0)
    decision = quota_decision(Quota(10, "month"), allowed=False, used=10, now=now)
    assert decision.remaining == 0
    assert decision.retry_after == decision.reset_seconds == 3_600
    assert decision.window_seconds == 31 * 86_400


def test_headers_follow_the_draft_syntax_and_parse_as_structured_fields() -> None:
    now = ts(2024, 5, 31, 23, 0)
    decisions = [
        rate_decision(RateLimit(100, 60), allowed=True, count=58, oldest=now - 30, now=now),
        quota_decision(Quota(1000, "day"), allowed=True, used=42, now=now),
    ]
    headers = dict(limit_headers(decisions))
    assert "Retry-After" not in headers
    assert headers["RateLimit-Policy"] == '"rate";q=100;w=60, "quota";q=1000;w=86400'
    assert headers["RateLimit"] == '"rate";r=42;t=30, "quota";r=958;t=3600'
    for name in ("RateLimit-Policy", "RateLimit"):
        parsed = http_sfv.List()
        parsed.parse(headers[name].encode())
        assert [item.value for item in parsed] == ["rate", "quota"]


def test_an_admitted_answer_carries_the_limit_fields_as_uvicorn_writes_them() -> None:
    now = ts(2024, 5, 31, 23, 0)
    rate = rate_decision(RateLimit(100, 60), allowed=True, count=58, oldest=now - 30, now=now)
    quota = quota_decision(Quota(1000, "day"), allowed=True, used=42, now=now)
    fields, request_id, body = b"x-keyrack-key-id: key-1\r\n", b"req-1", b"{}"
    for decisions in [(rate,), (quota,), (rate, quota)]:
        limits = header_lines(limit_fields(decisions))
        expected = fields + b"x-request-id: req-1\r\n" + limits + b"\r\n" + body
        assert admitted_answer(fields, request_id, decisions, body) == expected
    assert b'ratelimit-policy: "rate";q=100;w=60\r\nratelimit: "rate";r=42;t=30\r\n\r\n' in (
        admitted_answer(fields, request_id, (rate,), body)
    )


def test_refusal_headers_carry_the_longest_retry_after() -> None:
    now = ts(2024, 5, 31, 23, 0)
    decisions = [
        rate_decision(RateLimit(5, 60), allowed=False, count=5, oldest=now - 50, now=now),
        quota_decision(Quota(9, "day"), allowed=False, used=9, now=now),
    ]
    assert dict(limit_headers(decisions))["Retry-After"] == "3600"
    assert limit_headers([]) == []


def test_limit_errors_are_429_problems_with_the_headers() -> None:
    now = 5_000.0
    decision = rate_decision(RateLimit(5, 60), allowed=False, count=5, oldest=now - 50, now=now)
    status, body, headers = from_error(RateLimited("slow down", decisions=[decision]))
    assert (status, body["code"], headers["Retry-After"]) == (429, "RATE_LIMITED", "10")
    assert headers["RateLimit"] == '"rate";r=0;t=10'
    status, body, _ = from_error(UsageExceeded("used up"))
    assert (status, body["code"]) == (429, "USAGE_EXCEEDED")
