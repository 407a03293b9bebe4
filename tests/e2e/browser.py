"""Headless Chromium for dashboard tests: Debian's `chromium` driven by Playwright's Python client.

No browser download: Playwright launches the system binary. Without it the tests skip with the
reason, unless KEYRACK_TEST_REQUIRE_SERVICES=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = os.environ.get("KEYRACK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Generous waits: on a loaded 2-core CI machine a round trip can take seconds. They bound how long
# a broken page is waited for; they are not timings the tests assert.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str:
    if os.path.exists(CHROMIUM) or shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"dashboard tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("KEYRACK_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message + "; KEYRACK_TEST_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


def screenshot(page: Page, name: str, tmp_path: Path, *, full_page: bool = True) -> None:
    """Always into the test's tmp dir; into docs/screenshots when KEYRACK_UPDATE_SCREENSHOTS=1
    (kept out of ordinary runs so that a test run does not change tracked files)."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=full_page)
    if os.environ.get("KEYRACK_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
