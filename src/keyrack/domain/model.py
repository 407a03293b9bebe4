"""Domain records: organizations, keys and the authenticated caller."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from keyrack.domain.errors import InvalidInput
from keyrack.domain.limits import Quota, RateLimit

ORG_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KEY_ID_PATTERN = r"^key-[A-Za-z0-9]{1,64}$"
NAME_MAX_LENGTH = 128
_ORG_ID = re.compile(ORG_ID_PATTERN)
_KEY_ID = re.compile(KEY_ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def utcnow() -> datetime:
    """Now in UTC at second precision, the precision every stored timestamp has."""
    return datetime.now(UTC).replace(microsecond=0)


def check_org_id(org_id: str) -> str:
    if not _ORG_ID.match(org_id):
        raise InvalidInput(
            "org_id must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="org_id",
        )
    return org_id


def check_key_id(key_id: str) -> str:
    if not _KEY_ID.match(key_id):
        raise InvalidInput(
            "key_id must look like 'key-' followed by letters or digits", field="key_id"
        )
    return key_id


def normalize_name(name: str) -> str:
    # Both rules apply to the name as sent (trimming must not make "\n\x1dabc" or 130 characters
    # with spaces around them acceptable): that is what the OpenAPI schema can state.
    if _CONTROL.search(name):
        raise InvalidInput("name must not contain control characters", field="name")
    trimmed = name.strip()
    if not trimmed or len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(
            f"name must be 1-{NAME_MAX_LENGTH} characters, not only spaces", field="name"
        )
    return trimmed


def check_future_expiry(expires_at: datetime | None, *, now: datetime) -> datetime | None:
    """An expiry is stored in UTC at second precision (rounded down) and must be in the future."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise InvalidInput("must be an RFC 3339 time with a UTC offset", field="expires_at")
    expires_at = expires_at.astimezone(UTC).replace(microsecond=0)
    if expires_at <= now:
        raise InvalidInput("must be in the future", field="expires_at")
    return expires_at


@dataclass(frozen=True)
class Org:
    id: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    org_id: str
    name: str
    permissions: tuple[str, ...]
    start: str
    created_at: datetime
    expires_at: datetime | None = None
    enabled: bool = True
    last_used_at: datetime | None = None
    rate_limit: RateLimit | None = None
    quota: Quota | None = None


@dataclass(frozen=True)
class CreatedKey:
    """A freshly created key with its secret: the only moment the secret exists outside a client."""

    key: ApiKey
    secret: str


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: which key, in which org, holding what."""

    org_id: str
    key_id: str
    permissions: tuple[str, ...]
    name: str = ""
