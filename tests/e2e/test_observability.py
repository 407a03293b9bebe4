"""Logs, request ids, metrics across workers and offline API docs, against real server processes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from tests.e2e.browser import browser, new_page
from tests.e2e.conftest import OrgAdmin
from tests.e2e.server import Server, start_server

__all__ = ["browser"]  # the fixture, imported for pytest

pytestmark = pytest.mark.e2e


def access_lines(server: Server) -> list[dict]:  # type: ignore[type-arg]
    lines = []
    for line in server.log().splitlines():
        record = json.loads(line)  # every line the server writes is one JSON object
        if record.get("logger") == "keyrack.access":
            lines.append(record)
    return lines


def wait_for_line(server: Server, request_id: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [line for line in access_lines(server) if line.get("request_id") == request_id]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {request_id}")


def test_one_json_line_per_request_with_request_id_and_caller(
    server: Server, admin: OrgAdmin
) -> None:
    path = f"/orgs/{admin.org_id}/api_keys"
    response = admin.client.get(
        path + f"?api_key={admin.key}", headers={"X-Request-ID": "trace-42.a"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-42.a"
    line = wait_for_line(server, "trace-42.a")
    assert line["org_id"] == admin.org_id
    assert line["key_id"].startswith("key-")
    assert (line["method"], line["path"], line["status"]) == ("GET", path, 200)
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO" and line["time"]

    anonymous = httpx.get(server.url + path, headers={"X-API-Key": admin.key + "x"})
    generated = anonymous.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", generated)
    failed = wait_for_line(server, generated)
    assert failed["status"] == 401 and failed["key_id"] is None
    log = server.log()
    assert admin.key not in log and "api_key=" not in log


def test_successful_probes_are_counted_not_logged(server: Server) -> None:
    ids = [httpx.get(server.url + "/healthz").headers["x-request-id"] for _ in range(5)]
    assert httpx.get(server.url + "/readyz").status_code == 200
    marker = httpx.get(server.url + "/nothing-here").headers["x-request-id"]
    wait_for_line(server, marker)  # logged after the probes: they had their chance
    logged = {line.get("request_id") for line in access_lines(server)}
    assert not logged & set(ids)


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, name="workers", args=("--workers", "2"))
    try:
        for _ in range(20):
            httpx.get(server.url + "/healthz")  # a new connection each: both workers answer
        text = httpx.get(server.url + "/metrics").text
        series = 'keyrack_http_requests_total{method="GET",route="/healthz",status="200"}'
        [line] = [line for line in text.splitlines() if line.startswith(series)]
        assert float(line.rsplit(" ", 1)[1]) == 20
    finally:
        server.stop()


def external_urls(html: str) -> list[str]:
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""url\(\s*["']?([^"')]+)""", html)
    return [url for url in urls if urlsplit(url).netloc or url.startswith("//")]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_reference_no_external_url(server: Server, page: str) -> None:
    response = httpx.get(server.url + page)
    assert "default-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    assert external_urls(html) == []
    assets = re.findall(r"""(?:src|href)="(/[^"]+)\"""", html)
    assert assets
    for asset in assets:
        assert httpx.get(server.url + asset).status_code == 200, asset


def test_every_openapi_reference_resolves(server: Server) -> None:
    """ReDoc refuses to render a schema with one dangling `$ref` (Swagger UI hides it)."""
    schema = httpx.get(server.url + "/openapi.json").json()
    refs = set(re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', json.dumps(schema)))
    assert refs
    assert refs <= set(schema["components"]["schemas"])


def test_api_docs_render_with_no_internet(browser: Browser, server: Server) -> None:
    page = new_page(browser)
    blocked: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(server.url + "/docs")
    expect(page.get_by_text("Create a new API key").first).to_be_visible(timeout=15_000)
    page.goto(server.url + "/redoc")
    heading = page.get_by_role("heading", name=re.compile("Create a new API key"))
    expect(heading).to_be_visible(timeout=15_000)
    # ReDoc's bundle asks for its logo on a CDN: the page's CSP stops it before any network use.
    assert [url for url in blocked if not url.startswith(("data:", "blob:"))] == []
