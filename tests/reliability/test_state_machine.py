"""A Hypothesis state machine drives the key lifecycle against an in-memory model (key_model.py).

Create, list, get, patch, rotate, delete and verify run through the real ASGI app (management API
and the raw `/verify` endpoint) and through the same process's cached `Verifier`, on SQLite and
PostgreSQL; after every step the API and the model must agree. Expiry and rotation grace are
checked on a virtual clock: the verifier's clock jumps forward in steps of 1000 s while every
expiry and grace end sits 500 s from such a step, so no answer depends on how fast the test runs.

KEYRACK_SM_EXAMPLES (default 40) and KEYRACK_SM_STEPS (default 30) bound the run; the long run
in docs/RELIABILITY.md uses 200 x 50.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from starlette.testclient import TestClient

from keyrack.api.app import create_app
from keyrack.runtime import Runtime, build_runtime
from keyrack.settings import Settings
from tests.conftest import TEST_PEPPER
from tests.reliability.key_model import PERMISSIONS, KeyModel, ModelKey
from tests.reliability.servers import new_tenant

EXAMPLES = int(os.environ.get("KEYRACK_SM_EXAMPLES", "40"))
STEPS = int(os.environ.get("KEYRACK_SM_STEPS", "30"))
STEP_SECONDS = 1000  # how far the virtual clock jumps; boundaries sit half a step away
STATUS_OF = {"VALID": 200, "INSUFFICIENT_PERMISSIONS": 403}  # every other code: 401

permission_sets = st.lists(st.sampled_from(PERMISSIONS), min_size=1, max_size=3, unique=True)
names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20
).map(lambda text: f"k{text}".strip())
# None: no expiry; n: n steps and a half from now on the virtual clock.
expiry_slots = st.one_of(st.none(), st.integers(0, 3))
graces = st.sampled_from([0, STEP_SECONDS // 2, STEP_SECONDS * 3 // 2])


def rfc3339(instant: float | None) -> str | None:
    if instant is None:
        return None
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyLifecycle(RuleBasedStateMachine):
    runtime: Runtime
    client: TestClient

    def __init__(self) -> None:
        super().__init__()
        self.tenant = new_tenant(self.runtime)
        self.org = self.tenant.org_id
        self.auth = {"Authorization": f"Bearer {self.tenant.admin_key}"}
        self.model = KeyModel()
        self.deleted_ids: list[str] = []
        self.offset = 0.0  # how far the verifier's clock is ahead of the real one
        # The Verifier takes its clock as a constructor argument; build_runtime passes none, so
        # the test swaps it on the runtime's instance (the one /verify and management auth use).
        self.runtime.verifier._clock = lambda: time.time() + self.offset

    def virtual_now(self) -> float:
        return time.time() + self.offset

    def expiry(self, slot: int | None) -> float | None:
        """An expiry `slot` steps and a half ahead of the virtual clock (at least half a step
        ahead of the real one, as the API requires), at second precision as stored."""
        return (
            None if slot is None else float(int(self.virtual_now()) + (slot + 0.5) * STEP_SECONDS)
        )

    def key_at(self, index: int) -> ModelKey | None:
        keys = sorted(self.model.keys)
        return self.model.keys[keys[index % len(keys)]] if keys else None

    def url(self, suffix: str = "") -> str:
        return f"/orgs/{self.org}/api_keys{suffix}"

    def assert_matches(self, body: dict[str, object], key: ModelKey) -> None:
        expected = {**key.as_api(), "expires_at": rfc3339(key.expires_at)}
        assert {name: body[name] for name in expected} == expected
        assert "key" not in body or body["key"] == key.secrets[-1].value

    @initialize(name=names, permissions=permission_sets, slot=expiry_slots)
    def first_key(self, name: str, permissions: list[str], slot: int | None) -> None:
        self.create(name, permissions, slot)

    @rule(name=names, permissions=permission_sets, slot=expiry_slots)
    def create(self, name: str, permissions: list[str], slot: int | None) -> None:
        expires_at = self.expiry(slot)
        body: dict[str, object] = {"name": name, "permissions": permissions}
        if expires_at is not None:
            body["expires_at"] = rfc3339(expires_at)
        response = self.client.post(self.url(), json=body, headers=self.auth)
        assert response.status_code == 200, response.text
        created = response.json()
        canonical = tuple(p for p in PERMISSIONS if p in permissions)
        key = ModelKey(created["id"], name, canonical, expires_at)
        self.model.create(key)
        self.model.rotate(key.id, created["key"], grace_seconds=0, now=time.time())
        self.assert_matches(created, key)

    @precondition(lambda self: bool(self.model.keys))
    @rule(index=st.integers(0, 99))
    def get(self, index: int) -> None:
        key = self.key_at(index)
        if key is None:
            return
        response = self.client.get(self.url(f"/{key.id}"), headers=self.auth)
        assert response.status_code == 200, response.text
        self.assert_matches(response.json(), key)

    @precondition(lambda self: bool(self.deleted_ids))
    @rule(index=st.integers(0, 99))
    def get_deleted(self, index: int) -> None:
        if not self.deleted_ids:
            return
        key_id = self.deleted_ids[index % len(self.deleted_ids)]
        for method in ("GET", "PATCH", "DELETE"):
            response = self.client.request(
                method, self.url(f"/{key_id}"), json={"enabled": True}, headers=self.auth
            )
            assert response.status_code == 404, (method, response.text)
        response = self.client.post(self.url(f"/{key_id}/rotate"), headers=self.auth)
        assert response.status_code == 404, response.text

    @rule(limit=st.integers(1, 4))
    def list_all(self, limit: int) -> None:
        listed: list[dict[str, object]] = []
        url: str | None = self.url(f"?limit={limit}")
        for _page in range(100):
            if url is None:
                break
            response = self.client.get(url, headers=self.auth)
            assert response.status_code == 200, response.text
            page = response.json()
            assert 1 <= len(page) <= limit
            listed.extend(page)
            link = response.links.get("next")
            url = link["url"] if link else None
        assert url is None, "more than 100 pages"
        ids = [str(key["id"]) for key in listed]
        assert len(ids) == len(set(ids)), "a key listed twice across pages"
        by_id = {str(key["id"]): key for key in listed}
        admin = [key_id for key_id in ids if key_id not in self.model.keys]
        assert len(admin) == 1, f"listed keys the model does not know: {admin}"
        assert set(ids) - set(admin) == set(self.model.keys)
        for key_id, key in self.model.keys.items():
            self.assert_matches(by_id[key_id], key)
        created = [str(key["created_at"]) for key in listed]
        assert created == sorted(created), "not in creation order"

    @precondition(lambda self: bool(self.model.keys))
    @rule(
        index=st.integers(0, 99),
        name=st.one_of(st.none(), names),
        permissions=st.one_of(st.none(), permission_sets),
        enabled=st.one_of(st.none(), st.booleans()),
        slot=st.one_of(st.just("keep"), expiry_slots),
    )
    def patch(
        self,
        index: int,
        name: str | None,
        permissions: list[str] | None,
        enabled: bool | None,
        slot: int | str | None,
    ) -> None:
        key = self.key_at(index)
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = name
        if permissions is not None:
            changes["permissions"] = permissions
        if enabled is not None:
            changes["enabled"] = enabled
        expires_at = None if slot == "keep" else self.expiry(slot)  # type: ignore[arg-type]
        if slot != "keep":
            changes["expires_at"] = rfc3339(expires_at)
        if key is None or not changes:
            return
        response = self.client.patch(self.url(f"/{key.id}"), json=changes, headers=self.auth)
        assert response.status_code == 200, response.text
        key.name = name if name is not None else key.name
        if permissions is not None:
            key.permissions = tuple(p for p in PERMISSIONS if p in permissions)
        key.enabled = enabled if enabled is not None else key.enabled
        key.expires_at = expires_at if slot != "keep" else key.expires_at
        self.assert_matches(response.json(), key)

    @precondition(lambda self: bool(self.model.keys))
    @rule(index=st.integers(0, 99), grace=graces)
    def rotate(self, index: int, grace: int) -> None:
        key = self.key_at(index)
        if key is None:
            return
        response = self.client.post(
            self.url(f"/{key.id}/rotate"), json={"grace_period_seconds": grace}, headers=self.auth
        )
        assert response.status_code == 200, response.text
        self.model.rotate(key.id, response.json()["key"], grace_seconds=grace, now=time.time())
        self.assert_matches(response.json(), key)

    @precondition(lambda self: bool(self.model.keys))
    @rule(index=st.integers(0, 99))
    def delete(self, index: int) -> None:
        key = self.key_at(index)
        if key is None:
            return
        response = self.client.delete(self.url(f"/{key.id}"), headers=self.auth)
        assert response.status_code == 200, response.text
        self.model.delete(key.id)
        self.deleted_ids.append(key.id)

    @rule(steps=st.integers(1, 2))
    def advance_clock(self, steps: int) -> None:
        self.offset += steps * STEP_SECONDS

    @rule(needed=st.lists(st.sampled_from(PERMISSIONS), unique=True))
    def verify(self, needed: list[str]) -> None:
        """Every secret the model knows, live or dead, through /verify and the Verifier."""
        now = self.virtual_now()
        for secret in self.model.secrets() + self.model.dead_secrets:
            expected = self.model.verify(secret, tuple(needed), now=now)
            response = self.client.get(
                "/verify",
                params=[("permission", p) for p in needed],
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert (response.status_code, response.json()["code"]) == (
                STATUS_OF.get(expected, 401),
                expected,
            ), response.text
            assert self.runtime.verifier.verify(secret, needed).code == expected

    @invariant()
    def clock_is_only_ahead(self) -> None:
        assert self.offset >= 0


@pytest.fixture
def lifecycle_client(database_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, TestClient]]:
    # A day-long cache TTL: the virtual clock jumps 1000 s at a time, and with the default 300 s
    # safety net every cached entry would be refetched; this way a stale cache entry would show.
    runtime = build_runtime(
        Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            pepper=TEST_PEPPER,
            cache_ttl_seconds=86_400,
            # The model verifies dead secrets on purpose, hundreds of times a minute from one
            # address: the failed-authentication throttle (tested in tests/e2e) stays out of it.
            auth_failure_limit=100_000,
        )
    )
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=True) as client:
            yield runtime, client
    finally:
        runtime.close()


@pytest.mark.timeout(120 + EXAMPLES * STEPS)
def test_api_never_disagrees_with_the_model(
    lifecycle_client: tuple[Runtime, TestClient],
) -> None:
    runtime, client = lifecycle_client
    machine = type("BoundKeyLifecycle", (KeyLifecycle,), {"runtime": runtime, "client": client})
    started = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print(f"FIGURE state machine: {EXAMPLES} x {STEPS} steps in {time.monotonic() - started:.1f} s")
