"""The composition root: builds the engine, hasher and key format once from settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from keyrack import metrics
from keyrack.domain.hashing import SecretHasher
from keyrack.domain.keyformat import KeyFormat
from keyrack.service.auth_failures import AuthFailureLog
from keyrack.service.events import KeyEvents
from keyrack.service.key_cache import CachedKeyEvents, KeyCache
from keyrack.service.sealing import ResponseSealer
from keyrack.service.usage import LastUsedRecorder
from keyrack.service.usage_gate import UsageGate
from keyrack.service.verify import Verifier, record_loader, sql_loader
from keyrack.settings import Settings
from keyrack.store import migrate
from keyrack.store.engine import make_engine
from keyrack.store.key_changes import KeyChangeListener, key_change_listener
from keyrack.store.secret_lookup import SqliteSecretLookup
from keyrack.store.uow import SqlUnitOfWork
from keyrack.usage_controls import UsageControls, build_usage_controls


class OutdatedSchema(Exception):
    """The database schema is behind this version of keyrack."""


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    hasher: SecretHasher
    key_format: KeyFormat
    sealer: ResponseSealer
    verifier: Verifier
    events: KeyEvents
    auth_failures: AuthFailureLog = field(init=False)
    usage_controls: UsageControls = field(init=False)
    usage_gate: UsageGate = field(init=False)
    _listener: KeyChangeListener | None = field(default=None, init=False, repr=False)
    _secret_lookup: SqliteSecretLookup | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.auth_failures = AuthFailureLog(lambda: self.uow(write=True))
        self.usage_controls = build_usage_controls(
            self.settings, on_failure=metrics.record_limit_store_failure
        )
        self.usage_gate = UsageGate(
            limiter=self.usage_controls.limiter,
            throttle=self.usage_controls.auth_throttle,
            audit=self.auth_failures,
            on_decision=metrics.record_rate_limit,
            on_admitted=metrics.verify_recorder.record_admitted,
        )

    def uow(self, *, write: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=write)

    def start_background(self) -> None:
        """Server processes: listen for other processes' key changes (until then the cache is
        bypassed) and write last_used_at stamps in batches."""
        cache, usage = self.verifier.cache, self.verifier.usage
        assert cache is not None and usage is not None
        if self._listener is None:
            self._listener = key_change_listener(
                self.settings.resolved_database_url,
                on_changes=cache.invalidate,
                on_feed=self._on_feed,
            )
            self._listener.start()
        usage.start()

    def _on_feed(self, connected: bool) -> None:
        cache = self.verifier.cache
        assert cache is not None
        if not connected:
            # The pooled connections likely share the feed's fate (a silent network sends no
            # reset): new ones fail within connect_timeout instead of hanging on the old ones.
            self.engine.dispose()
        cache.reset(trusted=connected)

    async def aclose(self) -> None:
        """`close`, plus the limit store's async client (servers: from their event loop)."""
        await self.usage_controls.aclose()
        self.close()

    @property
    def revocation_feed_connected(self) -> bool:
        """Whether key changes of other processes reach the cache; until then (and whenever the
        feed is lost) verification bypasses the cache and reads the database every time."""
        return self._listener is not None and self._listener.connected.is_set()

    def close(self) -> None:
        self.usage_controls.close()
        self.auth_failures.close()
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self.verifier.usage is not None:
            self.verifier.usage.stop()
        if self._secret_lookup is not None:
            self._secret_lookup.close()
        self.engine.dispose()


def build_runtime(settings: Settings, *, migrate_sqlite: bool = True) -> Runtime:
    """On the embedded SQLite default pending migrations apply by themselves; on PostgreSQL
    `keyrack migrate` is the explicit step and an outdated schema is refused."""
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    if settings.is_sqlite and migrate_sqlite:
        migrate.upgrade(engine)
    cache = KeyCache(max_entries=settings.cache_max_entries, ttl_seconds=settings.cache_ttl_seconds)
    usage = LastUsedRecorder(
        write=_last_used_writer(engine),
        interval_seconds=settings.last_used_interval_seconds,
    )
    pepper = settings.load_pepper()
    hasher = SecretHasher(pepper)
    key_format = KeyFormat(settings.key_prefix)
    lookup = SqliteSecretLookup(engine.url.database or "") if settings.is_sqlite else None
    verifier = Verifier(
        key_format=key_format,
        hasher=hasher,
        load=record_loader(lookup.find) if lookup else sql_loader(lambda: SqlUnitOfWork(engine)),
        cache=cache,
        usage=usage,
    )
    runtime = Runtime(
        settings=settings,
        engine=engine,
        hasher=hasher,
        sealer=ResponseSealer(pepper),
        key_format=key_format,
        verifier=verifier,
        events=CachedKeyEvents(cache),
    )
    runtime._secret_lookup = lookup
    return runtime


def _last_used_writer(engine: Engine) -> Callable[[Sequence[tuple[str, datetime]]], None]:
    def write(stamps: Sequence[tuple[str, datetime]]) -> None:
        with SqlUnitOfWork(engine, write=True) as uow:
            uow.repo.touch_last_used(stamps)
            uow.commit()

    return write


def check_schema(runtime: Runtime) -> None:
    current = migrate.current_revision(runtime.engine)
    head = migrate.head_revision()
    if current != head:
        raise OutdatedSchema(
            f"the database schema is at {current or 'nothing'} but this keyrack needs {head}; "
            "run `keyrack migrate` first"
        )
