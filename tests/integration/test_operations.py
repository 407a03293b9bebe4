"""/healthz, /readyz and /metrics on real SQLite and PostgreSQL, and on a broken database."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from keyrack.api.app import create_app
from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings
from tests.conftest import TEST_PEPPER
from tests.random_refs import random_org_id


def client(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime), raise_server_exceptions=False)


def metric_value(text: str, line_start: str) -> float:
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    ]
    return sum(values)


def test_health_and_readiness_on_a_current_database(runtime: Runtime) -> None:
    with client(runtime) as http:  # runs the lifespan: the revocation feed connects
        assert http.get("/healthz").json() == {"status": "ok"}
        deadline = time.monotonic() + 10
        while not runtime.revocation_feed_connected and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "migrations": "current", "revocation_feed": "connected"},
        }
        assert metric_value(http.get("/metrics").text, "keyrack_revocation_feed_connected") == 1


def test_a_disconnected_revocation_feed_is_degraded_but_ready(runtime: Runtime) -> None:
    """No feed (here: never started) means the verify cache is bypassed: slower, still correct."""
    ready = client(runtime).get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "migrations": "current", "revocation_feed": "disconnected"},
    }


def test_readiness_fails_on_an_unreachable_database(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://postgres@127.0.0.1:9/unreachable",  # discard port: refused
        pepper=TEST_PEPPER,
    )
    runtime = build_runtime(settings)
    try:
        http = client(runtime)
        before = metric_value(http.get("/metrics").text, "keyrack_database_errors_total")
        response = http.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
        body = response.json()
        assert body["code"] == "SERVICE_UNAVAILABLE"
        assert body["checks"] == {
            "database": "unreachable",
            "migrations": "unknown",
            "revocation_feed": "disconnected",
        }
        assert "unreachable" in body["detail"]
        assert http.get("/healthz").status_code == 200  # the process itself is fine
        after = metric_value(http.get("/metrics").text, "keyrack_database_errors_total")
        assert after > before
    finally:
        runtime.close()


def test_readiness_fails_on_an_outdated_schema(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'empty.db'}", pepper=TEST_PEPPER
    )
    runtime = build_runtime(settings, migrate_sqlite=False)
    try:
        response = client(runtime).get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {
            "database": "ok",
            "migrations": "outdated",
            "revocation_feed": "disconnected",
        }
        assert "keyrack migrate" in response.json()["detail"]
    finally:
        runtime.close()


def test_metrics_count_management_requests_by_route_template(runtime: Runtime) -> None:
    org_id = random_org_id()
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="admin",
        permissions=["read", "write", "admin"],
    )
    http = client(runtime)
    series = (
        'keyrack_http_requests_total{method="GET",route="/orgs/{org_id}/api_keys",status="200"}'
    )
    before = metric_value(http.get("/metrics").text, series)
    for _ in range(3):
        listed = http.get(
            f"/orgs/{org_id}/api_keys", headers={"Authorization": f"Bearer {created.secret}"}
        )
        assert listed.status_code == 200
    http.get("/no/such/path")
    assert http.get("/ui/app.js").status_code == 200
    response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric_value(text, series) == before + 3
    assert 'route="unmatched",status="404"' in text
    assert 'route="/ui/",status="200"' in text
    assert org_id not in text  # route templates only, never raw paths
    assert created.secret not in text and created.key.id not in text
    for name in (
        "keyrack_verifications_total",
        "keyrack_verify_duration_seconds",
        "keyrack_verify_cache_lookups_total",
        "keyrack_rate_limit_decisions_total",
        "keyrack_database_errors_total",
        "keyrack_http_request_duration_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text
