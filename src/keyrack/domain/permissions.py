"""Permissions a key can hold and the rule for granting them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from keyrack.domain.errors import InvalidInput, PermissionDenied

READ = "read"
WRITE = "write"
ADMIN = "admin"
ALL_PERMISSIONS: tuple[str, ...] = (READ, WRITE, ADMIN)


def normalize_permissions(
    values: Sequence[object], *, field: str = "permissions"
) -> tuple[str, ...]:
    """Validate requested permissions: non-empty, known, unique; returned in canonical order."""
    if not values:
        raise InvalidInput("at least one permission is required", field=field)
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str) or value not in ALL_PERMISSIONS:
            raise InvalidInput(
                f"unknown permission {value!r}; allowed: {', '.join(ALL_PERMISSIONS)}", field=field
            )
        if value in seen:
            raise InvalidInput(f"permission {value!r} is listed twice", field=field)
        seen.add(value)
    return tuple(p for p in ALL_PERMISSIONS if p in seen)


def require(held: Iterable[str], needed: Iterable[str]) -> None:
    missing = sorted(set(needed) - set(held))
    if missing:
        raise PermissionDenied(f"this key lacks the permission(s): {', '.join(missing)}")


def check_grant(held: Iterable[str], granted: Iterable[str]) -> None:
    """A caller can only grant permissions it holds itself."""
    missing = sorted(set(granted) - set(held))
    if missing:
        raise PermissionDenied(
            f"cannot grant permission(s) the calling key does not hold: {', '.join(missing)}"
        )
