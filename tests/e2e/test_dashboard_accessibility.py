"""Dashboard accessibility: axe-core finds no violation in any view or dialog, every form field
has a label, and the main flows work with the keyboard alone (against a real server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.browser import browser, new_page
from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin
from tests.e2e.server import Server
from tests.e2e.test_dashboard import MESSAGES, create_via_api, listed_ids, sign_in
from tests.e2e.test_dashboard_lifecycle import AUTHENTICATED, answer_of

__all__ = ["browser"]  # the fixture, imported for pytest

pytestmark = pytest.mark.e2e
MAX_TABS = 40  # a bound on focus walks: the keys view has fewer stops with a few keys
UNLABELLED_FIELDS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(field => field.type !== 'hidden' && field.labels.length === 0
    && !field.getAttribute('aria-label') && !field.getAttribute('aria-labelledby'))
  .map(field => field.outerHTML)"""


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser)
    yield page
    page.context.close()


def assert_no_axe_violations(page: Page, where: str) -> None:
    results = Axe().run(page)
    assert results.violations_count == 0, f"{where}:\n{results.generate_report()}"


def tab_to(page: Page, target: Locator) -> None:
    """Press Tab until `target` has focus, as a keyboard user would (bounded)."""
    for _ in range(MAX_TABS):
        if target.evaluate("node => node === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{target} is not reachable with Tab within {MAX_TABS} presses")


def test_every_view_and_dialog_passes_axe_and_labels_every_field(
    page: Page, server: Server, admin: OrgAdmin
) -> None:
    create_via_api(admin, "ci deploy", ["read", "write"])
    page.goto(server.url + "/ui/")
    assert page.evaluate(UNLABELLED_FIELDS) == []  # hidden views included
    assert_no_axe_violations(page, "sign-in view")
    sign_in(page, server, admin.org_id, admin.key)
    page.get_by_text("Create a key", exact=True).click()
    assert_no_axe_violations(page, "keys view with the create form open")

    page.get_by_role("button", name="Rotate key “ci deploy”").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert_no_axe_violations(page, "rotate confirmation")
    page.keyboard.press("Escape")

    page.get_by_label("Name", exact=True).fill("axe")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("dialog", name="Copy your new key now")).to_be_visible()
    ISSUED_SECRETS.append(page.get_by_label("Secret for axe").input_value())
    assert_no_axe_violations(page, "new secret dialog")
    page.get_by_role("button", name="I have stored it").click()

    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#audit-table tbody tr").first).to_be_visible()
    assert_no_axe_violations(page, "audit view")


def test_create_rotate_and_revoke_with_the_keyboard_alone(
    page: Page, server: Server, admin: OrgAdmin
) -> None:
    page.goto(server.url + "/ui/")
    tab_to(page, page.get_by_label("Organization ID"))
    page.keyboard.type(admin.org_id)
    page.keyboard.press("Tab")
    page.keyboard.type(admin.key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="API keys")).to_be_focused()

    tab_to(page, page.get_by_text("Create a key", exact=True))
    page.keyboard.press("Enter")  # opens the <details>
    page.keyboard.press("Tab")
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("keyboard only")
    page.keyboard.press("Tab")  # read is checked by default; add write with the space bar
    page.keyboard.press("Tab")
    expect(page.get_by_label("write", exact=True)).to_be_focused()
    page.keyboard.press("Space")
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.press("Enter")  # submits the form
    secret_field = page.get_by_label("Secret for keyboard only")
    expect(secret_field).to_be_focused()
    created = secret_field.input_value()
    ISSUED_SECRETS.append(created)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="I have stored it")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_hidden()
    row = page.locator("#keys-table tbody tr", has_text="keyboard only")
    expect(row).to_contain_text("write")

    rotate = page.get_by_role("button", name="Rotate key “keyboard only”")
    tab_to(page, rotate)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.get_by_label("Old secret keeps working for").focus()
    page.keyboard.press("ArrowDown")  # 1 hour
    tab_to(page, page.get_by_role("button", name="Rotate key", exact=True))
    page.keyboard.press("Enter")
    rotated_field = page.get_by_label("Secret for keyboard only")
    expect(rotated_field).to_be_focused()
    ISSUED_SECRETS.append(rotated_field.input_value())
    assert rotated_field.input_value() != created
    page.keyboard.press("Escape")  # a native modal closes on Escape and forgets the secret
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator("#secret-value")).to_have_value("")  # cleared as the dialog closes
    assert answer_of(server, admin.org_id, created) == AUTHENTICATED  # the 1 hour grace

    revoke = page.get_by_role("button", name="Revoke key “keyboard only”")
    tab_to(page, revoke)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Revoke key", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(MESSAGES)).to_contain_text("Revoked key “keyboard only”")
    expect(row).to_have_count(0)
    assert len(listed_ids(admin)) == 1  # only the admin key is left
