"""/verify's metrics through the real app on SQLite and PostgreSQL, and database errors counted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from starlette.testclient import TestClient

from keyrack.api.app import create_app
from keyrack.runtime import Runtime, build_runtime
from keyrack.service import keys as key_service
from keyrack.settings import Settings
from tests.conftest import TEST_PEPPER
from tests.integration.test_operations import metric_value
from tests.random_refs import random_org_id


def issue_key(runtime: Runtime, permissions: list[str]) -> tuple[str, str, str]:
    org_id = random_org_id()
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="svc",
        permissions=permissions,
    )
    return org_id, created.key.id, created.secret


def verifications(text: str, code: str) -> float:
    return metric_value(text, f'keyrack_verifications_total{{code="{code}"}}')


def test_verify_outcomes_latency_and_cache_lookups(runtime: Runtime) -> None:
    org_id, key_id, secret = issue_key(runtime, ["read"])
    unknown = runtime.key_format.generate()
    http = TestClient(create_app(runtime), raise_server_exceptions=False)
    before = http.get("/metrics").text
    answers = [
        http.get("/verify", headers={"X-API-Key": secret}),
        http.get("/verify", headers={"Authorization": f"Bearer {secret}"}),
        http.post("/verify", json={"key": secret, "permissions": ["write"]}),
        http.get("/verify", headers={"X-API-Key": unknown, "X-Request-ID": "trace-7"}),
        http.get("/verify", headers={"X-API-Key": "kr_nope"}),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 403, 401, 401]
    assert answers[3].headers["x-request-id"] == "trace-7"
    assert all(answer.headers["x-request-id"] for answer in answers)
    after = http.get("/metrics").text  # the exposition flushes the batched counts first
    assert verifications(after, "VALID") - verifications(before, "VALID") == 2
    for code in ("INSUFFICIENT_PERMISSIONS", "NOT_FOUND", "MALFORMED"):
        assert verifications(after, code) - verifications(before, code) == 1, code
    observed = "keyrack_verify_duration_seconds_count"
    assert metric_value(after, observed) - metric_value(before, observed) == 5
    lookups = "keyrack_verify_cache_lookups_total"
    # The malformed key is refused before any lookup. Without the lifespan the revocation feed
    # never connects, so the cache is bypassed and every lookup is a miss.
    assert metric_value(after, lookups) - metric_value(before, lookups) == 4
    for private in (secret, unknown, key_id, org_id, runtime.hasher.hash(secret).hex()):
        assert private not in after


def test_metrics_off_leaves_verify_uncounted(settings: Settings) -> None:
    runtime = build_runtime(settings.model_copy(update={"metrics": False}))
    try:
        _, _, secret = issue_key(runtime, ["read"])
        http = TestClient(create_app(runtime), raise_server_exceptions=False)
        before = verifications(http.get("/metrics").text, "VALID")
        assert http.get("/verify", headers={"X-API-Key": secret}).status_code == 200
        assert verifications(http.get("/metrics").text, "VALID") == before
    finally:
        runtime.close()


def test_a_broken_sqlite_read_is_503_and_counted(tmp_path: Path) -> None:
    database = tmp_path / "keyrack.db"
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{database}", pepper=TEST_PEPPER)
    runtime = build_runtime(settings)
    try:
        _, _, secret = issue_key(runtime, ["read"])
        http = TestClient(create_app(runtime), raise_server_exceptions=False)
        before = http.get("/metrics").text
        with sqlite3.connect(database) as connection:  # the verify query now fails
            connection.execute("ALTER TABLE key_secrets RENAME TO key_secrets_gone")
        answer = http.get("/verify", headers={"X-API-Key": secret})
        assert answer.status_code == 503
        assert answer.json()["code"] == "SERVICE_UNAVAILABLE"
        assert answer.headers["retry-after"] and answer.headers["x-request-id"]
        after = http.get("/metrics").text
        errors = 'keyrack_database_errors_total{error="OperationalError"}'
        assert metric_value(after, errors) - metric_value(before, errors) == 1
        unavailable = "SERVICE_UNAVAILABLE"
        assert verifications(after, unavailable) - verifications(before, unavailable) == 1
        assert secret not in answer.text
    finally:
        runtime.close()
