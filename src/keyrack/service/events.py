"""Key change notifications: how every process learns that a key was revoked or changed.

Use cases that revoke or change a key call `record` inside their transaction (so a durable or
transactional signal, such as PostgreSQL NOTIFY, is sent only if the change commits) and
`applied` after the commit and before the caller answers (so this process's own caches drop the
key before the response leaves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from keyrack.store.uow import UnitOfWork


class KeyEvents(Protocol):
    def record(self, uow: UnitOfWork, key_ids: Sequence[str]) -> None: ...

    def applied(self, key_ids: Sequence[str]) -> None: ...


class NoKeyEvents:
    """For processes that cache nothing (the CLI)."""

    def record(self, uow: UnitOfWork, key_ids: Sequence[str]) -> None:
        return None

    def applied(self, key_ids: Sequence[str]) -> None:
        return None
