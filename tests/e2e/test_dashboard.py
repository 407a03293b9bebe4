"""The web dashboard at /ui/, driven in headless Chromium against a real server process."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import PHONE, browser, new_page, screenshot
from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin, new_org_admin
from tests.e2e.server import Server

__all__ = ["browser"]  # the fixture, imported for pytest

pytestmark = pytest.mark.e2e
MESSAGES = "#messages"


def sign_in(page: Page, server: Server, org_id: str, key: str) -> None:
    page.goto(server.url + "/ui/")
    page.get_by_label("Organization ID").fill(org_id)
    page.get_by_label("Admin API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()


def create_via_api(admin: OrgAdmin, name: str, permissions: list[str]) -> dict:  # type: ignore[type-arg]
    response = admin.client.post(
        f"/orgs/{admin.org_id}/api_keys", json={"name": name, "permissions": permissions}
    )
    assert response.status_code == 200, response.text
    ISSUED_SECRETS.append(response.json()["key"])
    return response.json()  # type: ignore[no-any-return]


def listed_ids(admin: OrgAdmin) -> set[str]:
    return {item["id"] for item in admin.client.get(f"/orgs/{admin.org_id}/api_keys").json()}


def test_sign_in_by_keyboard_lists_keys_and_keeps_the_key_in_session_storage(
    browser: Browser, server: Server, admin: OrgAdmin
) -> None:
    create_via_api(admin, "ci deploy", ["read", "write"])
    page = new_page(browser)
    page.goto(server.url + "/ui/")
    page.get_by_label("Organization ID").focus()
    page.keyboard.type(admin.org_id)
    page.keyboard.press("Tab")
    page.keyboard.type(admin.key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="API keys")).to_be_focused()
    rows = page.locator("#keys-table tbody tr")
    expect(rows).to_have_count(2)
    row = rows.filter(has_text="ci deploy")
    expect(row).to_contain_text("read")
    expect(row).to_contain_text("write")
    expect(row).to_contain_text("Active")
    expect(row.get_by_role("button", name="Revoke key “ci deploy”")).to_be_visible()
    stored = page.evaluate("() => [sessionStorage.getItem('keyrack.key'), localStorage.length]")
    assert stored == [admin.key, 0]
    assert page.context.cookies() == []
    assert admin.key not in page.content()  # the key is never rendered
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Organization ID")).to_be_focused()
    assert page.evaluate("() => sessionStorage.getItem('keyrack.key')") is None


def test_sign_in_errors_are_announced(browser: Browser, server: Server, admin: OrgAdmin) -> None:
    page = new_page(browser)
    page.goto(server.url + "/ui/")
    page.get_by_label("Organization ID").fill(admin.org_id)
    page.get_by_label("Admin API key").fill("kr_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(MESSAGES)).to_contain_text("Sign-in failed: the key was not accepted")
    expect(page.get_by_label("Admin API key")).to_be_focused()
    reader = new_org_admin(server, permissions=("read",))
    page.get_by_label("Organization ID").fill(reader.org_id)
    page.get_by_label("Admin API key").fill(reader.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(MESSAGES)).to_contain_text("does not have the admin permission")
    expect(page.get_by_role("heading", name="API keys")).to_be_hidden()


def test_create_shows_the_secret_once(
    browser: Browser, server: Server, admin: OrgAdmin, tmp_path: Path
) -> None:
    page = new_page(browser)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    sign_in(page, server, admin.org_id, admin.key)
    page.get_by_text("Create a key", exact=True).click()
    page.get_by_label("Name", exact=True).fill("billing worker")
    page.get_by_label("write", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    dialog = page.get_by_role("dialog", name="Copy your new key now")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("This is the only time the secret is shown")
    secret = page.get_by_label("Secret for billing worker").input_value()
    ISSUED_SECRETS.append(secret)
    assert re.fullmatch(r"kr_[0-9A-Za-z]{38}", secret)
    assert server.client(secret).get(f"/orgs/{admin.org_id}/api_keys").status_code == 403
    screenshot(page, "dashboard-new-key", tmp_path, full_page=False)
    dialog.get_by_role("button", name="Copy").click()
    expect(page.locator(MESSAGES)).to_contain_text("Copied")
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    dialog.get_by_role("button", name="I have stored it").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#keys-table")).to_contain_text("billing worker")
    assert secret not in page.content()
    page.reload()
    expect(page.locator("#keys-table")).to_contain_text("billing worker")
    assert secret not in page.content()


def test_revoke_asks_for_confirmation(browser: Browser, server: Server, admin: OrgAdmin) -> None:
    doomed = create_via_api(admin, "old laptop", ["read"])
    page = new_page(browser)
    sign_in(page, server, admin.org_id, admin.key)
    revoke = page.get_by_role("button", name="Revoke key “old laptop”")
    revoke.click()
    confirm = page.get_by_role("dialog", name="Revoke “old laptop”?")
    expect(confirm).to_contain_text("stops working immediately")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")  # the safe default: nothing happens
    expect(confirm).to_be_hidden()
    expect(revoke).to_be_focused()
    assert doomed["id"] in listed_ids(admin)
    revoke.click()
    confirm.get_by_role("button", name="Revoke key").click()
    expect(page.locator(MESSAGES)).to_contain_text("Revoked key “old laptop”")
    expect(page.locator("#keys-table")).not_to_contain_text("old laptop")
    assert doomed["id"] not in listed_ids(admin)
    assert server.client(doomed["key"]).get("/orgs/x/api_keys").status_code == 401


def test_server_errors_are_shown(browser: Browser, server: Server) -> None:
    limited = new_org_admin(server, permissions=("read", "admin"))
    page = new_page(browser)
    sign_in(page, server, limited.org_id, limited.key)
    page.get_by_text("Create a key", exact=True).click()
    page.get_by_label("Name", exact=True).fill("too powerful")
    page.get_by_label("write", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    expect(page.locator(MESSAGES)).to_contain_text("INSUFFICIENT_PERMISSIONS")
    expect(page.get_by_role("dialog")).to_be_hidden()


def test_an_endpoint_the_server_lacks_degrades_cleanly(
    browser: Browser, server: Server, admin: OrgAdmin
) -> None:
    # This server has every endpoint; a proxy that forwards only some paths (or an older API
    # behind this dashboard) answers 404/405 problems, simulated here for the audit log.
    page = new_page(browser)
    page.route(
        re.compile(r".*/audit_events.*"),
        lambda route: route.fulfill(
            status=405,
            content_type="application/problem+json",
            body='{"type":"about:blank","title":"Method Not Allowed","status":405,'
            '"detail":"not allowed","code":"METHOD_NOT_ALLOWED"}',
        ),
    )
    sign_in(page, server, admin.org_id, admin.key)
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_focused()
    expect(page.locator("#audit-unavailable")).to_contain_text("The audit log is not available")
    page.get_by_role("link", name="API keys").click()
    expect(page.locator("#keys-table")).to_contain_text("admin")


def test_screenshots_desktop_and_phone(
    browser: Browser, server: Server, admin: OrgAdmin, tmp_path: Path
) -> None:
    created = {
        name: create_via_api(admin, name, permissions)["id"]
        for name, permissions in (
            ("ci deploy", ["read", "write"]),
            ("grafana", ["read"]),
            ("ops console", ["read", "write", "admin"]),
        )
    }
    expiry = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, change in (("ci deploy", {"expires_at": expiry}), ("grafana", {"enabled": False})):
        path = f"/orgs/{admin.org_id}/api_keys/{created[name]}"
        assert admin.client.patch(path, json=change).status_code == 200
    for label, viewport in (("desktop", None), ("phone", PHONE)):
        page = new_page(browser, viewport) if viewport else new_page(browser)
        page.goto(server.url + "/ui/")
        screenshot(page, f"dashboard-sign-in-{label}", tmp_path)
        sign_in(page, server, admin.org_id, admin.key)
        expect(page.locator("#keys-table tbody tr")).to_have_count(4)
        expect(page.locator("#keys-table tbody tr", has_text="grafana")).to_contain_text("Disabled")
        screenshot(page, f"dashboard-keys-{label}", tmp_path, full_page=not viewport)
        if viewport:  # a phone shows rows as cards: no sideways scrolling
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= PHONE["width"]
        page.context.close()
