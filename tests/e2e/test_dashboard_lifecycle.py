"""Dashboard lifecycle flows end to end: Chromium drives a real `keyrack serve` process (rotate,
disable and enable, revoke, the audit log, Load more), and the API confirms each effect."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Response, expect

from keyrack.service import keys as key_service
from tests.e2e.browser import browser, new_page, screenshot
from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin, server_runtime
from tests.e2e.server import Server
from tests.e2e.test_dashboard import MESSAGES, create_via_api, sign_in

__all__ = ["browser"]  # the fixture, imported for pytest

pytestmark = pytest.mark.e2e
DASHBOARD_PAGE_SIZE = 100  # keys.js and audit.js ask for pages of this size
AUTHENTICATED = (403, "INSUFFICIENT_PERMISSIONS")  # a read key that got past authentication


def hash_texts(digest: bytes) -> list[str]:
    """The ways a stored hash could be written into JSON."""
    b64 = base64.b64encode(digest).decode()
    return [digest.hex(), b64, b64.rstrip("="), base64.urlsafe_b64encode(digest).decode()]


def answer_of(server: Server, org_id: str, secret: str) -> tuple[int, str]:
    """How the API treats a read-only `secret` on its own org: 403 once authenticated, else 401
    with the reason."""
    with server.client(secret) as client:
        response = client.get(f"/orgs/{org_id}/api_keys")
    return response.status_code, response.json()["code"]


@pytest.fixture
def page(browser: Browser, server: Server, admin: OrgAdmin) -> Iterator[Page]:
    page = new_page(browser)
    sign_in(page, server, admin.org_id, admin.key)
    yield page
    page.context.close()


def rotate_in_page(page: Page, name: str, grace: str) -> str:
    """Rotate `name` through the dialog; returns the new secret the page showed once."""
    page.get_by_role("button", name=f"Rotate key “{name}”").click()
    page.get_by_label("Old secret keeps working for").select_option(grace)
    page.get_by_role("button", name="Rotate key", exact=True).click()
    dialog = page.get_by_role("dialog", name="Copy your new key now")
    expect(dialog).to_be_visible()
    secret = page.get_by_label(f"Secret for {name}").input_value()
    ISSUED_SECRETS.append(secret)
    dialog.get_by_role("button", name="I have stored it").click()
    expect(dialog).to_be_hidden()
    assert secret not in page.content()
    return secret


def test_rotate_shows_the_new_secret_once_and_honours_the_grace_period(
    page: Page, server: Server, admin: OrgAdmin
) -> None:
    original = create_via_api(admin, "deployer", ["read"])
    page.get_by_role("button", name="Refresh").click()
    graced = rotate_in_page(page, "deployer", "3600")
    assert graced != original["key"]
    row = page.locator("#keys-table tbody tr", has_text="deployer")
    expect(row).to_contain_text(graced[:7])  # `start` shows the new secret's beginning
    assert answer_of(server, admin.org_id, original["key"]) == AUTHENTICATED  # grace period
    assert answer_of(server, admin.org_id, graced) == AUTHENTICATED

    final = rotate_in_page(page, "deployer", "0")
    assert answer_of(server, admin.org_id, graced) == (401, "NOT_FOUND")
    assert answer_of(server, admin.org_id, final) == AUTHENTICATED
    page.reload()
    expect(page.locator("#keys-table")).to_contain_text("deployer")
    assert final not in page.content() and graced not in page.content()


def test_rotating_the_signed_in_key_keeps_the_session(
    page: Page, server: Server, admin: OrgAdmin
) -> None:
    # Without a grace period the old secret stops at once; the page carries on with the new one
    # instead of signing the user out with "key rejected".
    new_secret = rotate_in_page(page, "admin", "0")
    assert answer_of(server, admin.org_id, admin.key) == (401, "NOT_FOUND")
    assert page.evaluate("() => sessionStorage.getItem('keyrack.key')") == new_secret
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    expect(page.locator(MESSAGES)).not_to_contain_text("rejected")
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#keys-table")).to_contain_text(new_secret[:7])
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()


def test_create_with_an_expiry_in_local_time(
    browser: Browser, server: Server, admin: OrgAdmin
) -> None:
    context = browser.new_context(timezone_id="America/New_York")  # UTC-5 in January
    page = context.new_page()
    sign_in(page, server, admin.org_id, admin.key)
    page.get_by_text("Create a key", exact=True).click()
    expires = page.get_by_label("Expires (optional, your local time)")
    page.get_by_label("Name", exact=True).fill("stale")
    expires.fill("2020-01-01T12:00")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator(MESSAGES)).to_contain_text("expires_at: must be in the future")
    expect(expires).to_be_focused()

    page.get_by_label("Name", exact=True).fill("until 2030")
    expires.fill("2030-01-01T12:00")
    page.get_by_role("button", name="Create key").click()
    ISSUED_SECRETS.append(page.get_by_label("Secret for until 2030").input_value())
    listed = admin.client.get(f"/orgs/{admin.org_id}/api_keys").json()
    assert {key["name"]: key["expires_at"] for key in listed}["until 2030"] == (
        "2030-01-01T17:00:00Z"
    )
    context.close()


def test_disable_and_enable_take_effect_in_the_api(
    page: Page, server: Server, admin: OrgAdmin
) -> None:
    worker = create_via_api(admin, "worker", ["read"])
    page.get_by_role("button", name="Refresh").click()
    row = page.locator("#keys-table tbody tr", has_text="worker")
    page.get_by_role("button", name="Disable key “worker”").click()
    expect(page.locator(MESSAGES)).to_contain_text("Key “worker” is now disabled")
    expect(row).to_contain_text("Disabled")
    assert answer_of(server, admin.org_id, worker["key"]) == (401, "DISABLED")
    page.get_by_role("button", name="Enable key “worker”").click()
    expect(page.locator(MESSAGES)).to_contain_text("Key “worker” is now enabled")
    expect(row).to_contain_text("Active")
    assert answer_of(server, admin.org_id, worker["key"]) == AUTHENTICATED

    # Its own key: the page asks first, since it would be signed out and locked out.
    page.get_by_role("button", name="Disable key “admin”").click()
    confirm = page.get_by_role("dialog", name="Disable “admin”?")
    expect(confirm).to_contain_text("you will be signed out")
    page.keyboard.press("Escape")
    expect(page.locator(MESSAGES)).to_contain_text("Kept key “admin” enabled")
    assert all(key["enabled"] for key in admin.client.get(f"/orgs/{admin.org_id}/api_keys").json())


def test_audit_log_shows_what_the_dashboard_did(
    page: Page, server: Server, admin: OrgAdmin, tmp_path: Path
) -> None:
    page.get_by_text("Create a key", exact=True).click()
    page.get_by_label("Name", exact=True).fill("audited")
    page.get_by_role("button", name="Create key").click()
    ISSUED_SECRETS.append(page.get_by_label("Secret for audited").input_value())
    page.get_by_role("dialog").get_by_role("button", name="I have stored it").click()
    rotate_in_page(page, "audited", "86400")
    page.get_by_role("button", name="Disable key “audited”").click()
    expect(page.get_by_role("button", name="Enable key “audited”")).to_be_visible()
    page.get_by_role("button", name="Revoke key “audited”").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(page.locator(MESSAGES)).to_contain_text("Revoked key “audited”")

    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_focused()
    rows = page.locator("#audit-table tbody tr")
    actions = ["key.delete", "key.update", "key.rotate", "key.create"]
    for action in actions:
        expect(rows.filter(has_text=action).first).to_be_visible()
    expect(rows.filter(has_text="key.rotate")).to_contain_text('"grace_period_seconds":86400')
    screenshot(page, "dashboard-audit-desktop", tmp_path)

    page.get_by_label("Action").fill("key.rotate")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("key.rotate")
    page.get_by_label("Action").fill("key.rotated")  # not an action: the server says which are
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(MESSAGES)).to_contain_text("unknown action; one of: key.create")
    expect(rows).to_have_count(0)


def test_load_more_follows_the_servers_pages(page: Page, server: Server, admin: OrgAdmin) -> None:
    runtime = server_runtime(server)
    for number in range(DASHBOARD_PAGE_SIZE):  # with the admin key: one more than a page
        ISSUED_SECRETS.append(
            key_service.create_key(
                uow=runtime.uow(write=True),
                key_format=runtime.key_format,
                hasher=runtime.hasher,
                org_id=admin.org_id,
                name=f"bulk {number:03d}",
                permissions=["read"],
            ).secret
        )
    page.get_by_role("button", name="Refresh").click()
    rows = page.locator("#keys-table tbody tr")
    expect(rows).to_have_count(DASHBOARD_PAGE_SIZE)
    page.get_by_role("button", name="Load more keys").click()
    expect(rows).to_have_count(DASHBOARD_PAGE_SIZE + 1)
    expect(page.get_by_role("button", name="Load more keys")).to_be_hidden()
    ids = rows.evaluate_all("rows => rows.map(row => row.dataset.keyId)")
    assert len(set(ids)) == DASHBOARD_PAGE_SIZE + 1  # every key exactly once

    page.get_by_role("link", name="Audit log").click()  # 101 key.create events
    events = page.locator("#audit-table tbody tr")
    expect(events).to_have_count(DASHBOARD_PAGE_SIZE)
    page.get_by_role("button", name="Load more events").click()
    expect(events).to_have_count(DASHBOARD_PAGE_SIZE + 1)
    expect(page.get_by_role("button", name="Load more events")).to_be_hidden()


def test_the_page_never_receives_a_hash_and_the_secret_only_from_create_and_rotate(
    browser: Browser, server: Server, admin: OrgAdmin
) -> None:
    page = new_page(browser)
    bodies: list[tuple[str, str]] = []

    def record(response: Response) -> None:
        if "/orgs/" in response.url:
            bodies.append((f"{response.request.method} {response.url}", response.text()))

    page.on("response", record)
    sign_in(page, server, admin.org_id, admin.key)
    page.get_by_text("Create a key", exact=True).click()
    page.get_by_label("Name", exact=True).fill("watched")
    page.get_by_role("button", name="Create key").click()
    created = page.get_by_label("Secret for watched").input_value()
    ISSUED_SECRETS.append(created)
    page.get_by_role("dialog").get_by_role("button", name="I have stored it").click()
    rotated = rotate_in_page(page, "watched", "0")
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#audit-table tbody tr").first).to_be_visible()
    page.get_by_role("link", name="API keys").click()
    expect(page.locator("#keys-table")).to_contain_text("watched")

    hasher = server_runtime(server).hasher
    secrets = (admin.key, created, rotated)
    hashes = [text for secret in secrets for text in hash_texts(hasher.hash(secret))]
    carried_by: dict[str, list[str]] = {secret: [] for secret in secrets}
    for request, body in bodies:
        assert not any(text in body for text in hashes), request
        for secret in secrets:
            if secret in body:
                carried_by[secret].append(request)
    base = f"{server.url}/orgs/{admin.org_id}/api_keys"
    assert carried_by[admin.key] == []
    assert carried_by[created] == [f"POST {base}"]
    assert [request.rsplit("/", 1)[-1] for request in carried_by[rotated]] == ["rotate"]
    page.context.close()
