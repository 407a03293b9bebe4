"""Client addresses from the ASGI scope, believing X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import logging

import pytest

from keyrack.api.client_address import client_address, parse_networks
from keyrack.logs import ThrottledLog
from keyrack.settings import Settings

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


def scope(peer: str | None, *forwarded: str) -> dict[str, object]:
    return {
        "client": (peer, 50_000) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


@pytest.mark.parametrize(
    ("request_scope", "expected"),
    [
        (scope("198.51.100.7"), "198.51.100.7"),
        (scope("198.51.100.7", "1.2.3.4"), "198.51.100.7"),  # untrusted peer: header ignored
        (scope("10.0.0.2", "203.0.113.5"), "203.0.113.5"),
        (scope("10.0.0.2", "6.6.6.6, 203.0.113.5, 10.1.1.1"), "203.0.113.5"),
        (scope("10.0.0.2", "6.6.6.6, 203.0.113.5", "10.1.1.1"), "203.0.113.5"),
        (scope("10.0.0.2", "10.9.9.9, 10.1.1.1"), "10.9.9.9"),  # all trusted: the farthest
        (scope("10.0.0.2"), "10.0.0.2"),  # a trusted peer without a header is the client
        (scope("10.0.0.2", "garbage, 10.1.1.1"), "10.1.1.1"),  # stops at the hop reporting it
        (scope("10.0.0.2", "203.0.113.5:4711"), "203.0.113.5"),
        (scope("10.0.0.2", "[2001:db8::1]:443"), "2001:db8::1"),
        (scope("2001:db8:ffff::1", "2001:db8::7"), "2001:db8::7"),
        (scope("::ffff:10.0.0.2", "203.0.113.5"), "203.0.113.5"),
        (scope(None, "203.0.113.5"), None),
    ],
)
def test_client_address(request_scope: dict[str, object], expected: str | None) -> None:
    assert client_address(request_scope, PROXIES) == expected


def test_nothing_is_trusted_by_default() -> None:
    assert client_address(scope("10.0.0.2", "203.0.113.5"), []) == "10.0.0.2"


def test_settings_read_a_comma_separated_cidr_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYRACK_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")
    assert [str(n) for n in Settings().trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    monkeypatch.setenv("KEYRACK_TRUSTED_PROXIES", "not-a-network")
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings()


def test_throttled_log_writes_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    warn = ThrottledLog(logging.getLogger("limits-test"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="limits-test"):
        for _ in range(100):
            warn.warning("redis down")
        now[0] = 10.0
        warn.warning("redis down")
    assert [r.getMessage() for r in caplog.records] == [
        "redis down",
        "redis down (99 similar warnings held back)",
    ]
