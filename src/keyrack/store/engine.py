"""Engine creation with the SQLite and PostgreSQL specifics (pragmas, transaction begin modes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as users write them) and use psycopg 3 for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


POOL_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_MS = 5000
# libpq options for connections that go silent without a reset (a peer host gone, a partition):
# keepalive probes find a dead idle peer in ~8 s instead of the kernel's two hours, and
# tcp_user_timeout drops a connection whose sent data stays unacknowledged for 5 s, which the
# server-side statement_timeout cannot do (the server never sees the query).
TCP_LIVENESS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
}


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            hide_parameters=True,  # error messages (and so logs) never carry bound secret hashes
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine)
        return engine
    # Bounded waits so that an outage answers 503 quickly instead of hanging a worker: a stopped
    # or unreachable server fails the connect at once (refused) or after `connect_timeout` (2 s is
    # libpq's minimum); a full pool or a statement stuck on a lock gives up rather than queueing.
    return create_engine(
        url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": 2,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            **TCP_LIVENESS,
        },
    )


def _configure_sqlite(engine: Engine) -> None:
    # The stdlib driver's implicit transactions are switched off so that we emit BEGIN ourselves:
    # writers take BEGIN IMMEDIATE, which waits on busy_timeout instead of failing on upgrade.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives a power cut
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")
