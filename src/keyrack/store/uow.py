"""Unit of work: one transaction per use case, rolled back unless the use case commits."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from keyrack.domain.errors import ServiceUnavailable
from keyrack.store.engine import is_sqlite
from keyrack.store.repository import Repository

# What a database that is down, unreachable, overloaded or cut mid-request raises: a failed or
# broken connection, a timed-out statement or lock wait, no free pooled connection in time.
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, PoolTimeout)


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the database is unreachable; retry shortly")


class UnitOfWork(Protocol):
    repo: Repository

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class SqlUnitOfWork:
    """`write=True` takes SQLite's write lock up front (BEGIN IMMEDIATE): writers queue cleanly."""

    def __init__(self, engine: Engine, *, write: bool = False) -> None:
        self._engine = engine
        self._write = write
        self._connection: Connection | None = None

    def __enter__(self) -> Self:
        try:
            connection = self._engine.connect()
            if self._write and is_sqlite(self._engine):
                connection = connection.execution_options(sqlite_begin="IMMEDIATE")
            connection.begin()
        except UNAVAILABLE_ERRORS as error:
            raise unavailable() from error
        self._connection = connection
        self.repo = Repository(connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        try:
            self._connection.rollback()  # a no-op after commit()
        except UNAVAILABLE_ERRORS:
            # The connection died: the pool discards it, and nothing uncommitted survives that.
            self._connection.invalidate()
        finally:
            self._connection.close()
            self._connection = None
        # A fault in the middle of the use case (a query or the commit) is an outage too: 503.
        if isinstance(exc, UNAVAILABLE_ERRORS):
            raise unavailable() from exc

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()
