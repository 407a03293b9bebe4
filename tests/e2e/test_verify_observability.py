"""/verify's request ids, metrics and logs on a real server: nothing secret, bounded labels."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyrack.domain.keyformat import KeyFormat
from keyrack.metrics import VERIFY_CODES
from tests.e2e.conftest import ISSUED_SECRETS, new_org_admin
from tests.e2e.server import Server, start_server

pytestmark = pytest.mark.e2e

SERIES = re.compile(r"^(keyrack_\w+)(\{[^}]*\})? ", re.M)


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[Server]:
    """A server that logs each refusal code once an hour at most: exact line counts."""
    server = start_server(tmp_path, env={"KEYRACK_VERIFY_REFUSAL_LOG_SECONDS": "3600"})
    try:
        yield server
    finally:
        server.stop()


def series(text: str) -> set[str]:
    return {name + (labels or "") for name, labels in SERIES.findall(text)}


def verify_lines(server: Server) -> list[dict]:  # type: ignore[type-arg]
    lines = [json.loads(line) for line in server.log().splitlines()]
    return [line for line in lines if line.get("logger") == "keyrack.verify"]


def test_metrics_hold_no_secret_and_labels_stay_bounded(quiet_server: Server) -> None:
    server = quiet_server
    admin = new_org_admin(server)
    path = f"/orgs/{admin.org_id}/api_keys"
    created = [
        admin.client.post(path, json={"name": f"k{i}", "permissions": ["read"]}).json()
        for i in range(3)
    ]
    secrets = [admin.key, *(item["key"] for item in created)]
    ISSUED_SECRETS.extend(secrets[1:])
    assert admin.client.delete(f"{path}/{created[2]['id']}").status_code == 200
    unknown = [KeyFormat("kr").generate() for _ in range(30)]
    verify = server.url + "/verify"

    def burst(round_number: int) -> list[httpx.Response]:
        answers = []
        for secret in secrets:
            answers.append(httpx.get(verify, headers={"X-API-Key": secret}))
            answers.append(httpx.post(verify, json={"key": secret, "permissions": ["x"]}))
            answers.append(httpx.get(verify + f"?key={secret}", headers={"X-Request-ID": secret}))
            answers.append(httpx.get(verify, headers={"Authorization": f"Basic {secret}"}))
            answers.append(httpx.post(verify, json={"key": secret, "org": admin.org_id}))
        for secret in unknown[round_number * 15 : round_number * 15 + 15]:
            request_id = f"burst-{round_number}-{secret[-6:]}"
            answers.append(
                httpx.get(verify, headers={"X-API-Key": secret, "X-Request-ID": request_id})
            )
        return answers

    httpx.get(server.url + "/metrics")  # its own series exist from the first scrape on
    first = burst(0)
    before = httpx.get(server.url + "/metrics").text
    second = burst(1)  # other keys, request ids and the same codes: no new series
    after = httpx.get(server.url + "/metrics").text
    assert series(after) == series(before)
    codes = set(re.findall(r'keyrack_verifications_total\{code="([^"]+)"\}', after))
    assert {"VALID", "NOT_FOUND", "INSUFFICIENT_PERMISSIONS", "MALFORMED", "MISSING"} <= codes
    assert codes <= {*VERIFY_CODES, "OTHER"}
    assert 'keyrack_verify_cache_lookups_total{result="hit"}' in after

    private = [*secrets, *unknown, admin.org_id, *(item["id"] for item in created)]
    for text in (before, after):
        for value in private:
            assert value not in text
    for answer in first + second:
        request_id = answer.headers["x-request-id"]
        assert request_id and not any(secret in request_id for secret in secrets)
        for secret in [*secrets, *unknown]:
            assert secret not in answer.text


def test_refusals_logged_once_per_code_and_successes_not_at_all(quiet_server: Server) -> None:
    server = quiet_server
    admin = new_org_admin(server)
    verify = server.url + "/verify"
    valid_ids = [
        httpx.get(verify, headers={"X-API-Key": admin.key, "X-Request-ID": f"ok-{i}"}).headers[
            "x-request-id"
        ]
        for i in range(10)
    ]
    unknown = [KeyFormat("kr").generate() for _ in range(10)]
    for secret in unknown:
        assert httpx.get(verify, headers={"X-API-Key": secret}).status_code == 401
    denied = httpx.get(verify + "?permission=nope", headers={"X-API-Key": admin.key})
    assert denied.status_code == 403
    marker = httpx.get(server.url + "/no-such-page").headers["x-request-id"]
    lines = wait_for_marker(server, marker)
    assert not {line.get("request_id") for line in lines} & set(valid_ids)
    refusals = [(line["code"], line["status"]) for line in verify_lines(server)]
    assert refusals.count(("NOT_FOUND", 401)) == 1  # ten refusals, one line
    [insufficient] = [
        line
        for line in verify_lines(server)
        if line["request_id"] == denied.headers["x-request-id"]
    ]
    assert insufficient["org_id"] == admin.org_id and insufficient["key_id"].startswith("key-")
    log = server.log()
    for secret in [admin.key, *unknown]:
        assert secret not in log


def wait_for_marker(server: Server, request_id: str) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.log().splitlines()]
        if any(line.get("request_id") == request_id for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no log line for {request_id}")


def test_readiness_reports_the_revocation_feed(server: Server) -> None:
    deadline = time.monotonic() + 5  # the feed connects in the background at start-up
    ready = httpx.get(server.url + "/readyz")
    while ready.json()["status"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)
        ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["revocation_feed"] == "connected"
    assert ready.json()["status"] == "ready"
    text = httpx.get(server.url + "/metrics").text
    assert "keyrack_revocation_feed_connected 1.0" in text
