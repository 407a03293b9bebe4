"""The composition root: builds the engine, hasher and key format once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.service.auth_failures import AuthFailureLog
from keyrack.service.events import KeyEvents, NoKeyEvents
from keyrack.service.sealing import ResponseSealer
from keyrack.settings import Settings
from keyrack.store import migrate
from keyrack.store.engine import make_engine
from keyrack.store.uow import SqlUnitOfWork


class OutdatedSchema(Exception):
    """The database schema is behind this version of keyrack."""


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    hasher: SecretHasher
    key_format: KeyFormat
    sealer: ResponseSealer
    events: KeyEvents = field(default_factory=NoKeyEvents)
    auth_failures: AuthFailureLog = field(init=False)

    def __post_init__(self) -> None:
        self.auth_failures = AuthFailureLog(lambda: self.uow(write=True))

    def uow(self, *, write: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=write)

    def close(self) -> None:
        self.auth_failures.close()
        self.engine.dispose()


def build_runtime(settings: Settings, *, migrate_sqlite: bool = True) -> Runtime:
    """On the embedded SQLite default pending migrations apply by themselves; on PostgreSQL
    `keyrack migrate` is the explicit step and an outdated schema is refused."""
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    if settings.is_sqlite and migrate_sqlite:
        migrate.upgrade(engine)
    pepper = settings.load_pepper()
    return Runtime(
        settings=settings,
        engine=engine,
        hasher=SecretHasher(pepper),
        sealer=ResponseSealer(pepper),
        key_format=KeyFormat(settings.key_prefix),
    )


def check_schema(runtime: Runtime) -> None:
    current = migrate.current_revision(runtime.engine)
    head = migrate.head_revision()
    if current != head:
        raise OutdatedSchema(
            f"the database schema is at {current or 'nothing'} but this keyrack needs {head}; "
            "run `keyrack migrate` first"
        )
