"""The repository, unit of work and migrations on real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from keyrack.domain.errors import KeyNotFound, OrgExists, OrgNotFound, Unauthenticated
from keyrack.domain.model import ApiKey, utcnow
from keyrack.runtime import Runtime
from keyrack.service import keys as service
from keyrack.service.auth import authenticate
from keyrack.store import migrate
from keyrack.store.engine import make_engine
from tests.random_refs import random_org_id


def new_org(runtime: Runtime) -> str:
    org_id = random_org_id()
    service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    return org_id


def create_key(
    runtime: Runtime, org_id: str, name: str = "k", permissions: tuple[str, ...] = ("read",)
):  # type: ignore[no-untyped-def]
    return service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name=name,
        permissions=list(permissions),
    )


def test_schema_is_at_head(runtime: Runtime) -> None:
    assert migrate.is_current(runtime.engine)
    tables = set(inspect(runtime.engine).get_table_names())
    assert {"orgs", "api_keys", "key_secrets", "audit_events", "idempotency_records"} <= tables


def test_create_list_delete_round_trip(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    first = create_key(runtime, org_id, "first", ("read", "write"))
    second = create_key(runtime, org_id, "second")
    listed = service.list_keys(uow=runtime.uow(), org_id=org_id)
    # listed by (created_at, id); both may share a created_at second
    expected = sorted([first.key, second.key], key=lambda key: (key.created_at, key.id))
    assert listed == expected
    assert listed[0].created_at.tzinfo is not None
    service.delete_key(uow=runtime.uow(write=True), org_id=org_id, key_id=first.key.id)
    assert [key.id for key in service.list_keys(uow=runtime.uow(), org_id=org_id)] == [
        second.key.id
    ]


def test_keys_are_scoped_to_their_org(runtime: Runtime) -> None:
    mine, theirs = new_org(runtime), new_org(runtime)
    their_key = create_key(runtime, theirs)
    assert service.list_keys(uow=runtime.uow(), org_id=mine) == []
    with pytest.raises(KeyNotFound):
        service.delete_key(uow=runtime.uow(write=True), org_id=mine, key_id=their_key.key.id)
    assert len(service.list_keys(uow=runtime.uow(), org_id=theirs)) == 1


def test_only_the_hash_is_stored_and_it_authenticates(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    created = create_key(runtime, org_id, permissions=("read", "admin"))
    with runtime.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT secret_hash FROM key_secrets WHERE key_id = :id"), {"id": created.key.id}
        ).all()
        dumped = connection.execute(
            text("SELECT * FROM api_keys WHERE org_id = :o"), {"o": org_id}
        ).all()
    assert [bytes(row[0]) for row in rows] == [runtime.hasher.hash(created.secret)]
    assert created.secret not in repr(dumped)
    principal = authenticate(
        uow=runtime.uow(),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        secret=created.secret,
    )
    assert (principal.org_id, principal.key_id) == (org_id, created.key.id)
    service.delete_key(uow=runtime.uow(write=True), org_id=org_id, key_id=created.key.id)
    with pytest.raises(Unauthenticated):
        authenticate(
            uow=runtime.uow(),
            key_format=runtime.key_format,
            hasher=runtime.hasher,
            secret=created.secret,
        )


def test_secret_hash_is_unique(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    created = create_key(runtime, org_id)
    clash = ApiKey(
        id="key-clash" + random_org_id()[-8:],
        org_id=org_id,
        name="clash",
        permissions=("read",),
        start="kr_xxxx",
        created_at=utcnow(),
    )
    with pytest.raises(IntegrityError), runtime.uow(write=True) as uow:
        uow.repo.add_key(clash, secret_hash=runtime.hasher.hash(created.secret))
        uow.commit()
    assert [k.id for k in service.list_keys(uow=runtime.uow(), org_id=org_id)] == [created.key.id]


def test_uncommitted_work_is_rolled_back(runtime: Runtime) -> None:
    org_id = random_org_id()
    with pytest.raises(RuntimeError), runtime.uow(write=True) as uow:
        uow.repo.add_org(type("O", (), {"id": org_id, "created_at": utcnow()})())  # type: ignore[arg-type]
        raise RuntimeError("boom")
    with runtime.uow() as uow:
        assert uow.repo.get_org(org_id) is None


def test_org_rules(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    with pytest.raises(OrgExists):
        service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    with pytest.raises(OrgNotFound):
        service.list_keys(uow=runtime.uow(), org_id=random_org_id())
    assert org_id in [org.id for org in service.list_orgs(uow=runtime.uow())]


def test_concurrent_creates_all_land(runtime: Runtime) -> None:
    org_id = new_org(runtime)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                create_key(runtime, org_id)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(service.list_keys(uow=runtime.uow(), org_id=org_id)) == 40


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
