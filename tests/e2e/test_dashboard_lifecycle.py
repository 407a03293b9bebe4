"""Dashboard flows on the lifecycle endpoints (pages, rotate, disable, audit), in Chromium.

The browser talks to a real server, but the endpoints below are answered by Playwright with the
documented shapes, so these flows are checked whichever of them the server under test has.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.e2e.browser import browser, new_page
from tests.e2e.server import Server

__all__ = ["browser"]  # the fixture, imported for pytest

pytestmark = pytest.mark.e2e
ORG = "acme"
SECRET = "kr_" + "N" * 38


def key_object(number: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": f"key-{number:04d}",
        "name": f"key {number}",
        "created_at": "2023-11-18T12:00:00Z",
        "permissions": ["read"],
        "start": f"kr_{number:04d}",
        "expires_at": None,
        "last_used_at": "2023-11-19T08:30:00Z",
        "enabled": True,
        "rate_limit": None,
        "quota": None,
        **changes,
    }


class FakeLifecycle:
    """Answers the management endpoints for org `acme` and records what the page sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    def handle(self, route: Route, request: Request) -> None:
        path = re.sub(r"^https?://[^/]+", "", request.url)
        body = json.loads(request.post_data) if request.post_data else None
        self.requests.append((request.method, path, body))
        assert request.headers["authorization"] == f"Bearer {SECRET}"
        if request.method == "GET" and "/api_keys?" in path:
            if "cursor=page2" in path:
                return self.json(route, [key_object(3)])
            link = f'</orgs/{ORG}/api_keys?limit=100&cursor=page2>; rel="next"'
            return self.json(route, [key_object(1), key_object(2)], {"Link": link})
        if path.endswith("/rotate"):
            return self.json(route, {**key_object(2), "start": "kr_NNNN", "key": SECRET + "x"})
        if request.method == "PATCH":
            return self.json(route, key_object(2, enabled=body["enabled"]))
        if "/audit_events" in path:
            event = {
                "id": "1",
                "occurred_at": "2023-11-18T12:00:00Z",
                "org_id": ORG,
                "actor_key_id": "key-0001",
                "action": "key.rotated",
                "target": "key-0002",
                "client_ip": "127.0.0.1",
                "request_id": "req-77",
                "details": {"grace_period_seconds": 3600},
            }
            return self.json(route, [event])
        return route.fulfill(status=500, body="unexpected request")

    @staticmethod
    def json(route: Route, data: Any, headers: dict[str, str] | None = None) -> None:
        route.fulfill(
            status=200, content_type="application/json", body=json.dumps(data), headers=headers
        )


@pytest.fixture
def signed_in(browser: Browser, server: Server) -> tuple[Page, FakeLifecycle]:
    fake = FakeLifecycle()
    page = new_page(browser)
    page.route(re.compile(rf".*/orgs/{ORG}/.*"), fake.handle)
    page.goto(server.url + "/ui/")
    page.get_by_label("Organization ID").fill(ORG)
    page.get_by_label("Admin API key").fill(SECRET)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#keys-table tbody tr")).to_have_count(2)
    return page, fake


def test_follows_link_pages(signed_in: tuple[Page, FakeLifecycle]) -> None:
    page, fake = signed_in
    expect(page.locator("#keys-table")).to_contain_text("2023")  # last used is shown
    page.get_by_role("button", name="Load more keys").click()
    expect(page.locator("#keys-table tbody tr")).to_have_count(3)
    expect(page.get_by_role("button", name="Load more keys")).to_be_hidden()
    assert ("GET", f"/orgs/{ORG}/api_keys?limit=100&cursor=page2", None) in fake.requests


def test_rotate_sends_the_grace_period_and_shows_the_new_secret_once(
    signed_in: tuple[Page, FakeLifecycle],
) -> None:
    page, fake = signed_in
    page.get_by_role("button", name="Rotate key “key 2”").click()
    page.get_by_label("Old secret keeps working for").select_option("3600")
    page.get_by_role("button", name="Rotate key", exact=True).click()
    dialog = page.get_by_role("dialog", name="Copy your new key now")
    expect(dialog).to_be_visible()
    assert page.get_by_label("Secret for key 2").input_value() == SECRET + "x"
    assert ("POST", f"/orgs/{ORG}/api_keys/key-0002/rotate", {"grace_period_seconds": 3600}) in (
        fake.requests
    )
    dialog.get_by_role("button", name="I have stored it").click()
    assert SECRET + "x" not in page.content()


def test_disable_sends_a_patch(signed_in: tuple[Page, FakeLifecycle]) -> None:
    page, fake = signed_in
    page.get_by_role("button", name="Disable key “key 1”").click()
    expect(page.locator("#messages")).to_contain_text("is now disabled")
    assert ("PATCH", f"/orgs/{ORG}/api_keys/key-0001", {"enabled": False}) in fake.requests


def test_audit_log_lists_events_with_filters(signed_in: tuple[Page, FakeLifecycle]) -> None:
    page, fake = signed_in
    page.get_by_role("link", name="Audit log").click()
    row = page.locator("#audit-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("key.rotated")
    expect(row).to_contain_text("req-77")
    page.get_by_label("Action").fill("key.created")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    paths = [path for method, path, _ in fake.requests if "/audit_events" in path]
    assert any("action=key.created" in path for path in paths)
