"""Unit of work: one transaction per use case, rolled back unless the use case commits."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from keyrack.domain.errors import ServiceUnavailable
from keyrack.store.engine import is_sqlite
from keyrack.store.repository import Repository


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
        except (OperationalError, InterfaceError) as error:
            raise ServiceUnavailable("the database is unreachable; retry shortly") from error
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
        finally:
            self._connection.close()
            self._connection = None

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()
