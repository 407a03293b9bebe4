"""Pure lifecycle rules: policy, limits, cursors, RFC 3339 input, response sealing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyrack.api.schemas import parse_rfc3339
from keyrack.domain.errors import InvalidInput, PolicyViolation
from keyrack.domain.limits import Quota, RateLimit
from keyrack.domain.model import check_future_expiry
from keyrack.domain.pagination import (
    event_cursor,
    key_cursor,
    parse_event_cursor,
    parse_key_cursor,
)
from keyrack.domain.policy import OrgPolicy, parse_policy
from keyrack.service.sealing import ResponseSealer

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_policy_round_trips_and_defaults_mean_no_limit() -> None:
    assert parse_policy({}) == OrgPolicy()
    document = {
        "max_key_lifetime_seconds": 3600,
        "require_expiry": True,
        "allowed_permissions": ["write", "read"],
        "max_active_keys": 3,
        "default_rate_limit": {"limit": 10, "window_seconds": 60},
        "default_quota": {"limit": 1000, "period": "month"},
    }
    policy = parse_policy(document)
    assert policy.allowed_permissions == ("read", "write")
    assert parse_policy(policy.as_dict()) == policy


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"max_key_lifetime_seconds": 0}, "max_key_lifetime_seconds"),
        ({"max_key_lifetime_seconds": True}, "max_key_lifetime_seconds"),
        ({"require_expiry": "yes"}, "require_expiry"),
        ({"allowed_permissions": []}, "allowed_permissions"),
        ({"allowed_permissions": ["root"]}, "allowed_permissions"),
        ({"max_active_keys": -1}, "max_active_keys"),
        ({"default_rate_limit": {"limit": 0, "window_seconds": 1}}, "default_rate_limit.limit"),
        ({"default_quota": {"limit": 1, "period": "week"}}, "default_quota.period"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_policy_names_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_policy(document)
    assert raised.value.field == field


def test_policy_rules_name_the_rule_they_enforce() -> None:
    policy = OrgPolicy(
        max_key_lifetime_seconds=60, allowed_permissions=("read",), max_active_keys=2
    )
    policy.check_expiry(NOW + timedelta(seconds=60), now=NOW)
    cases = [
        (lambda: policy.check_expiry(NOW + timedelta(seconds=61), now=NOW), "max_key_lifetime"),
        (lambda: policy.check_expiry(None, now=NOW), "max_key_lifetime_seconds"),
        (lambda: OrgPolicy(require_expiry=True).check_expiry(None, now=NOW), "require_expiry"),
        (lambda: policy.check_permissions(["read", "admin"]), "allowed_permissions"),
        (lambda: policy.check_active_keys(2), "max_active_keys"),
    ]
    for check, rule in cases:
        with pytest.raises(PolicyViolation) as raised:
            check()
        assert raised.value.field is not None and raised.value.field.startswith(rule)
    policy.check_active_keys(1)
    OrgPolicy().check_expiry(None, now=NOW)


def test_limits_are_validated_with_their_field() -> None:
    assert RateLimit.parse({"limit": 5, "window_seconds": 60}) == RateLimit(5, 60)
    assert Quota.parse({"limit": 5, "period": "day"}) == Quota(5, "day")
    assert RateLimit.parse(None) is None
    for value, field in [
        ({"limit": 10**9 + 1, "window_seconds": 1}, "rate_limit.limit"),
        ({"limit": 1, "window_seconds": 86_401}, "rate_limit.window_seconds"),
        ({"limit": 1}, "rate_limit.window_seconds"),
        ({"limit": 1, "window_seconds": 1, "burst": 2}, "rate_limit.burst"),
        ([1, 2], "rate_limit"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            RateLimit.parse(value)
        assert raised.value.field == field


def test_expiry_must_be_future_and_is_kept_at_second_precision() -> None:
    assert check_future_expiry(None, now=NOW) is None
    later = NOW + timedelta(seconds=5, microseconds=900_000)
    assert check_future_expiry(later, now=NOW) == NOW + timedelta(seconds=5)
    for value in (NOW, NOW - timedelta(days=1), datetime(2031, 1, 1)):
        with pytest.raises(InvalidInput):
            check_future_expiry(value, now=NOW)


def test_rfc3339_input_needs_a_full_time_with_offset() -> None:
    assert parse_rfc3339("2030-01-01T02:00:00+02:00") == NOW
    assert parse_rfc3339("2030-01-01t00:00:00.5z") == NOW + timedelta(microseconds=500_000)
    for value in ("2030-01-01", "2030-01-01T00:00:00", "tomorrow", 1893456000):
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_rfc3339(value)


def test_cursors_round_trip_and_reject_garbage() -> None:
    assert parse_key_cursor(key_cursor(NOW, "key-abc")) == (NOW, "key-abc")
    assert parse_event_cursor(event_cursor(42)) == 42
    for garbage in ("", "%%%", "WzFd", key_cursor(NOW, "key-a")[:-3], event_cursor(1)):
        with pytest.raises(InvalidInput) as raised:
            parse_key_cursor(garbage)
        assert raised.value.field == "cursor"


def test_sealed_responses_open_only_for_their_record_and_pepper() -> None:
    sealer = ResponseSealer(b"p" * 32)
    body = {"key": "kr_secret", "id": "key-1"}
    sealed = sealer.seal(body, bound_to="org\nkey-a\nidem-1")
    assert "kr_secret" not in sealed
    assert sealer.open(sealed, bound_to="org\nkey-a\nidem-1") == body
    assert sealer.open(sealed, bound_to="org\nkey-b\nidem-1") is None
    assert ResponseSealer(b"q" * 32).open(sealed, bound_to="org\nkey-a\nidem-1") is None
    assert sealer.seal(body, bound_to="x") != sealer.seal(body, bound_to="x")  # fresh nonce
